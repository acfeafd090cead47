"""HTTP handlers of ``/api/executions``: parse the request, call the manager, write JSON.

Unauthenticated requests get 401 JSON; authenticated ones then go through the server's
``Authorizer`` as its kernels API does (resource ``kernels``: ``read`` to look,
``execute`` to run, ``write`` to shut down or delete; a refusal is a 403 JSON). Domain
errors are mapped to status codes by `nbexec_hub.http_errors.JSONErrorMixin`. Streams
(chunked JSON lines or SSE) are written and flushed per event; a reader that goes away
only ends its own stream.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import web
from tornado.iostream import StreamClosedError

from ..errors import BadRequest, PayloadTooLarge, Unauthorized
from ..http_errors import JSONErrorMixin
from ..protocol import (
    SSE_HEADERS,
    format_event,
    keepalive_comment,
    parse_last_event_id,
    send_at_once,
    wants_event_stream,
)
from .execution import Execution
from .manager import ExecutionManager
from .naming import normalize_api_path, refuse_hidden
from .request import parse_json_body, parse_run_request

NDJSON = "application/x-ndjson"
NO_CREDENTIALS = "authentication required: send 'Authorization: token <token>'"
#: what the server's Authorizer is asked about: executions run kernels
AUTH_RESOURCE = "kernels"


class ExecutionsAPIHandler(JSONErrorMixin, APIHandler):
    """Common parts: the manager, 401 for anonymous callers, bodies, streams."""

    auth_resource = AUTH_RESOURCE

    @property
    def manager(self) -> ExecutionManager:
        """The extension's one ExecutionManager."""
        return self.settings["nbexec_manager"]

    @property
    def _closed(self) -> asyncio.Event:
        """Set when the caller goes away (streams stop writing then)."""
        if "_closed_event" not in self.__dict__:
            self.__dict__["_closed_event"] = asyncio.Event()
        return self.__dict__["_closed_event"]

    async def prepare(self) -> None:  # type: ignore[override]
        """Authenticate: 401 JSON (not 403, not a redirect) without valid credentials."""
        try:
            await super().prepare()
        except web.HTTPError as exc:
            if exc.status_code == 403 and self.current_user is None:
                raise Unauthorized(NO_CREDENTIALS) from None
            raise
        if self.current_user is None:
            raise Unauthorized(NO_CREDENTIALS)

    def on_connection_close(self) -> None:
        """The caller went away: wake a waiting stream so it ends."""
        self._closed.set()
        super().on_connection_close()

    @property
    def allow_hidden(self) -> bool:
        """Whether the server shows hidden files (then runs may read and write them)."""
        return bool(getattr(self.contents_manager, "allow_hidden", False))

    @property
    def chunked(self) -> bool:
        """Whether the caller asked to wait for the work (``X-Response-Encoding: chunked``)."""
        return self.request.headers.get("X-Response-Encoding", "").strip().lower() == "chunked"

    def body_arguments(self) -> tuple[dict[str, Any], bool]:
        """The request's parameters, and whether they are form strings (not JSON values)."""
        limit = self.settings.get("nbexec_max_body_bytes", 0)
        if limit and len(self.request.body) > limit:
            raise PayloadTooLarge(f"the request body is over {limit} bytes")
        ctype = self.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype == "application/json":
            return parse_json_body(self.request.body), False
        try:
            args = {k: v[-1].decode("utf-8") for k, v in self.request.body_arguments.items()}
        except UnicodeDecodeError:
            raise BadRequest("form values must be UTF-8") from None
        return args, True

    def finish_json(self, body: Any, status: int = 200) -> None:
        """Answer with a JSON body."""
        self.set_status(status)
        self.finish(json.dumps(body))

    def finish_empty(self, status: int = 202) -> None:
        """Answer with an empty body (202 by default)."""
        self.set_status(status)
        self.finish()

    async def stream_events(
        self, ex: Execution, *, start_seq: int, sse: bool, with_seq: bool
    ) -> None:
        """Write every event from ``start_seq`` on, then live ones, until the final one."""
        if sse:
            for name, value in SSE_HEADERS.items():
                self.set_header(name, value)
        else:
            self.set_header("Content-Type", NDJSON)
            self.set_header("Cache-Control", "no-cache")
            self.set_header("X-Accel-Buffering", "no")
        keepalive = self.settings.get("nbexec_keepalive_seconds", 15.0) if sse else None
        send_at_once(self)
        next_seq, first = start_seq, True
        try:
            while True:
                changed = ex.changed()
                batch = await self.manager.events_since(ex, next_seq)
                for seq, event in batch:
                    payload = dict(event, seq=seq) if with_seq else event
                    self.write(format_event(payload) if sse else json.dumps(payload) + "\n")
                    next_seq = seq + 1
                if batch or first:
                    await self.flush()
                    first = False
                if ex.is_done and (next_seq >= ex.next_seq or not batch):
                    break
                if batch and next_seq < ex.next_seq:
                    continue  # the store replays a long log in pages
                if not await self._wait_for(changed, keepalive):
                    if self._closed.is_set():
                        return
                    self.write(keepalive_comment())
                    await self.flush()
        except StreamClosedError:
            return
        if not self._closed.is_set():
            self.finish(set_content_type=self._headers.get("Content-Type"))

    async def _wait_for(self, changed: asyncio.Event, timeout: float | None) -> bool:
        """Wait for the next event; False on timeout or when the reader went away."""
        waits = [asyncio.ensure_future(changed.wait()), asyncio.ensure_future(self._closed.wait())]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        return changed.is_set() and not self._closed.is_set()


class ExecutionsHandler(ExecutionsAPIHandler):
    """``/api/executions``: list, run, delete all."""

    @authorized("read")
    async def get(self) -> None:
        """List every execution."""
        self.finish_json({"executions": [ex.model() for ex in self.manager.list()]})

    @authorized("execute")
    async def post(self) -> None:
        """Run a notebook: 202 with notebook_start, or the whole stream when chunked."""
        args, from_form = self.body_arguments()
        req = parse_run_request(args, from_form=from_form, allow_hidden=self.allow_hidden)
        ex = await self.manager.create(req)
        self.set_status(202)
        if self.chunked:
            await self.stream_events(ex, start_seq=0, sse=False, with_seq=False)
        else:
            self.finish(json.dumps(ex.events_since(0)[0][1]))

    @authorized("write")
    async def delete(self) -> None:
        """Delete every execution, shutting their kernels down."""
        await self.manager.delete_all(wait=self.chunked)
        self.finish_empty()


class ExecutionHandler(ExecutionsAPIHandler):
    """``/api/executions/<exec_id>``: show, act on, delete one."""

    @authorized("read")
    async def get(self, exec_id: str) -> None:
        """Show one execution."""
        self.finish_json({"execution": self.manager.get(exec_id).model()})

    @authorized("write")
    async def post(self, exec_id: str) -> None:
        """Run an action on an execution (only ``shutdown``)."""
        args, _ = self.body_arguments()
        action = args.get("action") or self.get_query_argument("action", None)
        self.manager.get(exec_id)
        if not action:
            raise BadRequest("the action parameter is required (the only action is shutdown)")
        if action != "shutdown":
            raise BadRequest(f"unknown action {action!r} (the only action is shutdown)")
        ex = await self.manager.shutdown(exec_id, wait=self.chunked)
        if self.chunked:
            self.finish_json({"execution": ex.model()}, status=202)
        else:
            self.finish_empty()

    @authorized("write")
    async def delete(self, exec_id: str) -> None:
        """Delete an execution, shutting its kernel down if it is alive."""
        await self.manager.delete(exec_id, wait=self.chunked)
        self.finish_empty()


class ProgressHandler(ExecutionsAPIHandler):
    """``/api/executions/<exec_id>/progress``: replay, then follow, the events."""

    @authorized("read")
    async def get(self, exec_id: str) -> None:
        """Stream the events as JSON lines, or as SSE when the caller accepts it."""
        ex = self.manager.get(exec_id)
        last = parse_last_event_id(self.request.headers.get("Last-Event-ID"))
        if last is None:
            last = parse_last_event_id(self.get_query_argument("last_event_id", None))
        sse = wants_event_stream(self.request.headers.get("Accept"))
        start = 0 if last is None else last + 1
        await self.stream_events(ex, start_seq=start, sse=sse, with_seq=True)


class ParametersHandler(ExecutionsAPIHandler):
    """``/api/executions/parameters?notebook=``: what a notebook's parameters cell declares."""

    @authorized("read")
    async def get(self) -> None:
        """The declared parameters of a notebook."""
        notebook = self.get_query_argument("notebook", None)
        if notebook:
            path = normalize_api_path(notebook, "notebook")
            refuse_hidden(path, "notebook", allow_hidden=self.allow_hidden)
        self.finish_json(await self.manager.parameters(notebook))


_exec_id = r"(?P<exec_id>[^/]+)"

default_handlers = [
    (r"/api/executions/?", ExecutionsHandler),
    (r"/api/executions/parameters/?", ParametersHandler),
    (rf"/api/executions/{_exec_id}/progress/?", ProgressHandler),
    (rf"/api/executions/{_exec_id}/?", ExecutionHandler),
]
