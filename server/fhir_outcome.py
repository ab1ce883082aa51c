"""The OperationOutcome that answers every error under /fhir: the FHIR endpoint's own, and the
root application's refusals that come before its handlers (a body too large or too slow)."""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

FHIR_JSON: Final = "application/fhir+json"
ERROR_SYSTEM: Final = "urn:screenvisit:error"
_ISSUE_BY_STATUS: Final = {
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    406: "not-supported",
    408: "timeout",
    409: "conflict",
    413: "too-costly",
    415: "not-supported",
    429: "throttled",
    503: "transient",
}


def is_fhir(request: web.Request) -> bool:
    return request.path == "/fhir" or request.path.startswith("/fhir/")


def issue_code(status: int) -> str:
    """The OperationOutcome issue type for an HTTP status."""
    return _ISSUE_BY_STATUS.get(status, "invalid" if status < 500 else "exception")


def outcome_body(
    code: str, message: str, reason: str | None = None, expression: str | None = None
) -> dict[str, Any]:
    """An OperationOutcome with one error issue: `reason` is our machine code, `expression`
    where in the resource."""
    issue: dict[str, Any] = {"severity": "error", "code": code, "diagnostics": message}
    if reason:
        issue["details"] = {"coding": [{"system": ERROR_SYSTEM, "code": reason}]}
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def http_outcome(request: web.Request, exc: web.HTTPException) -> web.Response:
    """An aiohttp refusal (404, 405, 413, ...) as an OperationOutcome, keeping its `Allow`."""
    allow = exc.headers.get("Allow")
    return web.json_response(
        outcome_body(issue_code(exc.status), f"{request.method} {request.path}: {exc.reason}"),
        status=exc.status,
        headers={"Allow": allow} if allow else None,
        content_type=FHIR_JSON,
    )
