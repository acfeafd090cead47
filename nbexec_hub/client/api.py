"""`NbexecClient`: the Execution API's calls, through the hub service or to one server."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

import requests

from ..protocol import NOTEBOOK_START, RESERVED_PARAMS
from .errors import NbexecAPIError
from .streams import (
    Event,
    EventCallback,
    drain_events,
    follow_run_stream,
    resumed_progress,
)
from .target import Target, hub_target, server_target

#: seconds to wait for a TCP connection; streams have no read timeout (a cell may run for hours)
CONNECT_TIMEOUT = 10.0
#: read timeout of requests that answer at once
READ_TIMEOUT = 60.0


def _form_value(value: Any) -> str:
    """A reserved parameter as a form string (booleans as ``true``/``false``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class NbexecClient:
    """The Execution API, through the hub service or straight to one server (module docstring)."""

    def __init__(
        self,
        target: Target,
        session: requests.Session | None = None,
        max_resume_attempts: int = 5,
        resume_delay: float = 1.0,
        idle_timeout: float | None = 60.0,
    ) -> None:
        self.target = target
        self.session = session or requests.Session()
        if target.token:
            self.session.headers["Authorization"] = f"token {target.token}"
        self.max_resume_attempts = max_resume_attempts
        self.resume_delay = resume_delay
        #: a progress stream silent this long (servers send keep-alives every 15 s) is
        #: taken as dropped and resumed; None waits forever
        self.idle_timeout = idle_timeout

    @classmethod
    def for_hub(
        cls, hub_url: str, token: str | None, user: str, server_name: str = "", **kwargs: Any
    ) -> NbexecClient:
        """A client for ``user``'s server through the hub service at ``hub_url``."""
        return cls(hub_target(hub_url, token, user, server_name), **kwargs)

    @classmethod
    def for_server(cls, server_url: str, token: str | None, **kwargs: Any) -> NbexecClient:
        """A client for one Jupyter server at ``server_url``."""
        return cls(server_target(server_url, token), **kwargs)

    # -- plumbing ---------------------------------------------------------------------------

    def _url(self, *parts: str) -> str:
        return self.target.executions_url(*parts)

    def _call(self, method: str, url: str) -> Any:
        """A request the target answers itself (never forwarded); its JSON body."""
        return self._json(self._request(method, url, forwarded=False))

    def _request(
        self,
        method: str,
        url: str,
        *,
        stream: bool = False,
        query: Mapping[str, str] | None = None,
        forwarded: bool = True,
        idle_timeout: float | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        # the service's start/wait only go with requests it forwards to the server
        params = dict(self.target.extra_query) if forwarded else {}
        params.update(query or {})
        # the service may hold a request while it waits for the server to start
        start_wait = float(params.get("wait", 0))
        if stream:
            read_timeout = None if idle_timeout is None else idle_timeout + start_wait
        else:
            read_timeout = READ_TIMEOUT + start_wait
        timeout = (CONNECT_TIMEOUT, read_timeout)
        try:
            response = self.session.request(
                method, url, params=params or None, stream=stream, timeout=timeout, **kwargs
            )
        except requests.RequestException as e:
            raise NbexecAPIError(f"cannot reach {url}: {e}") from e
        if response.status_code >= 400:
            try:
                raise NbexecAPIError.from_response(response)
            finally:
                response.close()
        return response

    @staticmethod
    def _json(response: requests.Response) -> Any:
        if not response.content.strip():
            return None
        try:
            return response.json()
        except ValueError as e:
            raise NbexecAPIError(
                f"expected JSON, got {response.text[:200]!r}", status=response.status_code
            ) from e

    # -- executions -------------------------------------------------------------------------

    def list(self) -> list[dict[str, Any]]:
        """All execution models of the target server."""
        return self._json(self._request("GET", self._url()))["executions"]

    def list_all_servers(self) -> dict[str, Any]:
        """Hub only: executions of every ready server the token may access."""
        return self._call("GET", self.target.all_executions_url())

    def get(self, exec_id: str) -> dict[str, Any]:
        """One execution model."""
        return self._json(self._request("GET", self._url(exec_id)))["execution"]

    def start(
        self,
        notebook: str,
        params: Mapping[str, Any] | None = None,
        *,
        output_path: str | None = None,
        overwrite: bool = False,
        kernel: str | None = None,
        cell_timeout: int | None = None,
    ) -> dict[str, Any]:
        """Start an execution and return its model at once (the ``notebook_start`` event's)."""
        kwargs = self._run_body(notebook, params, output_path, overwrite, kernel, cell_timeout)
        event = self._json(self._request("POST", self._url(), **kwargs))
        return event["execution"] if "execution" in event else event

    def run(
        self,
        notebook: str,
        params: Mapping[str, Any] | None = None,
        *,
        output_path: str | None = None,
        overwrite: bool = False,
        kernel: str | None = None,
        cell_timeout: int | None = None,
        wait: bool = True,
        on_event: EventCallback | None = None,
    ) -> dict[str, Any]:
        """Run a notebook; with ``wait`` follow its progress (``on_event`` gets each event,
        the running cells' ``output`` events too) and return the final model, else return
        the model as started."""
        if not wait:
            model = self.start(notebook, params, output_path=output_path, overwrite=overwrite,
                               kernel=kernel, cell_timeout=cell_timeout)
            if on_event is not None:
                on_event({"event": NOTEBOOK_START, "timestamp": time.time(),
                          "execution": model})
            return model
        kwargs = self._run_body(notebook, params, output_path, overwrite, kernel, cell_timeout)
        response = self._request(
            "POST", self._url(), stream=True,
            headers={"X-Response-Encoding": "chunked", **kwargs.pop("headers", {})}, **kwargs,
        )
        return follow_run_stream(response, on_event, resume=self.progress)

    @staticmethod
    def _run_body(
        notebook: str,
        params: Mapping[str, Any] | None,
        output_path: str | None,
        overwrite: bool,
        kernel: str | None,
        cell_timeout: int | None,
    ) -> dict[str, Any]:
        """Request keyword arguments: a form body, or JSON when a parameter is not a string."""
        reserved: dict[str, str] = {"notebook": notebook}
        if output_path is not None:
            reserved["output_path"] = output_path
        if overwrite:
            reserved["overwrite"] = _form_value(overwrite)
        if kernel is not None:
            reserved["jupyter_kernel"] = kernel
        if cell_timeout is not None:
            reserved["cell_timeout"] = _form_value(cell_timeout)
        params = dict(params or {})
        clash = set(params) & RESERVED_PARAMS
        if clash:
            raise ValueError(f"reserved names cannot be notebook parameters: {sorted(clash)}")
        if all(isinstance(v, str) for v in params.values()):
            return {"data": {**params, **reserved}}
        # typed values (from a JSON/YAML file) keep their types in a JSON body
        return {"json": {**params, **reserved}}

    def progress(self, exec_id: str, after_seq: int | None = None) -> Iterator[Event]:
        """Every event of an execution (after ``after_seq``), live, until its final event;
        a dropped stream is resumed."""

        def open_stream(last: int | None) -> requests.Response:
            # SSE rather than NDJSON for its keep-alives: silence means a dead connection
            headers = {"Accept": "text/event-stream"}
            if last is not None:
                headers["Last-Event-ID"] = str(last)
            return self._request(
                "GET", self._url(exec_id, "progress"), stream=True, headers=headers,
                idle_timeout=self.idle_timeout,
            )

        return resumed_progress(
            open_stream, exec_id, after_seq,
            max_attempts=self.max_resume_attempts, delay=self.resume_delay,
        )

    def follow(self, exec_id: str, on_event: EventCallback | None = None) -> dict[str, Any]:
        """Follow an execution's progress to its end and return the final model."""
        return drain_events(self.progress(exec_id), on_event)

    def shutdown(self, exec_id: str, wait: bool = True) -> dict[str, Any] | None:
        """Shut an execution's kernel down; with ``wait`` return the model once it is done."""
        headers = {"X-Response-Encoding": "chunked"} if wait else {}
        response = self._request(
            "POST", self._url(exec_id), data={"action": "shutdown"}, headers=headers
        )
        body = self._json(response)
        return body.get("execution") if isinstance(body, dict) else None

    def delete(self, exec_id: str) -> None:
        """Delete an execution (shutting its kernel down if alive)."""
        self._request("DELETE", self._url(exec_id))

    def delete_all(self) -> None:
        """Delete every execution of the target server."""
        self._request("DELETE", self._url())

    def parameters(self, notebook: str) -> dict[str, Any]:
        """The parameters a notebook declares: ``{"path": …, "parameters": [...]}``."""
        return self._json(
            self._request("GET", self._url("parameters"), query={"notebook": notebook})
        )

    # -- the server itself ------------------------------------------------------------------

    def server_status(self) -> dict[str, Any]:
        """The server's status model (CONTRACT B.3); a direct server is ``ready`` if it answers."""
        return self.target.status(self._call)

    def start_server(self) -> dict[str, Any]:
        """Hub only: ask the hub to start the server; returns the status model."""
        return self.target.start_server(self._call)

    def start_if_needed(self, wait: int = 60) -> None:
        """Hub only: have the next execution requests start the server and wait for it."""
        # a new target: the old one may be shared with another client
        self.target = self.target.starting(wait)
