"""Warm kernels (issue 7): pooled executions behave exactly like fresh ones."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from nbexec_hub.extension.pool import WarmKernelPool
from tests.support.ext_helpers import (
    WARM_POOL_OF_ONE,
    read_json,
    server_config,
    stream_text,
    wait_done,
)


@pytest.fixture
def jp_server_config():
    """A pool of one warm python3 kernel, checked often."""
    return server_config(**WARM_POOL_OF_ONE)


@pytest.fixture
async def pool(jp_serverapp, manager):
    """The extension's warm pool, once its kernel is ready."""
    await manager.kernels.wait_ready("python3", 1, timeout=60)
    return manager.kernels


def pooled_pid(pool, kernel_id: str) -> int:
    return pool.mkm.get_kernel(kernel_id).provisioner.process.pid


async def test_a_pooled_kernel_runs_in_the_notebook_folder(run, pool, jp_root_dir, jp_serverapp):
    assert pool.ready_count("python3") == 1
    # waiting warm kernels are not the user's kernels
    assert jp_serverapp.kernel_manager.list_kernel_ids() == []
    events = await run(chunked=True, notebook="sub/cwd.ipynb")
    final = events[-1]["execution"]
    assert final["status"] == "completed" and final["warm_kernel"] is True
    out = read_json(jp_root_dir / "sub" / "cwd-Executed1.ipynb")
    assert stream_text(out.cells[0]).strip() == str(jp_root_dir / "sub")
    assert (jp_root_dir / "sub" / "written.txt").read_text() == "hi"
    assert out.cells[0].execution_count == 1  # the preparation left no trace
    assert out.metadata.language_info.name == "python"


async def test_pooled_runs_match_fresh_runs(run, pool, manager, jp_root_dir):
    (jp_root_dir / "sub" / "helper_mod.py").write_text("VALUE = 42\n")
    probe = (
        "import os, sys, json, helper_mod\n"
        "print(json.dumps({'cwd': os.getcwd(), 'value': helper_mod.VALUE,\n"
        "  'names': sorted(k for k in globals() if not k.startswith('_')),\n"
        "  'path': [p for p in sys.path if 'site-packages' not in p and 'python3' not in p],\n"
        "  'dh': [str(d) for d in _dh], 'env': os.environ.get('NBEXEC_PROBE', '')}))\n"
        "leak = 1"
    )
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(probe)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Py", "language": "python"}
    nbformat.write(nb, str(jp_root_dir / "sub" / "probe.ipynb"))
    os.environ["NBEXEC_PROBE"] = "set"
    try:
        warm = await run(chunked=True, notebook="sub/probe.ipynb")
        await pool.wait_ready("python3", 1)
        warm_again = await run(chunked=True, notebook="sub/probe.ipynb")
        manager.kernels = pool.fresh  # the same request on a fresh kernel
        fresh = await run(chunked=True, notebook="sub/probe.ipynb")
    finally:
        os.environ.pop("NBEXEC_PROBE")
        manager.kernels = pool
    assert warm[-1]["execution"]["warm_kernel"] and warm_again[-1]["execution"]["warm_kernel"]
    assert not fresh[-1]["execution"]["warm_kernel"]

    def printed(events):
        import json

        return json.loads(stream_text(events[-2]["cell"]))

    assert printed(warm) == printed(fresh) == printed(warm_again)
    assert printed(warm)["cwd"] == str(jp_root_dir / "sub") and printed(warm)["value"] == 42
    assert "leak" not in printed(warm_again)["names"]  # nothing carried over


async def test_a_pooled_kernel_killed_while_idle_is_replaced(run, pool):
    [first] = [p.kernel_id for p in pool._ready["python3"]]
    os.kill(pooled_pid(pool, first), signal.SIGKILL)
    for _ in range(100):
        ids = [p.kernel_id for p in pool._ready["python3"]]
        if ids and ids != [first]:
            break
        await asyncio.sleep(0.1)
    assert ids and first not in ids
    events = await run(chunked=True, notebook="simple.ipynb")
    assert events[-1]["execution"]["status"] == "completed"
    assert events[-1]["execution"]["warm_kernel"] is True


async def test_a_dead_pooled_kernel_is_never_handed_out(run, pool, manager):
    pool.warm_kernel_check_interval = 3600  # the watcher will not notice: the take must
    [first] = [p.kernel_id for p in pool._ready["python3"]]
    os.kill(pooled_pid(pool, first), signal.SIGKILL)
    for _ in range(50):
        if not await pool._is_alive(first):
            break
        await asyncio.sleep(0.05)
    events = await run(chunked=True, notebook="simple.ipynb")
    assert events[-1]["execution"]["status"] == "completed"
    assert events[-1]["execution"]["warm_kernel"] is False  # fell back to a fresh kernel


async def test_twenty_concurrent_runs_with_a_pool_of_one(run, pool, manager):
    starts = await asyncio.gather(*(run(notebook="noparams.ipynb") for _ in range(20)))
    executions = [manager.get(s["execution"]["exec_id"]) for s in starts]
    await asyncio.gather(*(wait_done(ex, timeout=120) for ex in executions))
    assert [ex.status for ex in executions] == ["completed"] * 20
    assert 1 <= sum(ex.warm_kernel for ex in executions) < 20
    assert len({ex.output_path for ex in executions}) == 20


async def test_the_pool_drains_at_shutdown(pool, jp_serverapp):
    await pool.wait_ready("python3", 1)
    pids = [pooled_pid(pool, p.kernel_id) for p in pool._ready["python3"]]
    await jp_serverapp.cleanup_extensions()
    assert pool.mkm.list_kernel_ids() == [] and pool.ready_count("python3") == 0
    for pid in pids:
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"warm kernel {pid} still runs")


async def test_unused_warm_kernels_expire_and_come_back_with_use(run, pool):
    pool.warm_kernel_max_idle = 0.1
    for _ in range(100):
        if pool.ready_count("python3") == 0 and not pool.mkm.list_kernel_ids():
            break
        await asyncio.sleep(0.1)
    assert pool.ready_count("python3") == 0 and pool.mkm.list_kernel_ids() == []
    pool.warm_kernel_max_idle = 3600
    events = await run(chunked=True, notebook="noparams.ipynb")
    assert events[-1]["execution"]["warm_kernel"] is False
    await pool.wait_ready("python3", 1)


async def test_which_kernels_are_pooled(jp_serverapp, fake_kernelspec, pool):
    [app] = jp_serverapp.extension_manager.extension_apps["nbexec_hub"]
    assert app.pool is pool
    pool.warm_kernels = None  # the default: none when kernels are forked, else one
    assert pool._python_sizes(forked=True) == {}
    assert pool._python_sizes(forked=False) == {jp_serverapp.kernel_manager.default_kernel_name: 1}
    pool.warm_kernels = {"python3": 0, fake_kernelspec: 2, "not-installed": 1}
    assert pool._python_sizes(forked=False) == {}  # size 0, non-Python, unknown: none pooled
    assert WarmKernelPool._capped({"a": 3, "b": 3}, 4) == {"a": 3, "b": 1}

