"""Calling the nbexec service of a `RealHub` in tests, and reading its event streams.

Used by tests/hub and tests/reliability: `Service` sends requests as one token's owner,
`sse_events` decodes a whole Server-Sent Events body, `sse_messages` and `ndjson_events`
decode a streamed response as it arrives, `SSEChunkDecoder` decodes the chunks of an
asynchronous (tornado) stream; benchmarks/bench_streams.py uses that one too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

import requests

from tests.support.realhub import RealHub


class Service:
    """Calls to the nbexec service of one hub, as one token's owner (or with no token)."""

    def __init__(self, hub: RealHub, token: str | None) -> None:
        self.hub = hub
        self.token = token

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"token {self.token}"} if self.token else {}
        return {**headers, **(extra or {})}

    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        kw["headers"] = self.headers(kw.get("headers"))
        kw.setdefault("timeout", 90)
        return requests.request(method, self.hub.service_url(path), **kw)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        return self.request("POST", path, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self.request("DELETE", path, **kw)

    def run(self, user: str, notebook: str, server: str = "", **params: Any) -> dict[str, Any]:
        """Start an execution (no chunked header): the execution model of notebook_start."""
        r = self.post(executions_path(user, server), data={"notebook": notebook, **params})
        assert r.status_code == 202, r.text
        return r.json()["execution"]

    def wait_done(self, user: str, exec_id: str, timeout: float = 60) -> dict[str, Any]:
        """Poll the execution until it has completed; its model."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.get(f"{executions_path(user)}/{exec_id}")
            if r.status_code == 200:
                model = r.json()["execution"]
                if model["completed_at"]:
                    return model
            time.sleep(0.3)
        raise TimeoutError(f"execution {exec_id} not done after {timeout}s")


def executions_path(user: str, server: str = "") -> str:
    """The service's executions resource of the server ``user``/``server``."""
    if server:
        return f"api/users/{user}/servers/{server}/executions"
    return f"api/users/{user}/executions"


def _sse(lines: Iterable[str]) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """(id, data) of each message in SSE lines (a message ends at an empty line)."""
    ident: str | None = None
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield ident, json.loads("\n".join(data))
            ident, data = None, []
        elif line.startswith("id:"):
            ident = line[3:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def sse_events(text: str) -> list[tuple[str | None, dict[str, Any]]]:
    """(id, data) of every message in a whole text/event-stream body."""
    return list(_sse([*text.splitlines(), ""]))


def sse_messages(resp: requests.Response) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """(id, data) of each message of a streamed text/event-stream response, as they arrive."""
    return _sse(resp.iter_lines(chunk_size=None, decode_unicode=True))


def ndjson_events(resp: requests.Response) -> Iterator[dict[str, Any]]:
    """Each JSON line of a streamed (chunked) response, as it arrives."""
    for line in resp.iter_lines(chunk_size=None):
        if line.strip():
            yield json.loads(line)


class SSEChunkDecoder:
    """Decodes a text/event-stream body fed chunk by chunk (a ``streaming_callback``)."""

    def __init__(self) -> None:
        self.buffer = b""

    def feed(self, chunk: bytes) -> list[dict[str, Any]]:
        """The data of every message that ``chunk`` completes."""
        self.buffer += chunk
        *messages, self.buffer = self.buffer.split(b"\n\n")
        return [
            json.loads(line[6:])
            for message in messages
            for line in message.split(b"\n")
            if line.startswith(b"data: ")
        ]
