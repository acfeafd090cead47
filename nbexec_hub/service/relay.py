"""Relaying one forwarded request: the upstream exchange and what the caller sees.

Successful answers go to the caller chunk by chunk as they arrive (JSON lines as they
are, or as Server-Sent Events with ``id: <seq>`` when the caller accepts them), error
answers are passed through whole. A stream whose server dies ends with a final
``notebook_error`` event of the service's own; one that merely breaks off (the proxy
restarting) just ends, so that readers resume by ``seq``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from tornado import web
from tornado.httpclient import HTTPRequest

from .. import errors, sse
from .streaming import close_upstream, fetch_quietly

if TYPE_CHECKING:
    from .forward import Forwarder

log = logging.getLogger("nbexec.relay")

#: request headers copied to the upstream request
FORWARDED_HEADERS = ("Content-Type", "X-Response-Encoding", "Last-Event-ID")
#: upstream statuses meaning "no server behind this URL any more"
GONE_STATUSES = (424, 503)
FINAL_EVENTS = ("notebook_complete", "notebook_error")


class ServerGone(Exception):
    """The proxy or hub says there is no server behind the URL any more."""


class Relay:
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
        #: seq of the last event relayed, the last execution model seen, a final event seen
        self.seen_seq: int | None = None
        self.execution: dict[str, Any] | None = None
        self.final_seen = False
        self.saw_event = False
        self.caller_gone = False
        self.server_gone = False
        self.last_data = self.last_write = self.last_check = time.monotonic()
        self.url = forwarder.target_url(status["url"], rest, request.query_arguments)
        headers = {**forwarder.auth_headers(), "Accept": "application/json"}
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
            sse.send_at_once(handler)
            handler.flush()

    def _on_chunk(self, chunk: bytes) -> None:
        if self.caller_gone:
            raise ConnectionAbortedError("the caller went away")
        self.last_data = self.last_write = time.monotonic()
        if not self.relaying:
            self.error_body.extend(chunk)
            return
        if not self.streamed:
            self.handler.write(chunk)
            return
        self.line_buffer.extend(chunk)
        *lines, rest = bytes(self.line_buffer).split(b"\n")
        self.line_buffer[:] = rest
        for line in lines:
            self._relay_line(line)
        self.handler.flush()

    def _relay_line(self, line: bytes) -> None:
        """One JSON event line of a stream, written as it is or as an SSE message."""
        if not line.strip():
            return
        try:
            event = json.loads(line)
        except ValueError:
            log.warning("Dropping a non-JSON line from %s", self.status["url"])
            return
        if not isinstance(event, dict):
            return
        if self.as_sse:
            event.setdefault("seq", self.count)
        self.count += 1
        seq = event.get("seq")
        if isinstance(seq, int):
            if self.last_seq is not None and seq <= self.last_seq:
                return
            self.seen_seq = seq
        if isinstance(event.get("execution"), dict):
            self.execution = event["execution"]
        self.saw_event = self.saw_event or "event" in event
        self.final_seen = self.final_seen or event.get("event") in FINAL_EVENTS
        self._write_event(event)

    def _write_event(self, event: dict[str, Any]) -> None:
        if self.as_sse:
            self.handler.write(sse.format_event(event))
        else:
            self.handler.write(json.dumps(event) + "\n")

    def _final_error_event(self) -> dict[str, Any]:
        """The event ending a stream whose server died: the server cannot send one."""
        user, server_name = self.status["user"], self.status["server_name"]
        message = f"The server {user}/{server_name} stopped during the execution"
        execution = dict(self.execution or {})
        if not execution.get("exec_id"):
            parts = self.request.url.split("?")[0].rstrip("/").split("/")
            if parts[-1] == "progress":
                execution["exec_id"] = parts[-2]
        execution["status"] = f"error: {message}"
        event: dict[str, Any] = {
            "event": "notebook_error",
            "timestamp": time.time(),
            "output_path": execution.get("output_path"),
            "error": message,
            "execution": execution,
            "server_stopped": True,
        }
        if self.as_sse or self.seen_seq is not None:
            event["seq"] = (self.seen_seq if self.seen_seq is not None else self.count - 1) + 1
        return event

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
            if await self.fwd.server_alive(self.status) is False:
                log.info(
                    "Server %s/%s went away during a stream; ending it",
                    self.status["user"], self.status["server_name"],
                )
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
            if self.streamed and self.line_buffer:
                self._relay_line(bytes(self.line_buffer))
            if self.saw_event and not self.final_seen:
                await self._end_unfinished_stream(response.error)
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

    async def _end_unfinished_stream(self, error: BaseException | None) -> None:
        """A stream that ended without its final event: say so when the server died."""
        user, server_name = self.status["user"], self.status["server_name"]
        gone = self.server_gone or await self.fwd.server_alive(self.status, fresh=True) is False
        if not gone:
            # the proxy or the connection broke, not the server: readers resume by seq
            log.info("Stream from %s/%s broke off (%s)", user, server_name, error)
            return
        self.fwd.hub.forget(user, server_name)
        self._write_event(self._final_error_event())
        log.info("Server %s/%s gone: ended its stream with notebook_error", user, server_name)

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
