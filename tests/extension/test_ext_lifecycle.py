"""Load and life cycle: 50 runs at once, the FIFO queue, kernel start retries, server stop."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import weakref
from datetime import datetime, timedelta, timezone

import pytest
from jupyter_server.services.kernels.kernelmanager import ServerKernelManager

from tests.support.ext_helpers import (
    kernel_pid,
    read_json,
    settle,
    stream_text,
    wait_done,
    wait_for_event,
)


async def test_fifty_concurrent_runs_all_complete(run, manager, jp_root_dir):
    starts = await asyncio.gather(*(run(notebook="noparams.ipynb") for _ in range(50)))
    executions = [manager.get(s["execution"]["exec_id"]) for s in starts]
    models = [s["execution"] for s in starts]
    queued = [m for m in models if m["status"] == "initializing"]
    assert queued  # over the limit of 4: they wait their turn
    assert all(m["started_at"] is None and m["progress"] is None for m in queued)
    assert all(m["started_at"] is not None for m in models if m["status"] == "executing")
    await asyncio.gather(*(wait_done(ex, timeout=240) for ex in executions))
    assert [ex.status for ex in executions] == ["completed"] * 50
    names = {ex.output_path for ex in executions}
    assert names == {f"noparams-Executed{n}.ipynb" for n in range(1, 51)}
    assert manager.limiter.active == 0 and manager.kernels.mkm.list_kernel_ids() == []


async def test_queued_runs_start_in_order(run, manager):
    manager.limiter.limit = 1
    starts = [await run(notebook="noparams.ipynb") for _ in range(4)]
    executions = [manager.get(s["execution"]["exec_id"]) for s in starts]
    assert [s["execution"]["status"] for s in starts] == ["executing"] + ["initializing"] * 3
    await asyncio.gather(*(wait_done(ex) for ex in executions))
    started = [ex.started_at for ex in executions]
    assert started == sorted(started)
    for before, after in zip(executions, executions[1:], strict=False):
        assert after.started_at >= before.completed_at - 0.5


async def test_a_kernel_dying_before_kernel_info_is_replaced(run, manager, jp_serverapp):
    original = manager.kernels.start
    leases = []

    async def start_and_kill_the_first(kernel_name, path):
        lease = await original(kernel_name, path)
        leases.append(lease.kernel_id)
        if len(leases) == 1:
            os.kill(kernel_pid(jp_serverapp, lease.kernel_id), signal.SIGKILL)
        return lease

    manager.kernels.start = start_and_kill_the_first
    events = await run(chunked=True, notebook="simple.ipynb")
    assert events[-1]["event"] == "notebook_complete", events[-1]
    assert len(leases) == 2
    await settle(manager)
    assert manager.kernels.mkm.list_kernel_ids() == []


async def test_a_kernel_that_never_starts_fails_the_run(run, manager, jp_serverapp, jp_root_dir):
    original = manager.kernels.start
    manager.kernel_start_attempts = 2
    attempts = []

    async def start_and_kill(kernel_name, path):
        lease = await original(kernel_name, path)
        attempts.append(lease.kernel_id)
        os.kill(kernel_pid(jp_serverapp, lease.kernel_id), signal.SIGKILL)
        return lease

    manager.kernels.start = start_and_kill
    events = await run(chunked=True, notebook="simple.ipynb")
    final = events[-1]
    assert final["event"] == "notebook_error" and len(attempts) == 2
    assert final["execution"]["status"].startswith("error: kernel 'python3' failed to start")
    # it never started: no output notebook, and its reserved name is free again
    assert final["output_path"] is None and final["execution"]["output_path"] is None
    assert not list(jp_root_dir.glob("simple-Executed*"))
    await settle(manager)
    assert manager.kernels.mkm.list_kernel_ids() == []


async def test_server_shutdown_ends_running_and_queued_runs(
    run, manager, jp_serverapp, jp_root_dir
):
    manager.limiter.limit = 1
    running = manager.get((await run(notebook="slow.ipynb"))["execution"]["exec_id"])
    queued = manager.get((await run(notebook="simple.ipynb"))["execution"]["exec_id"])
    await wait_for_event(running, "start", lambda e: "sleep" in e["cell"]["source"])
    assert queued.status == "initializing"
    await jp_serverapp.cleanup_extensions()
    for ex in (running, queued):
        assert ex.is_done and ex.status == "error: interrupted: the server stopped"
        final = ex.events_since(0)[-1][1]
        assert final["event"] == "notebook_error" and "the server stopped" in final["error"]
        assert ex.model()["completed_at"] is not None
    assert running.output_path == "slow-Executed1.ipynb"
    assert queued.output_path is None and not list(jp_root_dir.glob("simple-Executed*"))
    out = read_json(jp_root_dir / "slow-Executed1.ipynb")
    assert stream_text(out.cells[0]) == "started\n"
    assert out.cells[1].outputs[-1].evalue == "interrupted: the server stopped"
    assert manager.kernels.mkm.list_kernel_ids() == []
    assert [ex.exec_id for ex in manager.list()] == [running.exec_id, queued.exec_id]


async def test_running_executions_keep_the_server_active(run, manager, jp_serverapp):
    long_ago = datetime.now(timezone.utc) - timedelta(days=1)
    jp_serverapp.web_app.settings["api_last_activity"] = long_ago
    ex = manager.get((await run(notebook="quiet.ipynb"))["execution"]["exec_id"])
    await wait_for_event(ex, "start")
    jp_serverapp.web_app.settings["api_last_activity"] = long_ago
    await wait_done(ex)
    assert jp_serverapp.web_app.settings["api_last_activity"] > long_ago
    assert jp_serverapp.web_app.last_activity() > long_ago


async def test_an_executions_kernel_counts_as_activity_and_shows_busy(
    jp_fetch, run, manager, jp_serverapp
):
    """The run stamps its kernel's activity from the messages it reads (jupyter_server's
    own IOPub watch, which decodes each message again, is stopped for it): GET
    /api/kernels shows the kernel busy while its cells sleep, its last_activity moves
    from cell to cell, and the server's last_activity follows."""
    before = datetime.now(timezone.utc).isoformat()
    ex = manager.get((await run(notebook="steps.ipynb"))["execution"]["exec_id"])
    await wait_for_event(ex, "start")
    km = manager.kernels.mkm.get_kernel(ex.kernel_id)
    assert getattr(km, "_activity_stream", None) is None  # jupyter_server's watch is off
    seen = []  # (execution_state, last_activity) every 50 ms while the five cells run
    while not ex.is_done:
        listed = json.loads((await jp_fetch("api", "kernels")).body)
        seen += [(k["execution_state"], k["last_activity"]) for k in listed
                 if k["id"] == ex.kernel_id]
        await asyncio.sleep(0.05)
    assert ex.status == "completed"
    assert "busy" in {state for state, _ in seen}, seen
    stamps = sorted({stamp for _, stamp in seen})
    assert len(stamps) >= 3 and stamps[0] > before, seen
    status = json.loads((await jp_fetch("api", "status")).body)
    assert status["last_activity"] >= stamps[-1]


@pytest.mark.skipif(
    not hasattr(ServerKernelManager, "event_logger"),
    reason="this jupyter_server emits no kernel action events (a restart goes unnoticed)",
)
async def test_a_restart_of_the_kernel_by_someone_else_ends_the_run(jp_fetch, run, manager):
    """POST /api/kernels/<id>/restart on a run's kernel (it is listed, so JupyterLab offers
    it): the run's state is gone, so the run ends with that reason instead of waiting for
    its cell forever."""
    ex = manager.get((await run(notebook="slow.ipynb"))["execution"]["exec_id"])
    await wait_for_event(ex, "output")  # 'started'; the next cell sleeps a minute
    await jp_fetch("api", "kernels", ex.kernel_id, "restart", method="POST", body="")
    await wait_done(ex, timeout=30)
    assert ex.status == "error: the kernel was restarted"
    assert manager.kernels.mkm.list_kernel_ids() == []


async def test_delete_frees_the_execution(jp_fetch, run, manager):
    events = await run(chunked=True, notebook="noparams.ipynb")
    ref = weakref.ref(manager.get(events[0]["execution"]["exec_id"]))
    await jp_fetch("api", "executions", events[0]["execution"]["exec_id"], method="DELETE",
                   headers={"X-Response-Encoding": "chunked"})
    for _ in range(20):
        gc.collect()
        if ref() is None:
            break
        await asyncio.sleep(0.05)
    assert ref() is None


async def test_a_kernel_just_added_to_the_table_has_a_last_activity(jp_fetch, manager):
    # jupyter_server lists a new kernel one loop turn before it sets last_activity;
    # without a default, GET /api/kernels and /api/status answer 500 in that turn
    from traitlets.utils.importstring import import_item

    cls = manager.kernels.mkm.kernel_manager_class
    fresh = (import_item(cls) if isinstance(cls, str) else cls)(parent=manager.kernels.mkm)
    assert fresh.last_activity is not None
    assert manager.kernels.mkm.kernel_model  # the model reads it with isoformat()
    response = await jp_fetch("api", "kernels")
    assert response.code == 200


async def test_a_stop_during_kernel_start_leaves_no_kernel(jp_fetch, run, manager):
    original = manager.kernels.start
    started, go_on = asyncio.Event(), asyncio.Event()

    async def slow_start(kernel_name, path):
        lease = await original(kernel_name, path)
        started.set()
        await go_on.wait()
        return lease

    manager.kernels.start = slow_start
    ex = manager.get((await run(notebook="noparams.ipynb"))["execution"]["exec_id"])
    await asyncio.wait_for(started.wait(), 30)
    assert len(manager.kernels.mkm.list_kernel_ids()) == 1
    deleting = asyncio.ensure_future(
        jp_fetch("api", "executions", ex.exec_id, method="DELETE",
                 headers={"X-Response-Encoding": "chunked"})
    )
    while ex.stop_reason is None:  # the DELETE has reached the manager
        await asyncio.sleep(0.01)
    go_on.set()
    assert (await deleting).code == 202
    await wait_done(ex)
    assert ex.status == "error: deleted" and ex.output_path is None
    assert manager.kernels.mkm.list_kernel_ids() == []
