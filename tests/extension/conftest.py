"""Fixtures of the extension's tests: a real in-process Jupyter server with the extension.

pytest-jupyter's fixtures are imported here (not as a project-wide plugin) so that its
autouse server clean-up only runs for these tests.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from urllib.parse import urlencode

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403

from tests.support.ext_helpers import server_config

FILES = Path(__file__).parent.parent / "files"


@pytest.fixture
async def jp_asyncio_loop():
    """The loop pytest-asyncio runs each test in, so the server and the test share it."""
    return asyncio.get_running_loop()


@pytest.fixture
def jp_server_config():
    """The server under test: the extension enabled, a generous concurrency limit."""
    return server_config(keepalive_seconds=0.5, activity_interval=0.2)


@pytest.fixture
def jp_root_dir(tmp_path):
    """A root directory holding a copy of tests/files."""
    root = tmp_path / "root_dir"
    shutil.copytree(FILES, root)
    return root


@pytest.fixture
def fake_kernelspec(jp_data_dir):
    """An installed kernelspec for a language other than Python (never started)."""
    spec_dir = Path(jp_data_dir) / "kernels" / "fakelang"
    spec_dir.mkdir(parents=True)
    spec = {"argv": ["false", "{connection_file}"], "display_name": "Fake", "language": "fakelang"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return "fakelang"


@pytest.fixture
def manager(jp_serverapp):
    """The extension's ExecutionManager inside the server under test."""
    return jp_serverapp.web_app.settings["nbexec_manager"]


@pytest.fixture
def run(jp_fetch):
    """POST /api/executions; with ``chunked=True`` returns the list of streamed events."""

    async def _run(chunked: bool = False, json_body: dict | None = None, **params):
        headers = {"X-Response-Encoding": "chunked"} if chunked else {}
        if json_body is not None:
            headers["Content-Type"] = "application/json"
            body = json.dumps(json_body)
        else:
            body = urlencode(params)
        response = await jp_fetch(
            "api", "executions", method="POST", body=body, headers=headers, raise_error=False
        )
        if response.code != 202:
            return response
        if chunked:
            return [json.loads(line) for line in response.body.decode().splitlines()]
        return json.loads(response.body)

    return _run

