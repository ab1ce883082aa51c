"""Errors of the visit domain. Each carries a stable machine-readable code."""


class RoomsError(Exception):
    code = "rooms-error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class VisitNotFound(RoomsError):
    code = "visit-not-found"


class SeatNotFound(RoomsError):
    code = "seat-not-found"


class InvalidTransition(RoomsError):
    code = "invalid-transition"

    def __init__(self, message: str, current: str) -> None:
        super().__init__(message)
        self.current = current


class VisitFull(RoomsError):
    code = "visit-full"


class NotPermitted(RoomsError):
    code = "forbidden"

    def __init__(self, message: str, code: str = "forbidden") -> None:
        super().__init__(message)
        self.code = code


class EntryRefused(RoomsError):
    """A seat may not enter the visit now: removed by the host, or declined a moment ago."""

    def __init__(self, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after = retry_after


class AuthenticationFailed(RoomsError):
    """A token was refused. `code` says why, precisely enough for the person holding the link."""

    def __init__(self, code: str, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class NotDurable(RoomsError):
    """Neither the database nor the local outbox could keep a record: it is not saved."""

    code = "not-saved"
