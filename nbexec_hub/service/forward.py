"""Forwarding execution requests to a user's server, and relaying what comes back.

`Forwarder` makes sure the target server is ready (starting it or waiting for
it when the caller asked with ``?start=1`` / ``?wait=N``), sends the request
through the proxy with the service's token, and relays the answer: error
responses passed through (or mapped to 409 ``stopped`` when the server is
gone), successful ones chunk by chunk as they arrive, converted to
Server-Sent Events when the caller accepts ``text/event-stream``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any
from urllib.parse import urlencode

from tornado import web
from tornado.httpclient import HTTPRequest

from .. import errors, sse
from .hubclient import HubClient
from .streaming import StreamingHTTPClient, close_upstream, fetch_quietly

log = logging.getLogger("nbexec.forward")

#: query parameters that belong to the service and never travel upstream
SERVICE_QUERY_PARAMS = frozenset({"start", "wait", "_xsrf", "token", "last_event_id"})
#: request headers copied to the upstream request
FORWARDED_HEADERS = ("Content-Type", "X-Response-Encoding", "Last-Event-ID")
#: upstream statuses meaning "no server behind this URL any more"
GONE_STATUSES = (424, 503)

TRUE_WORDS = {"1", "true", "yes", "on"}


def parse_start_wait(
    start_arg: str | None, wait_arg: str | None, default_wait: float, max_wait: float
) -> tuple[bool, float | None]:
    """The ``?start=`` and ``?wait=`` query values: (start?, seconds to wait or None)."""
    start = (start_arg or "").strip().lower() in TRUE_WORDS
    wait: float | None = None
    if wait_arg not in (None, ""):
        try:
            wait = float(wait_arg)  # type: ignore[arg-type]
        except ValueError:
            raise errors.BadRequest(f"wait must be a number of seconds, not {wait_arg!r}") from None
        if wait < 0:
            raise errors.BadRequest("wait must not be negative")
    elif start:
        wait = default_wait
    if wait is not None:
        wait = min(wait, max_wait)
    return start, wait


class Forwarder:
    """Forwards requests to users' servers through the proxy with the service token."""

    def __init__(
        self,
        hub: HubClient,
        proxy_url: str,
        api_token: str,
        stream_client: StreamingHTTPClient,
        *,
        keepalive_seconds: float = sse.KEEPALIVE_SECONDS,
        liveness_seconds: float = 5.0,
        request_timeout: float = 60.0,
    ) -> None:
        self.hub = hub
        self.proxy_url = proxy_url.rstrip("/")
        self._token = api_token
        self.client = stream_client
        self.keepalive_seconds = keepalive_seconds
        self.liveness_seconds = liveness_seconds
        self.request_timeout = request_timeout

    async def ensure_ready(
        self,
        user: str,
        server_name: str,
        *,
        start: bool,
        wait: float | None,
        may_start: bool,
    ) -> dict[str, Any]:
        """The ready server's status; start it or wait for it as asked, else Conflict (409)."""
        status = await self.hub.server_status(user, server_name)
        if status["ready"]:
            return status
        if status["state"] == "stopped" and start:
            if not may_start:
                raise errors.Forbidden(f"You may not start the server {user}/{server_name}")
            await self.hub.start_server(user, server_name)
        elif wait is None:
            raise errors.Conflict(
                f"The server {user}/{server_name} is not ready ({status['state']})",
                state=status["state"],
            )
        if wait is None:
            raise errors.Conflict(
                f"The server {user}/{server_name} is starting; add ?wait=<seconds> to wait",
                state="pending",
            )
        return await self.hub.wait_ready(user, server_name, wait)

    def target_url(self, server_url: str, rest: str, query: dict[str, list[bytes]]) -> str:
        """Proxy URL + the server's URL path + `rest`, with the service's own params removed."""
        pairs = [
            (key, value.decode("utf8", "replace"))
            for key, values in query.items()
            if key not in SERVICE_QUERY_PARAMS
            for value in values
        ]
        url = self.proxy_url + server_url.rstrip("/") + "/" + rest.lstrip("/")
        return url + ("?" + urlencode(pairs) if pairs else "")

    async def forward(
        self,
        handler: web.RequestHandler,
        user: str,
        server_name: str,
        rest: str,
        *,
        start: bool = False,
        wait: float | None = None,
        may_start: bool = False,
    ) -> None:
        """Forward the handler's request to U/S once it is ready, and relay the answer.

        When the server turns out to be gone behind a cached readiness answer and the
        caller asked to start or wait, it is made ready again and the request sent once more.
        """
        for attempt in (1, 2):
            status = await self.ensure_ready(
                user, server_name, start=start, wait=wait, may_start=may_start
            )
            relay = _Relay(self, handler, status, rest)
            handler.upstream_relay = relay  # type: ignore[attr-defined]
            try:
                await relay.run()
                return
            except ServerGone:
                self.hub.forget(user, server_name)
                if attempt == 2 or (not start and wait is None):
                    fresh = await self.hub.server_status(user, server_name, use_cache=False)
                    state = "stopped" if fresh["ready"] else fresh["state"]
                    raise errors.Conflict(
                        f"The server {user}/{server_name} is not running ({state})",
                        state=state,
                    ) from None
                log.info("Server %s/%s was gone; making it ready again", user, server_name)


class ServerGone(Exception):
    """The proxy or hub says there is no server behind the URL any more."""


class _Relay:
    """One forwarded request: upstream fetch plus the caller-side writing."""

    def __init__(
        self, forwarder: Forwarder, handler: web.RequestHandler, status: dict[str, Any], rest: str
    ) -> None:
        self.fwd = forwarder
        self.handler = handler
        self.status = status
        request = handler.request
        self.as_sse = sse.wants_event_stream(request.headers.get("Accept"))
        self.streamed = (
            self.as_sse
            or rest.rstrip("/").endswith("/progress")
            or request.headers.get("X-Response-Encoding", "").lower() == "chunked"
        )
        self.last_seq = sse.parse_last_event_id(
            request.headers.get("Last-Event-ID")
            or handler.get_query_argument("last_event_id", None)
        )
        self.code: int | None = None
        self.upstream_headers: dict[str, str] = {}
        self.headers_done = False
        self.relaying = False
        self.error_body = bytearray()
        self.line_buffer = bytearray()
        self.count = 0
        self.caller_gone = False
        self.server_gone = False
        self.last_data = self.last_write = self.last_check = time.monotonic()
        self.url = forwarder.target_url(status["url"], rest, request.query_arguments)
        headers = {"Authorization": f"token {forwarder._token}", "Accept": "application/json"}
        for name in FORWARDED_HEADERS:
            if name in request.headers:
                headers[name] = request.headers[name]
        if self.last_seq is not None:
            headers["Last-Event-ID"] = str(self.last_seq)
        if self.as_sse and request.method != "GET":
            headers["X-Response-Encoding"] = "chunked"
        body = request.body if request.method in ("POST", "PUT", "PATCH") else None
        if body is None and request.method in ("POST", "PUT", "PATCH"):
            body = b""
        self.request = HTTPRequest(
            self.url,
            method=request.method,
            headers=headers,
            body=body,
            allow_nonstandard_methods=True,
            follow_redirects=False,
            decompress_response=False,
            header_callback=self._on_header_line,
            streaming_callback=self._on_chunk,
            connect_timeout=10,
            request_timeout=0 if self.streamed else forwarder.request_timeout,
        )

    def caller_left(self) -> None:
        """The caller closed its connection: stop the upstream request (not the execution)."""
        self.caller_gone = True
        close_upstream(self.request)

    # -- upstream callbacks (run on the IO loop, synchronously) -----------

    def _on_header_line(self, line: str) -> None:
        if line.startswith("HTTP/"):
            self.code = int(line.split(" ", 2)[1])
            self.upstream_headers = {}
            self.headers_done = False
        elif line.strip() == "":
            self.headers_done = True
            if self.code is not None and self.code < 300:
                self._start_relay()
        elif ":" in line:
            name, _, value = line.partition(":")
            self.upstream_headers[name.strip().lower()] = value.strip()

    def _start_relay(self) -> None:
        handler = self.handler
        self.relaying = True
        handler.set_status(200 if self.as_sse and handler.request.method == "GET" else self.code)
        if self.as_sse:
            for name, value in sse.SSE_HEADERS.items():
                handler.set_header(name, value)
        else:
            ctype = self.upstream_headers.get("content-type")
            if ctype:
                handler.set_header("Content-Type", ctype)
            if self.streamed:
                handler.set_header("Cache-Control", "no-cache")
                handler.set_header("X-Accel-Buffering", "no")
        if self.streamed:
            handler.flush()

    def _on_chunk(self, chunk: bytes) -> None:
        if self.caller_gone:
            raise ConnectionAbortedError("the caller went away")
        self.last_data = self.last_write = time.monotonic()
        if not self.relaying:
            self.error_body.extend(chunk)
            return
        if not self.as_sse:
            self.handler.write(chunk)
            if self.streamed:
                self.handler.flush()
            return
        self.line_buffer.extend(chunk)
        *lines, rest = bytes(self.line_buffer).split(b"\n")
        self.line_buffer[:] = rest
        for line in lines:
            self._write_event_line(line)
        self.handler.flush()

    def _write_event_line(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            event = json.loads(line)
        except ValueError:
            log.warning("Dropping a non-JSON line from %s", self.status["url"])
            return
        if isinstance(event, dict):
            event.setdefault("seq", self.count)
            self.count += 1
            seq = event.get("seq")
            if self.last_seq is not None and isinstance(seq, int) and seq <= self.last_seq:
                return
        self.handler.write(sse.format_event(event) if isinstance(event, dict) else "")

    async def _watch(self) -> None:
        """Keep-alives on SSE; and end a stream whose server went away without a word
        (the proxy may keep the dead connection open)."""
        tick = min(1.0, self.fwd.keepalive_seconds / 2)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            idle = now - self.last_write
            if self.as_sse and self.relaying and idle >= self.fwd.keepalive_seconds:
                self.handler.write(sse.keepalive_comment())
                self.handler.flush()
                self.last_write = now
            quiet = now - max(self.last_data, self.last_check)
            if quiet < self.fwd.liveness_seconds:
                continue
            self.last_check = now
            user, server_name = self.status["user"], self.status["server_name"]
            try:
                current = await self.fwd.hub.server_status(user, server_name)
            except errors.NbexecError:
                continue  # the hub is unreachable (restarting?): that says nothing of the server
            if not current["ready"] or current["started"] != self.status["started"]:
                log.info("Server %s/%s went away during a stream; ending it", user, server_name)
                self.server_gone = True
                close_upstream(self.request)
                return

    # -- the whole exchange -----------------------------------------------

    async def run(self) -> None:
        watch = asyncio.ensure_future(self._watch()) if self.streamed else None
        try:
            response = await fetch_quietly(self.fwd.client, self.request)
        finally:
            if watch is not None:
                watch.cancel()
        user, server_name = self.status["user"], self.status["server_name"]
        if self.caller_gone:
            log.info("Caller left; closed the upstream stream from %s/%s", user, server_name)
            return
        if self.server_gone and not self.relaying:
            raise ServerGone()
        if self.relaying:
            if self.as_sse and self.line_buffer:
                self._write_event_line(bytes(self.line_buffer))
            if response.code == 599:
                log.info("Upstream %s/%s ended the stream: %s", user, server_name, response.error)
            self.handler.finish()
            return
        if response.code == 599:
            if isinstance(response.error, ConnectionRefusedError):
                raise ServerGone()
            raise errors.UpstreamError(
                f"Could not reach the server {user}/{server_name}: {response.error}"
            )
        location = self.upstream_headers.get("location", "")
        if response.code in GONE_STATUSES or (300 <= response.code < 400 and "/hub/" in location):
            # 424/503: the hub or proxy has no running server there; a redirect into the
            # hub means the proxy has no route for it (the server stopped or is starting)
            raise ServerGone()
        self._pass_through(response.code)

    def _pass_through(self, code: int) -> None:
        """An upstream error (or redirect) answered as it came: status and body."""
        handler = self.handler
        handler.set_status(code)
        body = bytes(self.error_body)
        ctype = self.upstream_headers.get("content-type", "")
        if "json" not in ctype:
            # not the server's own JSON error: say what happened, in our JSON shape
            handler.set_header("Content-Type", "application/json; charset=UTF-8")
            body = json.dumps(
                {"message": f"The server answered {code}", "reason": None}
            ).encode()
        else:
            handler.set_header("Content-Type", ctype)
        handler.finish(body)
