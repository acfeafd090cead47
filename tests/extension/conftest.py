"""Fixtures of the extension's tests: a real in-process Jupyter server with the extension.

pytest-jupyter's fixtures are imported here (not as a project-wide plugin) so that its
autouse server clean-up only runs for these tests.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from pytest_jupyter.jupyter_server import *  # noqa: F403

FILES = Path(__file__).parent.parent / "files"


@pytest.fixture
async def jp_asyncio_loop():
    """The loop pytest-asyncio runs each test in, so the server and the test share it."""
    return asyncio.get_running_loop()


@pytest.fixture
def jp_server_config():
    """The server under test: the extension enabled, a generous concurrency limit."""
    return {
        "ServerApp": {"jpserver_extensions": {"nbexec_hub": True}},
        "ExecutionExtensionApp": {"max_concurrent_executions": 4, "keepalive_seconds": 0.5},
    }


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
