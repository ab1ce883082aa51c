"""Signaling errors, sorted by consequence.

A `ProtocolError` is reported and the socket stays usable. A `FatalError` is reported and the
socket is closed, because nothing useful can follow (a bad token, a visit that has ended).
"""


class SignalingError(Exception):
    fatal = False
    #: The close code of the socket after a fatal error.
    close_code = 4000  # CLOSE_FATAL

    def __init__(self, code: str, message: str, **details: object) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        #: Extra fields of the `error` message (e.g. `retry_after`).
        self.details = details


class ProtocolError(SignalingError):
    pass


class FatalError(SignalingError):
    fatal = True


#: Close codes in the private range (RFC 6455 section 7.4.2) used when a session is closed.
CLOSE_FATAL = 4000
CLOSE_REPLACED = 4001
CLOSE_SLOW = 4002
CLOSE_JOIN_TIMEOUT = 4003
CLOSE_LEFT = 4004
CLOSE_VISIT_ENDED = 4005
#: The node hosting the visit is gone or draining: reconnect at once, the seat is kept.
CLOSE_NODE_LOST = 4006
#: The socket kept sending over its message limits after being told to slow down.
CLOSE_FLOODING = 4007
#: The service cannot take the join right now (its live state is unreachable): try again.
CLOSE_TRY_AGAIN = 1013
#: The server failed on something it did not expect: the seat is kept, reconnect.
CLOSE_INTERNAL = 1011


class Flooding(FatalError):
    """The socket kept sending over its limits after it was told to slow down."""

    close_code = CLOSE_FLOODING
