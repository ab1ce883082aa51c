"""signaling/PROTOCOL.md is the contract for client authors: it names every message type."""

from pathlib import Path

from signaling.down import DOWN_MESSAGES
from signaling.messages import SCHEMAS

PROTOCOL = (Path(__file__).resolve().parent.parent / "signaling" / "PROTOCOL.md").read_text()


def test_every_client_message_type_is_written_down() -> None:
    client_section = PROTOCOL.split("## Client to server", 1)[1].split("## Server to client")[0]
    for message_type in SCHEMAS:
        assert f"| `{message_type}` |" in client_section, message_type


def test_every_server_message_type_is_written_down() -> None:
    server_section = PROTOCOL.split("## Server to client", 1)[1].split("## Errors")[0]
    for model in DOWN_MESSAGES:
        message_type = model.model_fields["type"].default
        assert f"| `{message_type}` |" in server_section, message_type
