"""Warm kernels in the server's kernel list (issues 2 and 7): hidden while they wait in the
pool, listed like a fresh kernel once an execution has taken one, gone when it ends."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.support.ext_helpers import (
    WARM_POOL_OF_ONE,
    kernel_pid,
    server_config,
    wait_done,
    wait_for_event,
)


@pytest.fixture
def jp_server_config():
    """A pool of one warm python3 kernel."""
    return server_config(**WARM_POOL_OF_ONE)


async def listed_kernels(jp_fetch) -> dict[str, dict]:
    """``GET /api/kernels`` (what JupyterLab's running-kernels list shows), by id."""
    response = await jp_fetch("api", "kernels")
    return {k["id"]: k for k in json.loads(response.body)}


async def test_a_taken_warm_kernel_is_listed_and_a_waiting_one_is_not(
    run, manager, jp_fetch, jp_serverapp
):
    pool = manager.kernels
    await pool.wait_ready("python3", 1, timeout=60)
    [waiting] = [p.kernel_id for p in pool._ready["python3"]]
    assert waiting not in await listed_kernels(jp_fetch)

    started = await run(notebook="slow.ipynb")
    ex = manager.get(started["execution"]["exec_id"])
    await wait_for_event(ex, "start", lambda e: "sleep" in e["cell"]["source"])
    assert ex.warm_kernel and ex.kernel_id == waiting
    listed = await listed_kernels(jp_fetch)
    assert waiting in listed and listed[waiting]["name"] == "python3"
    for _ in range(50):  # the server watches its activity (the sleep cell's busy status)
        if listed[waiting]["execution_state"] == "busy":
            break
        await asyncio.sleep(0.1)
        listed = await listed_kernels(jp_fetch)
    assert listed[waiting]["execution_state"] == "busy"
    assert kernel_pid(jp_serverapp, waiting) > 0  # one of the server's kernels now
    assert waiting not in pool.mkm.list_kernel_ids()

    # the pool's replacement waits hidden
    await pool.wait_ready("python3", 1, timeout=60)
    [refill] = [p.kernel_id for p in pool._ready["python3"]]
    assert refill != waiting and refill not in await listed_kernels(jp_fetch)

    await manager.shutdown(ex.exec_id)
    await wait_done(ex)
    assert ex.status.startswith("error: shut down")
    for _ in range(50):
        if waiting not in await listed_kernels(jp_fetch):
            break
        await asyncio.sleep(0.1)
    assert waiting not in await listed_kernels(jp_fetch)
    assert waiting not in jp_serverapp.kernel_manager.list_kernel_ids()
