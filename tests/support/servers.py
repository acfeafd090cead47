"""Real server processes for tests and benchmarks: free ports, waiting until up, stopping.

Plain helpers, no pytest: the `jupyter_server` fixtures of tests/client and tests/openapi
start a ``jupyter server`` subprocess (the extension loads because the package is
installed) with `jupyter_server`, tests/support/realhub.py starts ``jupyterhub`` with
`wait_until_up` and `stop_process`, and benchmarks/common.py imports this module too.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

from nbexec_hub.client import NbexecClient


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent() -> None:
    """In the child: get SIGTERM when its parent dies (a hard timeout skips teardown)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def wait_until_up(
    proc: subprocess.Popen,
    ready: Callable[[], bool],
    what: str,
    log: Callable[[], str],
    timeout: float = 60,
) -> None:
    """Poll ``ready()`` until it is true; raise with the log's tail if ``proc`` exits first
    or ``timeout`` seconds pass (a failed request counts as not ready yet)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited early:\n{log()[-4000:]}")
        try:
            if ready():
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up in {timeout} s:\n{log()[-4000:]}")
        time.sleep(0.2)


def stop_process(proc: subprocess.Popen, timeout: float = 15, *, group: bool = False) -> None:
    """SIGTERM a process we started; SIGKILL it (its whole process group with ``group``)
    when it is still there after ``timeout`` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        proc.wait(10)


@dataclass
class JupyterServer:
    """A running ``jupyter server`` subprocess: URL (no trailing slash), token, root, log."""

    url: str
    token: str
    root: Path
    log: Path
    proc: subprocess.Popen

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def client(self, url: str | None = None) -> NbexecClient:
        """A direct client, optionally through another URL (a proxy) to the same server."""
        return NbexecClient.for_server(url or self.url, self.token)


def store_path(root: Path) -> Path:
    """Where a server on ``root`` keeps its executions: beside the root, not in the real
    Jupyter data folder, and the same for a server started again on the same root."""
    return root.parent / f".nbexec-store-{root.name}"


@contextlib.contextmanager
def jupyter_server(root: Path, *args: str, timeout: float = 60) -> Iterator[JupyterServer]:
    """Start ``jupyter server`` on a free port serving ``root`` (extra ``args`` on its
    command line) and wait until it answers; stop it afterwards. Its log is written next
    to ``root``, its execution store too (`store_path`)."""
    port = free_port()
    token = secrets.token_hex(16)
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("JUPYTERHUB_", "JUPYTER_SERVER_URL"))
    }
    log = root.parent / f"jupyter-server-{port}.log"
    # traitlets refuses a trait given twice on the command line
    own_store = any(a.startswith("--ExecutionExtensionApp.store_path=") for a in args)
    store_arg = [] if own_store else [f"--ExecutionExtensionApp.store_path={store_path(root)}"]
    with tempfile.TemporaryDirectory(prefix="jupyter-runtime-") as runtime:
        env["JUPYTER_RUNTIME_DIR"] = runtime
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root",
                    "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
                    "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
                    f"--ServerApp.root_dir={root}", *store_arg, *args,
                ],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root,
                preexec_fn=die_with_parent,
            )
        server = JupyterServer(f"http://127.0.0.1:{port}", token, root, log, proc)
        try:
            wait_until_up(
                proc,
                lambda: requests.get(
                    f"{server.url}/api/status", headers=server.headers, timeout=2
                ).status_code == 200,
                "jupyter server",
                lambda: log.read_text(errors="replace"),
                timeout,
            )
            yield server
        finally:
            stop_process(proc)
