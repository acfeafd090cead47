"""The one place where domain errors become HTTP responses.

Handlers of both the extension and the service mix in `JSONErrorMixin`: a
raised `NbexecError` becomes its status code with a JSON body
``{"message": ..., "reason": ...}`` (plus the error's details), and is logged
as one warning line rather than a traceback.
"""

from __future__ import annotations

import json
from typing import Any

from tornado import web

from . import errors

STATUS_FOR_ERROR: dict[type[errors.NbexecError], int] = {
    errors.BadRequest: 400,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.PayloadTooLarge: 413,
    errors.TooManyRequests: 429,
    errors.UpstreamError: 502,
    errors.UpstreamTimeout: 504,
}


def status_for(exc: BaseException) -> int | None:
    """The HTTP status for a domain error, or None for anything else."""
    for cls in type(exc).__mro__:
        if cls in STATUS_FOR_ERROR:
            return STATUS_FOR_ERROR[cls]  # type: ignore[index]
    return None


class JSONErrorMixin:
    """Turn domain errors and HTTPErrors into JSON error bodies."""

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        if exc_info is not None:
            mapped = status_for(exc_info[1])
            if mapped is not None:
                status_code = mapped
        super().send_error(status_code, **kwargs)  # type: ignore[misc]

    #: the exception the request was answered with (the service's metrics count its cause)
    failure: BaseException | None = None

    def log_exception(self, typ, value, tb) -> None:  # type: ignore[no-untyped-def]
        self.failure = value
        if isinstance(value, errors.NbexecError):
            self.log.warning(  # type: ignore[attr-defined]
                "%d %s: %s", status_for(value), self.request.method, value.message  # type: ignore[attr-defined]
            )
            return
        super().log_exception(typ, value, tb)  # type: ignore[misc]

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(error_body(exc, self._reason)))  # type: ignore[attr-defined]


def error_body(exc: BaseException | None, reason: str) -> dict[str, Any]:
    """The JSON error body for an exception (`reason`: the status line's phrase)."""
    body: dict[str, Any] = {"message": reason, "reason": None}
    if isinstance(exc, errors.NbexecError):
        body.update(exc.details)
        body["message"] = exc.message
        body["reason"] = type(exc).__name__
    elif isinstance(exc, web.HTTPError):
        body["message"] = exc.log_message % exc.args if exc.log_message else reason
        body["reason"] = exc.reason
    return body
