"""HTTP API errors, and the one mapping from every error type to an HTTP status."""

from rooms.errors import (
    AuthenticationFailed,
    InvalidTransition,
    NotDurable,
    NotPermitted,
    RoomsError,
    SeatNotFound,
    VisitFull,
    VisitNotFound,
)
from rooms.store import StaleLease, StoreConflict, StoreUnavailable


class ApiError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


STATUS_BY_ERROR: dict[type[RoomsError], int] = {
    VisitNotFound: 404,
    SeatNotFound: 404,
    NotPermitted: 403,
    InvalidTransition: 409,
    VisitFull: 409,
    StoreUnavailable: 503,
    StoreConflict: 503,
    NotDurable: 503,
    #: This node's lease of the visit moved on: the owner answers the next try.
    StaleLease: 503,
}


def status_for(exc: RoomsError) -> int:
    if isinstance(exc, AuthenticationFailed):
        return exc.status
    for error_type, status in STATUS_BY_ERROR.items():
        if isinstance(exc, error_type):
            return status
    return 400
