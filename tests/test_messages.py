import json

import pytest

from signaling.down import Error
from signaling.errors import ProtocolError
from signaling.messages import (
    MAX_MESSAGE_BYTES,
    Join,
    MediaState,
    Offer,
    error_message,
    parse_client_message,
)


def test_valid_messages_parse_into_their_types() -> None:
    join = Join(token="t", visit="v")
    assert parse_client_message('{"type": "join", "token": "t", "visit": "v"}') == join
    offer = Offer(sdp="x", id="o1")
    assert parse_client_message('{"type": "offer", "sdp": "x", "id": "o1"}') == offer
    assert parse_client_message('{"type": "media-state", "audio": false, "video": true}') == (
        MediaState(audio=False, video=True)
    )


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{not json", "malformed-json"),
        ("[1, 2]", "invalid-message"),
        ('{"token": "x"}', "invalid-message"),
        ('{"type": 7}', "invalid-message"),
        ('{"type": "dance"}', "unknown-type"),
        ('{"type": "join", "visit": "v"}', "invalid-field"),
        ('{"type": "join", "token": 5, "visit": "v"}', "invalid-field"),
        ('{"type": "media-state", "audio": 1, "video": true}', "invalid-field"),
        ('{"type": "ping", "extra": 1}', "invalid-field"),
        ('{"type": "ping", "id": 3}', "invalid-field"),
        (json.dumps({"type": "offer", "sdp": "x" * MAX_MESSAGE_BYTES}), "message-too-large"),
    ],
)
def test_bad_messages_are_refused_with_a_precise_code(raw: str, code: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(raw)
    assert caught.value.code == code
    assert caught.value.message


def test_an_error_is_built_as_its_down_model() -> None:
    """Both directions are typed: an `error` is the down model until the socket writes it."""
    error = error_message("rate-limited", "slow down", "r-1", retry_after=2.5)
    assert isinstance(error, Error)
    assert error.wire() == {
        "type": "error",
        "code": "rate-limited",
        "message": "slow down",
        "fatal": False,
        "ref": "r-1",
        "retry_after": 2.5,
    }
