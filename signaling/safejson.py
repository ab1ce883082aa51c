"""JSON from strangers, read with limits and refused with a precise code.

Python's parser fails on hostile input in ways that are not `JSONDecodeError`: an integer of more
than 4,300 digits raises a bare ValueError, and deep nesting a RecursionError. Both are turned
into `JsonRefused` here, so no caller answers them with a 500 or a dropped socket.
"""

from __future__ import annotations

import json
from typing import Any

#: The most digits an integer may have. No field of the API or the protocol needs more than a
#: dozen; converting long ones costs time quadratic in their length.
MAX_INT_DIGITS = 100


class JsonRefused(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _IntTooLong(Exception):
    pass


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise _IntTooLong
    return int(digits)


def load_json(text: str | bytes) -> Any:
    """The document in `text`, or JsonRefused with code `malformed-json`, `json-too-deep` or
    `number-too-large`."""
    try:
        return json.loads(text, parse_int=_bounded_int)
    except _IntTooLong:
        raise JsonRefused(
            "number-too-large", f"integers are limited to {MAX_INT_DIGITS} digits"
        ) from None
    except RecursionError:
        raise JsonRefused("json-too-deep", "the JSON document is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise JsonRefused("malformed-json", f"not valid JSON: {exc.msg}") from None
    except (ValueError, UnicodeDecodeError):
        raise JsonRefused("malformed-json", "not valid JSON") from None
