"""The service's HTTP handlers (CONTRACT B): health, server status and start, spawn
progress, the forwarded Execution API and the fan-out; the routes at the bottom.

Each handler is thin: the caller and its scopes come from `base.ServiceHandler`, the work
from `Forwarder`, `HubClient` and `gather_executions`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tornado import web
from tornado.httputil import responses
from tornado.iostream import StreamClosedError

from .. import __version__, errors, protocol
from ..http_errors import error_body, status_for
from .base import ServiceHandler
from .bounds import ByteBudgets
from .fanout import gather_executions
from .forward import parse_start_wait
from .paths import READ_ONLY_RESOURCES, raw_rest, upstream_api_path
from .relay import Relay


class HealthHandler(ServiceHandler):
    """`GET /api/health`: is the service up, can it reach the hub (no auth, for probes)."""

    requires_login = False

    async def get(self) -> None:
        hub_ok = await self.hub.health()
        self.write_json({"version": __version__, "hub": "ok" if hub_ok else "unreachable"})


class ServerHandler(ServiceHandler):
    """`GET` a server's status (B.3); `POST` starts it (202 with the status)."""

    async def get(self, user: str, server_name: str | None = None) -> None:
        server_name = server_name or ""
        self.check_access(user, server_name)
        self.write_json(await self.hub.server_status(user, server_name, use_cache=False))

    async def post(self, user: str, server_name: str | None = None) -> None:
        server_name = server_name or ""
        self.check_access(user, server_name)
        if not self.may_start(user, server_name):
            raise errors.Forbidden(f"You may not start the server {user}/{server_name}")
        await self.hub.start_server(user, server_name)
        self.write_json(await self.hub.server_status(user, server_name, use_cache=False), 202)


class SpawnProgressHandler(ServiceHandler):
    """`GET …/server/progress`: the hub's spawn progress, relayed as Server-Sent Events."""

    stop: asyncio.Event | None = None

    async def get(self, user: str, server_name: str | None = None) -> None:
        server_name = server_name or ""
        self.check_access(user, server_name)
        status = await self.hub.server_status(user, server_name, use_cache=False)
        if status["state"] == "stopped":
            raise errors.Conflict(
                f"The server {user}/{server_name} is not running", state="stopped"
            )
        self.take_stream_slot()
        for name, value in protocol.SSE_HEADERS.items():
            self.set_header(name, value)
        await self.flush()
        self.stop = asyncio.Event()
        keepalive = asyncio.ensure_future(self._keepalive())

        async def on_event(event: dict[str, Any]) -> None:
            await self._send(protocol.format_event(event))

        try:
            await self.hub.spawn_progress(user, server_name, on_event, self.stop)
        finally:
            keepalive.cancel()
        if not self.stop.is_set():
            self.finish()

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self.forwarder.limits.keepalive_seconds)
            await self._send(protocol.keepalive_comment())

    async def _send(self, text: str) -> None:
        if self.stop is None or self.stop.is_set():
            return
        try:
            self.write(text)
            await self.flush()
        except StreamClosedError:
            self.stop.set()

    def on_connection_close(self) -> None:
        super().on_connection_close()
        if self.stop is not None:
            self.stop.set()


@web.stream_request_body
class ForwardHandler(ServiceHandler):
    """Every request of the Execution API, forwarded to the user's server (B.4).

    Everything that decides whether the request may go on (identity, names, the path's
    segments, access, the query) is checked in `prepare()`, before any of the body is
    read. A refused request is answered at once and its body dropped as it arrives, so an
    anonymous caller can never make the service hold a body. The body of an allowed
    request is kept up to ``max_body_size``; a bigger one is answered 413.
    """

    relay: Relay | None = None
    _body: bytearray
    _body_too_large = False
    _answered = False

    @property
    def max_body_size(self) -> int:
        return self.settings.get("max_body_size", 100 * 1024 * 1024)

    async def prepare(self) -> None:
        self._body = bytearray()
        try:
            await super().prepare()
            self._check_request()
        except (errors.NbexecError, web.HTTPError) as e:
            await self._answer_now(e)
            # the body is read to its end and dropped as it arrives (never kept), so that
            # the client, still sending, reads the answer rather than a reset connection
            self.request.connection.set_max_body_size(1 << 40)  # type: ignore[union-attr]
            return
        if "Content-Length" not in self.request.headers:
            # a chunked body: read (and drop) what passes the limit, then answer 413
            self.request.connection.set_max_body_size(1 << 40)  # type: ignore[union-attr]

    def _check_request(self) -> None:
        """Names, path segments, access and the query: a domain error for anything wrong."""
        kwargs = self.path_kwargs
        self.user = kwargs["user"]
        self.server_name = kwargs.get("server_name") or ""
        self.check_access(self.user, self.server_name)
        resource, self.api_path = upstream_api_path(
            raw_rest(self.request.path, self.settings["service_prefix"])
        )
        if resource in READ_ONLY_RESOURCES and self.request.method != "GET":
            raise web.HTTPError(405, "%s is read-only through the service", resource)
        segments = self.api_path.rstrip("/").split("/")[2:]
        self.progress = resource == "executions" and len(segments) == 2 and (
            segments[1] == "progress"
        )
        self.exec_id = segments[0] if resource == "executions" and segments else None
        start, self.wait = parse_start_wait(
            self.get_query_argument("start", None),
            self.get_query_argument("wait", None),
            self.settings["default_wait"],
            self.settings["max_wait"],
        )
        # only a state-changing method may start a server; a GET may wait for one starting
        self.start = start and self.request.method != "GET"
        length = self.request.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.max_body_size:
            raise errors.PayloadTooLarge(f"The request body is over {self.max_body_size} bytes")
        # every forwarded request, stream or not, holds one of the caller's slots
        self.take_stream_slot()

    async def _answer_now(self, exc: Exception) -> None:
        """Send the error answer whole before the body is read; the body is then dropped."""
        self._answered = True
        status = status_for(exc) or getattr(exc, "status_code", 500)
        self.log_exception(type(exc), exc, None)
        body = json.dumps(error_body(exc, responses.get(status, ""))).encode()
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Content-Length", str(len(body)))
        self.write(body)
        await self.flush()

    def data_received(self, chunk: bytes) -> None:
        if self._answered or self._body_too_large:
            return
        budgets: ByteBudgets = self.settings["body_budgets"]
        if len(self._body) + len(chunk) > self.max_body_size or not budgets.take(
            self.caller_key(), len(chunk)
        ):
            self._body_too_large = True
            self._give_back_body()
            return
        self._body.extend(chunk)
        self._held_body += len(chunk)

    _held_body = 0

    def _give_back_body(self) -> None:
        if self._held_body:
            self.settings["body_budgets"].give_back(self.caller_key(), self._held_body)
            self._held_body = 0
        self._body = bytearray()

    async def _forward(self, *args: Any, **kwargs: Any) -> None:
        if self._answered:
            self.finish()
            return
        if self._body_too_large:
            raise errors.PayloadTooLarge(
                f"The request body is over {self.max_body_size} bytes, or the bodies of "
                "this caller's requests in flight over their budget"
            )
        self.request.body = bytes(self._body)
        self._body = bytearray()
        self.log.info(
            "Forwarding %s %s for %s to %s/%s",
            self.request.method, self.api_path, self.caller_key(), self.user, self.server_name,
        )
        self.slot_held_by_work = True
        try:
            await self.forwarder.forward(
                self, self.user, self.server_name, self.api_path,
                exec_id=self.exec_id, progress=self.progress,
                start=self.start, wait=self.wait,
                may_start=self.may_start(self.user, self.server_name),
                on_relay=self._track_relay,
                caller=self.caller_key(),
                caller_gone=lambda: self.caller_gone,
            )
        finally:
            self.slot_held_by_work = False
            self.request.body = b""
            self._give_back_body()
            if self.caller_gone:
                self._give_back_stream_slot()

    def _track_relay(self, relay: Relay) -> None:
        self.relay = relay

    get = post = put = patch = delete = _forward  # type: ignore[assignment]

    caller_gone = False

    def on_connection_close(self) -> None:
        self.caller_gone = True
        super().on_connection_close()
        if self.relay is not None:
            self.relay.caller_left()


class FanoutHandler(ServiceHandler):
    """`GET /api/executions`: executions of every ready server the caller may access."""

    async def get(self) -> None:
        result = await gather_executions(
            self.forwarder,
            list((self.caller or {}).get("scopes", [])),
            self.may_access,
            concurrency=self.settings["fanout_concurrency"],
            timeout=self.settings["fanout_timeout"],
            max_bytes=self.settings["max_fanout_bytes"],
        )
        self.write_json(result)


class NotFoundHandler(ServiceHandler):
    """Anything else below ``api/``: 404 JSON (after authentication, like every API path)."""

    def _not_found(self, *args: Any, **kwargs: Any) -> None:
        raise errors.NotFound(f"No such API route: {self.request.path}")

    # (other methods get tornado's 405, in JSON too)
    get = post = delete = _not_found  # type: ignore[assignment]


_USER = r"(?P<user>[^/]+)"
_SERVER = r"(?:server|servers/(?P<server_name>[^/]+))"

#: (pattern relative to the service prefix, handler)
default_handlers: list[tuple[str, type]] = [
    (r"api/health", HealthHandler),
    (r"api/executions/?", FanoutHandler),
    (rf"api/users/{_USER}/{_SERVER}/progress", SpawnProgressHandler),
    (rf"api/users/{_USER}/{_SERVER}/?", ServerHandler),
    (
        rf"api/users/{_USER}(?:/servers/(?P<server_name>[^/]+))?"
        r"/(?P<rest>(?:executions|contents|kernelspecs)(?:/.*)?)",
        ForwardHandler,
    ),
]
#: the last route of the application, after the page's
fallback_handlers: list[tuple[str, type]] = [(r"api/.*", NotFoundHandler)]
