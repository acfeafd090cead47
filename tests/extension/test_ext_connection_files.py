"""Issue 10, item 6: kernels' connection files (their HMAC keys) never touch user folders.

Every kernel the extension starts, forked, spare or spawned, writes its connection file
into the Jupyter runtime folder (owner-only) and removes it when it ends. The server
process runs from the served root here, as ``jupyterhub-singleuser`` runs from the user's
home.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

import nbformat
import pytest
from jupyter_client.multikernelmanager import AsyncMultiKernelManager

from nbexec_hub.extension.kernels import ServerKernels
from tests.support.ext_helpers import server_config, settle, stream_text

PROBE = (
    "import os, json\n"
    "from ipykernel import get_connection_file\n"
    "cf = get_connection_file()\n"
    "print(json.dumps({'file': os.path.realpath(cf), 'exists': os.path.exists(cf),\n"
    "                  'mode': os.stat(cf).st_mode}))\n"
)


@pytest.fixture
def jp_server_config():
    """Forked kernels with a spare (the defaults)."""
    return server_config(fork_kernels=True, spare_kernel=True)


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
    forker = manager.kernels.forker
    forked = await run(chunked=True, notebook="sub/probe.ipynb")
    assert forked[-1]["execution"]["warm_kernel"] is False
    for _ in range(1500):
        if forker.spare is not None and forker.spare.ready:
            break
        await asyncio.sleep(0.02)
    spare = forker.spare
    waiting = Path(spare.launch.connection_file)
    assert waiting.parent.resolve() == runtime
    assert not waiting.exists()  # nothing finds a waiting spare; its run gets the file

    on_spare = await run(chunked=True, notebook="sub/probe.ipynb")
    assert on_spare[-1]["execution"]["warm_kernel"] is True
    assert probed(on_spare)["file"] == str(waiting.resolve())  # its own, named for its id
    assert probed(on_spare)["mode"] & 0o077 == 0  # owner-only, as every kernel's
    manager.kernels.forker = None  # spawned, as for a kernelspec that cannot be forked
    try:
        spawned = await run(chunked=True, notebook="sub/probe.ipynb")
    finally:
        manager.kernels.forker = forker
    assert spawned[-1]["execution"]["warm_kernel"] is False
    await settle(manager)

    for events in (forked, on_spare, spawned):
        seen = probed(events)
        assert seen["exists"] and Path(seen["file"]).parent == runtime
        assert not Path(seen["file"]).exists()  # removed with its kernel
    assert connection_files(root_as_cwd) == []

    await forker.close()  # what a server shutdown does (it ends the next spare too)
    assert connection_files(runtime) == [] and connection_files(root_as_cwd) == []


def test_a_kernel_manager_without_a_connection_dir_gets_the_runtime_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    mkm = AsyncMultiKernelManager()
    assert mkm.connection_dir == ""  # relative: the process's working directory
    ServerKernels(mkm, logging.getLogger("test"))
    assert mkm.connection_dir == str(tmp_path / "runtime") and (tmp_path / "runtime").is_dir()
