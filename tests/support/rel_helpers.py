"""Helpers of the reliability tests: notebooks that reveal their kernel or wait for a signal,
finding processes to kill (calls to the service and its streams: tests/support/service_calls.py)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import nbformat

from tests.support.realhub import RealHub, slow_notebook, tiny_notebook

EXECS = "api/users/alice/executions"


def pid_notebook(cells: int = 40, seconds: float = 0.5) -> nbformat.NotebookNode:
    """First cell prints the kernel's pid; then slow cells."""
    nb = tiny_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import os, time\nprint(os.getpid())")] + [
        nbformat.v4.new_code_cell(f"time.sleep({seconds})\nprint('cell', {i})")
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
