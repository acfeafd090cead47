"""Helpers of the hub-service tests: calling the service, notebooks that take their time."""

from __future__ import annotations

import json
import time
from typing import Any

import nbformat
import requests
from realhub import RealHub, tiny_notebook


def slow_notebook(cells: int = 4, seconds: float = 0.7) -> nbformat.NotebookNode:
    """A notebook whose code cells each sleep a while and print their number."""
    nb = tiny_notebook()
    nb.cells = nb.cells[:1] + [
        nbformat.v4.new_code_cell(f"import time\ntime.sleep({seconds})\nprint('cell', {i})")
        for i in range(cells)
    ]
    return nb


class Service:
    """Calls to the nbexec service of one hub, as one token's owner."""

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
        r = self.post(f"{executions_path(user, server)}", data={"notebook": notebook, **params})
        assert r.status_code == 202, r.text
        return r.json()["execution"]

    def wait_done(self, user: str, exec_id: str, timeout: float = 60) -> dict[str, Any]:
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
    if server:
        return f"api/users/{user}/servers/{server}/executions"
    return f"api/users/{user}/executions"


def sse_events(text: str) -> list[tuple[str | None, dict[str, Any]]]:
    """(id, data) of every message in a text/event-stream body."""
    found = []
    for block in text.split("\n\n"):
        ident, data = None, None
        for line in block.splitlines():
            if line.startswith("id:"):
                ident = line[3:].strip()
            elif line.startswith("data:"):
                data = json.loads(line[5:])
        if data is not None:
            found.append((ident, data))
    return found
