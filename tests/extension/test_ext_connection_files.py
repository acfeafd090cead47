"""Issue 10, item 6: kernels' connection files (their HMAC keys) never touch user folders.

Every kernel the extension starts, warm or fresh, writes its connection file into the
Jupyter runtime folder and removes it when it ends. The server process runs from the
served root here, as ``jupyterhub-singleuser`` runs from the user's home.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import nbformat
import pytest
from jupyter_client.multikernelmanager import AsyncMultiKernelManager

from nbexec_hub.extension.kernels import ServerKernels
from tests.support.ext_helpers import WARM_POOL_OF_ONE, server_config, settle, stream_text

PROBE = (
    "import os, json\n"
    "from ipykernel import get_connection_file\n"
    "cf = get_connection_file()\n"
    "print(json.dumps({'file': os.path.realpath(cf), 'exists': os.path.exists(cf)}))\n"
)


@pytest.fixture
def jp_server_config():
    """A pool of one warm python3 kernel, checked often."""
    return server_config(**WARM_POOL_OF_ONE)


@pytest.fixture
def root_as_cwd(jp_root_dir, monkeypatch):
    """The server process's working directory is the served root (before it starts)."""
    monkeypatch.chdir(jp_root_dir)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(PROBE)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Py", "language": "python"}
    nbformat.write(nb, str(jp_root_dir / "sub" / "probe.ipynb"))
    return jp_root_dir


def connection_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("kernel-*.json"))


def probed(events: list[dict]) -> dict:
    """What the probe cell printed about its kernel's connection file."""
    assert events[-1]["execution"]["status"] == "completed", events[-1]
    return json.loads(stream_text(events[-2]["cell"]))


async def test_connection_files_live_in_the_runtime_dir(
    root_as_cwd, jp_serverapp, manager, run
):
    runtime = Path(os.path.realpath(jp_serverapp.runtime_dir))
    pool = manager.kernels
    await pool.wait_ready("python3", 1, timeout=60)
    waiting = pool.mkm.get_kernel(pool.mkm.list_kernel_ids()[0]).connection_file
    assert Path(waiting).parent.resolve() == runtime and Path(waiting).exists()

    warm = await run(chunked=True, notebook="sub/probe.ipynb")
    assert warm[-1]["execution"]["warm_kernel"] is True
    manager.kernels = pool.fresh
    try:
        fresh = await run(chunked=True, notebook="sub/probe.ipynb")
    finally:
        manager.kernels = pool
    assert fresh[-1]["execution"]["warm_kernel"] is False
    await settle(manager)

    for events in (warm, fresh):
        seen = probed(events)
        assert seen["exists"] and Path(seen["file"]).parent == runtime
        assert not Path(seen["file"]).exists()  # removed with its kernel
    assert connection_files(root_as_cwd) == []

    await pool.close()  # what a server shutdown does
    assert connection_files(runtime) == [] and connection_files(root_as_cwd) == []


def test_a_kernel_manager_without_a_connection_dir_gets_the_runtime_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    mkm = AsyncMultiKernelManager()
    assert mkm.connection_dir == ""  # relative: the process's working directory
    ServerKernels(mkm, logging.getLogger("test"))
    assert mkm.connection_dir == str(tmp_path / "runtime") and (tmp_path / "runtime").is_dir()
