"""Relaying one forwarded request: what of the answer the caller sees (CONTRACT B.1, B.4).

Answers are relayed only as JSON, NDJSON or event streams (else 502), an ordinary one held
until complete and checked (`max_answer_bytes`), error bodies up to `max_error_bytes`.
Streams go event by event (JSON lines, or SSE with ``id: <seq>``), split in linear time; a
line over `max_event_bytes` or the caller's budget is skipped; a slow reader slows the
upstream, and is cut past `max_pending_bytes`. A stream whose server dies ends with a
``notebook_error`` of the service's own; one that breaks off just ends (readers resume).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from tornado import web
from tornado.httpclient import AsyncHTTPClient

from .. import errors, protocol
from . import answers, metrics
from .bounds import ByteBudgets, RelayLimits
from .liveness import Liveness, means_gone
from .streaming import close_upstream, fetch_quietly
from .upstream import upstream_request

log = logging.getLogger("nbexec.relay")

#: the only media types relayed from a user's server
RELAYED_TYPES = (protocol.JSON, protocol.NDJSON, protocol.EVENT_STREAM)


async def _settled(future: asyncio.Future) -> None:
    """Wait for `future`, whatever its outcome (tornado would log a reader gone as an error)."""
    try:
        await future
    except Exception:
        pass


class ServerGone(Exception):
    """The proxy or hub says there is no server behind the URL any more."""


class TokenRefused(Exception):
    """The server refused the per-server token (401/403): renew it and try once more."""


class Relay:
    """One forwarded request: the upstream fetch and the caller-side writing."""

    def __init__(
        self,
        handler: web.RequestHandler,
        status: dict[str, Any],
        url: str,
        token: str,
        *,
        client: AsyncHTTPClient,
        liveness: Liveness,
        limits: RelayLimits,
        exec_id: str | None = None,
        progress: bool = False,
        caller: str = "",
        budgets: ByteBudgets | None = None,
    ) -> None:
        self.handler = handler
        self.status = status
        self.client = client
        self.liveness = liveness
        self.limits = limits
        self.exec_id = exec_id
        request = handler.request
        self.as_sse = protocol.wants_event_stream(request.headers.get("Accept"))
        self.streamed = (
            self.as_sse
            or progress
            or protocol.wants_chunked(request.headers)
        )
        self.last_seq = protocol.parse_last_event_id(
            request.headers.get("Last-Event-ID")
            or handler.get_query_argument("last_event_id", None)
        )
        self.code: int | None = None
        self.upstream_headers: dict[str, str] = {}
        self.relaying = False
        self.refusal: str | None = None  # why the answer is not relayed (a 502)
        self.error_body = bytearray()
        self.answer: list[bytes] = []
        self.no_content = False
        self.answer_bytes = 0
        self.lines = protocol.LineSplitter(limits.max_event_bytes)
        self.caller, self.budgets = caller, budgets
        self.charged = 0  # bytes of an unfinished line held against the caller's budget
        self.unflushed = self.in_flight = self.count = 0
        #: seq of the last event relayed, the last execution model seen, a final event seen
        self.seen_seq: int | None = None
        self.execution: dict[str, Any] | None = None
        self.final_seen = self.saw_event = self.caller_gone = self.server_gone = False
        self.last_data = self.last_write = self.last_check = time.monotonic()
        self.sent_at: float | None = None
        self.request = upstream_request(
            handler.request, url, token, self.last_seq, self.as_sse,
            header_callback=self._on_header_line,
            streaming_callback=self._on_chunk,
            request_timeout=0 if self.streamed else limits.request_timeout,
        )

    def caller_left(self) -> None:
        """The caller closed its connection: stop the upstream request (not the execution)."""
        self.caller_gone = True
        close_upstream(self.request)

    # -- upstream callbacks (run on the IO loop, synchronously) -----------

    def _on_header_line(self, line: str) -> None:
        if line.startswith("HTTP/"):
            if self.code is None and self.sent_at is not None:
                metrics.observe_upstream_response(self.sent_at)
            self.code = int(line.split(" ", 2)[1])
            self.upstream_headers = {}
        elif line.strip() == "":
            if self.code is not None and not 200 <= self.code <= 599:
                # 1xx (a protocol switch, say) or no HTTP status at all: nothing to relay
                self._refuse(f"answered status {self.code}")
            elif self.code is not None and self.code < 300:
                self._start_relay()
        elif ":" in line:
            name, _, value = line.partition(":")
            self.upstream_headers[name.strip().lower()] = value.strip()

    def _start_relay(self) -> None:
        ctype = self.upstream_headers.get("content-type")
        if self.code in (204, 205):
            # no content: passed on as that, whatever body or type the server claims
            self.relaying, self.streamed, self.no_content = True, False, True
            self.handler.set_status(self.code)
            self.handler.set_header("Content-Type", "application/json; charset=UTF-8")
            return
        if protocol.media_type(ctype) not in RELAYED_TYPES:
            self.refusal = f"answered {protocol.media_type(ctype) or 'no content type'}"
            return
        length = self.upstream_headers.get("content-length", "")
        if not self.streamed and length.isdigit() and int(length) > self.limits.max_answer_bytes:
            self.refusal = f"answered {length} bytes (more than {self.limits.max_answer_bytes})"
            return
        handler = self.handler
        self.relaying = True
        handler.set_status(200 if self.as_sse and handler.request.method == "GET" else self.code)
        if self.as_sse:
            for name, value in protocol.SSE_HEADERS.items():
                handler.set_header(name, value)
        elif ctype:
            handler.set_header("Content-Type", ctype)
        if self.streamed:
            if not self.as_sse:
                handler.set_header("Cache-Control", "no-cache")
                handler.set_header("X-Accel-Buffering", "no")
            protocol.send_at_once(handler)
            self._flush()

    def _refuse(self, reason: str) -> None:
        """Stop reading the upstream answer: `run` answers the caller with the reason."""
        self.refusal = reason
        close_upstream(self.request)

    def _on_chunk(self, chunk: bytes) -> asyncio.Future | None:
        # a callback must not raise: tornado would log it as an uncaught exception; it
        # closes the connection instead, and the fetch ends as a 599
        if self.caller_gone or self.refusal is not None:
            close_upstream(self.request)
            return None
        self.last_data = self.last_write = time.monotonic()
        if not self.relaying:
            if len(self.error_body) + len(chunk) > self.limits.max_error_bytes:
                self._refuse(f"sent an error body over {self.limits.max_error_bytes} bytes")
                return None
            self.error_body.extend(chunk)
            return None
        if self.no_content:
            return None
        if not self.streamed:
            self.answer_bytes += len(chunk)
            if self.answer_bytes > self.limits.max_answer_bytes:
                self._refuse(f"answered more than {self.limits.max_answer_bytes} bytes")
                return None
            self.answer.append(chunk)  # held until the answer is complete and checked
            return None
        skipped = self.lines.skipped
        for line in self.lines.feed(chunk):
            self._relay_line(line)
        self._charge_unfinished_line()
        if self.lines.skipped > skipped:
            log.warning(
                "Skipped an event over %d bytes from %s",
                self.limits.max_event_bytes, self.status["url"],
            )
        flushed = self._flush()
        if flushed is not None and self.in_flight > self.limits.max_pending_bytes // 4:
            # tornado waits for this before it reads on (a slow reader slows the upstream)
            return asyncio.ensure_future(_settled(flushed))
        return None

    def _charge_unfinished_line(self) -> None:
        """Hold the unfinished line against the caller's budget, or skip it."""
        if self.budgets is None:
            return
        want = self.lines.pending
        if want > self.charged and not self.budgets.take(self.caller, want - self.charged):
            self.lines.skip_current()
            self.budgets.give_back(self.caller, self.charged)
            self.charged = 0
            return
        if want < self.charged:
            self.budgets.give_back(self.caller, self.charged - want)
        self.charged = want

    def _relay_line(self, line: bytes) -> None:
        """One JSON event line of a stream, written as it is or as an SSE message."""
        if not line.strip():
            return
        try:
            event = protocol.parse_json(line)
        except ValueError:
            log.warning("Dropping a non-JSON line from %s", self.status["url"])
            return
        if not isinstance(event, dict):
            return
        if "seq" in event and not protocol.is_seq(event["seq"]):
            del event["seq"]  # only a real seq may become an SSE id or a resume point
            line = b""
        if self.as_sse and "seq" not in event:
            event["seq"] = self.count
            line = b""  # changed: encode it anew
        self.count += 1
        seq = event.get("seq")
        if isinstance(seq, int):
            if self.last_seq is not None and seq <= self.last_seq:
                return
            self.seen_seq = seq
        if isinstance(event.get("execution"), dict):
            self.execution = event["execution"]
        self.saw_event = self.saw_event or "event" in event
        self.final_seen = self.final_seen or event.get("event") in protocol.FINAL_EVENTS
        self._write_event(event, line)

    def _write_event(self, event: dict[str, Any], raw: bytes = b"") -> None:
        """One event to the caller; `raw`, when given, is its JSON as received (one line),
        written as it is rather than encoded again (events can be tens of MB)."""
        raw = b"" if b"\r" in raw else raw  # a CR would end an SSE line early
        if self.as_sse and raw and protocol.is_seq(event.get("seq")):
            self._write(b"id: %d\ndata: " % event["seq"] + raw + b"\n\n")
        elif self.as_sse:
            self._write(protocol.format_event(event).encode())
        else:
            self._write((raw or json.dumps(event).encode()) + b"\n")

    def _write(self, data: bytes) -> None:
        self.unflushed += len(data)
        self.handler.write(data)

    def _flush(self) -> asyncio.Future | None:
        """Send what was written. A caller whose earlier data is still unsent past the bound
        does not read: it is cut (it may resume with Last-Event-ID)."""
        if self.caller_gone:
            return None
        if self.in_flight > self.limits.max_pending_bytes:
            log.warning(
                "Cutting a reader of %s/%s: %d bytes wait for it (bound %d); it may resume",
                self.status["user"], self.status["server_name"],
                self.in_flight, self.limits.max_pending_bytes,
            )
            self.caller_left()
            self.handler.request.connection.close()  # type: ignore[union-attr]
            return None
        size, self.unflushed = self.unflushed, 0
        self.in_flight += size

        def sent(flushed: asyncio.Future) -> None:
            self.in_flight -= size
            if flushed.cancelled() or flushed.exception() is not None:
                self.caller_left()  # the caller's connection is gone

        flushed = self.handler.flush()
        flushed.add_done_callback(sent)
        return flushed

    # -- the whole exchange -----------------------------------------------

    async def _watch(self) -> None:
        """Keep-alives on SSE; and end a stream whose server went away without a word
        (the proxy may keep the dead connection open)."""
        tick = min(1.0, self.limits.keepalive_seconds / 2)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            idle = now - self.last_write
            if self.as_sse and self.relaying and idle >= self.limits.keepalive_seconds:
                self._write(protocol.keepalive_comment().encode())
                self._flush()
                self.last_write = now
            if now - max(self.last_data, self.last_check) < self.liveness.interval:
                continue
            self.last_check = now
            if await self.liveness.alive(self.status) is False:
                log.info(
                    "Server %s/%s went away during a stream; ending it",
                    self.status["user"], self.status["server_name"],
                )
                self.server_gone = True
                close_upstream(self.request)
                return

    async def run(self) -> None:
        """Fetch and relay; raises ServerGone, TokenRefused or a domain error (not relayed)."""
        watch = asyncio.ensure_future(self._watch()) if self.streamed else None
        self.sent_at = time.monotonic()
        try:
            response = await fetch_quietly(self.client, self.request)
        finally:
            if watch is not None:
                watch.cancel()
            if self.budgets is not None and self.charged:
                self.budgets.give_back(self.caller, self.charged)
                self.charged = 0
        user, server_name = self.status["user"], self.status["server_name"]
        if self.caller_gone:
            log.info("Caller left; closed the upstream stream from %s/%s", user, server_name)
            return
        if self.refusal is not None:
            self.handler.clear()
            raise errors.UpstreamError(
                f"The server {user}/{server_name} {self.refusal}", cause="server_answer"
            )
        if self.server_gone and not self.relaying:
            raise ServerGone()
        if self.relaying and not self.streamed:
            body = b"".join(self.answer)
            self.answer = []
            self._check_json_answer(body)
            self.handler.finish(body or None)  # (a 204 may not even write b"")
            return
        if self.relaying:
            if self.streamed:
                self._relay_line(self.lines.rest())
            if self.saw_event and not self.final_seen:
                await self._end_unfinished_stream(response.error)
            self.handler.finish()
            return
        if response.code == 599:
            if isinstance(response.error, ConnectionRefusedError):
                raise ServerGone()
            raise errors.UpstreamError(
                f"Could not reach the server {user}/{server_name}: {response.error}",
                cause="server_unreachable",
            )
        if means_gone(response.code, self.upstream_headers.get("location", "")):
            raise ServerGone()
        if response.code in (401, 403):
            raise TokenRefused()
        self.pass_through()

    async def _end_unfinished_stream(self, error: BaseException | None) -> None:
        """A stream that ended without its final event: say so when the server died."""
        user, server_name = self.status["user"], self.status["server_name"]
        gone = self.server_gone or await self.liveness.alive(self.status, fresh=True) is False
        if not gone:
            # the proxy or the connection broke, not the server: readers resume by seq
            log.info("Stream from %s/%s broke off (%s)", user, server_name, error)
            return
        self.liveness.hub.forget(user, server_name)
        self._write_event(self._final_error_event())
        log.info("Server %s/%s gone: ended its stream with notebook_error", user, server_name)

    def _final_error_event(self) -> dict[str, Any]:
        """The event ending a stream whose server died: the server cannot send one."""
        user, server_name = self.status["user"], self.status["server_name"]
        seq = None
        if self.as_sse or self.seen_seq is not None:
            seq = (self.seen_seq if self.seen_seq is not None else self.count - 1) + 1
        return protocol.server_stopped_event(
            f"The server {user}/{server_name} stopped during the execution",
            self.execution, self.exec_id, seq,
        )

    def _check_json_answer(self, body: bytes) -> None:
        """A whole (not streamed) answer labelled JSON must be JSON, else it is a 502."""
        if not answers.is_json_or_empty(self.upstream_headers.get("content-type"), body):
            self.handler.clear()
            user, server_name = self.status["user"], self.status["server_name"]
            raise errors.UpstreamError(
                f"The server {user}/{server_name} answered {self.code} with a body that is "
                "not JSON",
                cause="server_answer",
            )

    def pass_through(self) -> None:
        """An upstream error (or redirect) answered with its status and a JSON body."""
        code = self.code if self.code is not None and 300 <= self.code <= 599 else 502
        self.handler.set_status(code)
        self.handler.set_header("Content-Type", "application/json; charset=UTF-8")
        ctype = self.upstream_headers.get("content-type")
        self.handler.finish(answers.error_body(code, ctype, bytes(self.error_body)))
