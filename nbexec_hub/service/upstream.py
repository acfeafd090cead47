"""What goes to a user's server for a forwarded request: the request the relay sends.

Only the per-server token, the body of a state-changing method and a few harmless headers
travel; never the caller's cookies or credentials, nor the service's own token.
"""

from __future__ import annotations

from typing import Any

from tornado.httpclient import HTTPRequest
from tornado.httputil import HTTPServerRequest

#: request headers copied to the upstream request (never cookies or credentials)
FORWARDED_HEADERS = ("Content-Type", "X-Response-Encoding", "Last-Event-ID")


def upstream_request(
    request: HTTPServerRequest,
    url: str,
    token: str,
    last_seq: int | None,
    as_sse: bool,
    **callbacks_and_timeout: Any,
) -> HTTPRequest:
    """The upstream request for a caller's `request`, sent to `url` with `token`; SSE
    callers get the chunked stream (the relay turns it into SSE), and resume from
    `last_seq`."""
    headers = {"Authorization": f"token {token}", "Accept": "application/json"}
    for name in FORWARDED_HEADERS:
        if name in request.headers:
            headers[name] = request.headers[name]
    if last_seq is not None:
        headers["Last-Event-ID"] = str(last_seq)
    if as_sse and request.method != "GET":
        headers["X-Response-Encoding"] = "chunked"
    return HTTPRequest(
        url,
        method=request.method,
        headers=headers,
        body=request.body if request.method in ("POST", "PUT", "PATCH") else None,
        allow_nonstandard_methods=True,
        follow_redirects=False,
        decompress_response=False,
        connect_timeout=10,
        **callbacks_and_timeout,
    )
