"""Helpers of the reliability tests: calling the service as a user, reading its streams,
notebooks that reveal their kernel or wait for a signal, finding processes to kill."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import nbformat
import requests
from realhub import RealHub, tiny_notebook

EXECS = "api/users/alice/executions"


class Caller:
    """Requests to one hub's nbexec service with one token (or none)."""

    def __init__(self, hub: RealHub, token: str | None) -> None:
        self.hub = hub
        self.token = token

    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"token {self.token}"} if self.token else {}
        kw["headers"] = {**headers, **kw.get("headers", {})}
        kw.setdefault("timeout", 90)
        return requests.request(method, self.hub.service_url(path), **kw)

    def run(self, notebook: str, **params: Any) -> dict[str, Any]:
        """Start an execution on alice's server; its model (from notebook_start)."""
        r = self.request("POST", EXECS, data={"notebook": notebook, **params})
        assert r.status_code == 202, r.text
        return r.json()["execution"]

    def wait_done(self, exec_id: str, timeout: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.request("GET", f"{EXECS}/{exec_id}")
            if r.status_code == 200 and r.json()["execution"]["completed_at"]:
                return r.json()["execution"]
            time.sleep(0.3)
        raise TimeoutError(f"execution {exec_id} not done after {timeout}s")


def sse_messages(resp: requests.Response) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """(id, event) of each SSE message of a streamed response, as they arrive."""
    ident: str | None = None
    data: list[str] = []
    for raw in resp.iter_lines(chunk_size=None, decode_unicode=True):
        if raw == "":
            if data:
                yield ident, json.loads("\n".join(data))
            ident, data = None, []
        elif raw.startswith("id:"):
            ident = raw[3:].strip()
        elif raw.startswith("data:"):
            data.append(raw[5:].strip())


def ndjson_events(resp: requests.Response) -> Iterator[dict[str, Any]]:
    """Each JSON line of a chunked response, as it arrives."""
    for line in resp.iter_lines(chunk_size=None):
        if line.strip():
            yield json.loads(line)


def pid_notebook(cells: int = 40, seconds: float = 0.5) -> nbformat.NotebookNode:
    """First cell prints the kernel's pid; then slow cells."""
    nb = tiny_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import os, time\nprint(os.getpid())")] + [
        nbformat.v4.new_code_cell(f"time.sleep({seconds})\nprint('cell', {i})")
        for i in range(cells)
    ]
    return nb


def slow_notebook(cells: int, seconds: float) -> nbformat.NotebookNode:
    nb = tiny_notebook()
    nb.cells = nb.cells[:1] + [
        nbformat.v4.new_code_cell(f"import time\ntime.sleep({seconds})\nprint('cell', {i})")
        for i in range(cells)
    ]
    return nb


def gated_notebook(go_file: str, cells: int = 5, seconds: float = 0.1) -> nbformat.NotebookNode:
    """Waits (in its first cell) for ``go_file`` to exist in its folder, then runs slow cells."""
    nb = slow_notebook(cells, seconds)
    nb.cells.insert(1, nbformat.v4.new_code_cell(
        f"import os, time\nwhile not os.path.exists({go_file!r}):\n    time.sleep(0.05)"
    ))
    return nb


def first_output_text(event: dict[str, Any]) -> str:
    """The text of a cell's first stream output in an ``end`` event."""
    outputs = event["cell"].get("outputs", [])
    return "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")


def server_pid(hub: RealHub, user: str = "alice") -> int:
    """The pid of the user's default server, from the hub's spawner state."""
    model = hub.api("GET", f"/users/{user}").json()
    pid = model["servers"][""]["state"]["pid"]
    return int(pid)


def proxy_pid(hub: RealHub) -> int:
    """The pid of configurable-http-proxy (the hub writes it to its pid file)."""
    return int((hub.root / "jupyterhub-proxy.pid").read_text().strip())


def kill(pid: int) -> None:
    """SIGKILL a process and wait until it is gone."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)
