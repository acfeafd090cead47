"""Fixtures of the OpenAPI tests: a real `jupyter server` with the extension, the document.

The Execution API is checked on a plain ``jupyter server`` subprocess (the extension loads
because the package is installed); the hub service on the shared real hub (``realhub``).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import nbformat
import pytest
import requests
from openapi_helpers import JupyterServer, load_spec, tiny_notebook


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]



@pytest.fixture(scope="module")
def jupyter_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    """A real Jupyter server with the extension, rooted in a folder holding ``nb.ipynb``."""
    root = tmp_path_factory.mktemp("root")
    nbformat.write(tiny_notebook(), root / "nb.ipynb")
    port = _free_port()
    token = secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    env["JUPYTER_RUNTIME_DIR"] = str(tmp_path_factory.mktemp("runtime"))
    log = root.parent / f"server-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root",
             "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root,
        )
    server = JupyterServer(f"http://127.0.0.1:{port}", token, root, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter server exited:\n{log.read_text()[-3000:]}")
            try:
                if requests.get(f"{server.url}/api/status", headers=server.headers,
                                timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"jupyter server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="session")
def spec() -> dict[str, Any]:
    return load_spec()
