"""Prometheus metrics of the Execution API (issue 16), read through the server's /metrics.

The metrics live in prometheus_client's default registry, shared by every server this
test process starts: each test compares the scrapes before and after what it does.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

import pytest

from tests.support.ext_helpers import server_config, wait_done, wait_for_event
from tests.support.metrics import Scrape

#: a parameter value that must never show in the metrics
SECRET_VALUE = "zebra-quokka-7"


@pytest.fixture
def jp_server_config():
    """Fresh kernels; a checkpoint after every cell (so that short runs write some)."""
    return server_config(checkpoint_min_interval=0)


@pytest.fixture
def scrape(jp_fetch):
    async def _scrape() -> Scrape:
        response = await jp_fetch("metrics")
        assert response.code == 200
        return Scrape(response.body.decode())

    return _scrape


async def shutdown(jp_fetch, exec_id: str) -> None:
    response = await jp_fetch(
        "api", "executions", exec_id, method="POST", body=urlencode({"action": "shutdown"}),
        headers={"X-Response-Encoding": "chunked"},
    )
    assert response.code == 202


async def test_every_series_starts_at_zero(scrape) -> None:
    metrics = await scrape()
    for status in ("completed", "error", "interrupted", "shut_down"):
        assert metrics.value("nbexec_executions_ended_total", status=status) is not None
        assert metrics.value("nbexec_execution_duration_seconds_count", status=status) is not None
    for origin in ("spawned", "forked", "spare"):
        count = metrics.value("nbexec_kernel_start_duration_seconds_count", origin=origin)
        assert count is not None
    for output_type in ("stream", "display_data", "execute_result", "error", "clear_output"):
        assert metrics.value("nbexec_output_events_total", output_type=output_type) is not None
    for result in ("written", "failed"):
        assert metrics.value("nbexec_checkpoints_total", result=result) is not None
    assert metrics.value("nbexec_executions_started_total") is not None
    assert metrics.value("nbexec_running_executions") is not None
    assert metrics.value("nbexec_queued_executions") is not None


async def test_a_completed_run_moves_its_counters(run, scrape, jp_auth_header) -> None:
    before = await scrape()
    events = await run(chunked=True, notebook="simple.ipynb", secret_word=SECRET_VALUE)
    assert events[-1]["execution"]["status"] == "completed"
    after = await scrape()
    assert after.delta(before, "nbexec_executions_started_total") == 1
    assert after.delta(before, "nbexec_executions_ended_total", status="completed") == 1
    assert after.delta(before, "nbexec_executions_ended_total", status="error") == 0
    assert after.delta(before, "nbexec_execution_duration_seconds_count", status="completed") == 1
    assert after.delta(before, "nbexec_execution_duration_seconds_sum", status="completed") > 0
    started = {
        origin: after.delta(before, "nbexec_kernel_start_duration_seconds_count", origin=origin)
        for origin in ("spawned", "forked", "spare")
    }
    assert started == {"spawned": 0, "forked": 1, "spare": 0}  # a first run: forked for it
    assert after.delta(before, "nbexec_kernel_start_duration_seconds_sum", origin="forked") > 0
    outputs = [e for e in events if e["event"] == "output"]
    streams = sum(1 for e in outputs if e["output"]["output_type"] == "stream")
    results = sum(1 for e in outputs if e["output"]["output_type"] == "execute_result")
    assert streams >= 1 and results == 1
    assert after.delta(before, "nbexec_output_events_total", output_type="stream") == streams
    assert after.delta(before, "nbexec_output_events_total", output_type="execute_result") == 1
    assert after.delta(before, "nbexec_checkpoints_total", result="written") >= 1
    # nothing of the request: no notebook path, parameter value, output path or token
    token = jp_auth_header["Authorization"].split()[-1]
    for secret in (SECRET_VALUE, "simple.ipynb", "simple-Executed", token):
        assert secret not in after.text


async def test_failed_and_shut_down_runs_are_counted_by_status(
    jp_fetch, run, manager, scrape, jp_root_dir
) -> None:
    before = await scrape()
    events = await run(chunked=True, notebook="error.ipynb")
    assert events[-1]["execution"]["status"].startswith("error: ValueError")
    slow = manager.get((await run(notebook="slow.ipynb"))["execution"]["exec_id"])
    await wait_for_event(slow, "start", lambda e: "sleep" in e["cell"]["source"])
    await shutdown(jp_fetch, slow.exec_id)
    deleted = manager.get((await run(notebook="slow.ipynb"))["execution"]["exec_id"])
    await wait_for_event(deleted, "start", lambda e: "sleep" in e["cell"]["source"])
    response = await jp_fetch("api", "executions", deleted.exec_id, method="DELETE")
    assert response.code == 202
    await wait_done(slow)
    await wait_done(deleted)
    (jp_root_dir / "garbage.ipynb").write_text("not a notebook")
    garbage = await run(notebook="garbage.ipynb")  # accepted, then an error at once
    assert manager.get(garbage["execution"]["exec_id"]).status.startswith("error")
    after = await scrape()
    assert after.delta(before, "nbexec_executions_started_total") == 4
    assert after.delta(before, "nbexec_executions_ended_total", status="error") == 2
    assert after.delta(before, "nbexec_executions_ended_total", status="shut_down") == 2
    assert after.delta(before, "nbexec_executions_ended_total", status="completed") == 0
    # the garbage file never got a slot: no duration for it
    assert after.delta(before, "nbexec_execution_duration_seconds_count", status="error") == 1
    assert after.delta(before, "nbexec_execution_duration_seconds_count", status="shut_down") == 2
    assert after.delta(before, "nbexec_output_events_total", output_type="error") >= 3


async def test_running_and_queued_now_and_interrupted_at_server_stop(
    run, manager, scrape, jp_serverapp
) -> None:
    manager.limiter.limit = 1
    before = await scrape()
    running = manager.get((await run(notebook="slow.ipynb"))["execution"]["exec_id"])
    queued = manager.get((await run(notebook="simple.ipynb"))["execution"]["exec_id"])
    await wait_for_event(running, "start", lambda e: "sleep" in e["cell"]["source"])
    during = await scrape()
    assert during.value("nbexec_running_executions") == 1
    assert during.value("nbexec_queued_executions") == 1
    await jp_serverapp.cleanup_extensions()
    assert running.is_done and queued.is_done
    after = await scrape()
    assert after.value("nbexec_running_executions") == 0
    assert after.value("nbexec_queued_executions") == 0
    assert after.delta(before, "nbexec_executions_ended_total", status="interrupted") == 2
    # only the one that ran has a duration
    assert after.delta(
        before, "nbexec_execution_duration_seconds_count", status="interrupted"
    ) == 1


async def test_metrics_need_the_servers_credentials(jp_fetch) -> None:
    response = await jp_fetch("metrics", headers={"Authorization": ""}, raise_error=False)
    assert response.code in (401, 403)
    assert b"nbexec_" not in response.body


class TestKernelOrigins:
    async def test_a_spare_kernel_start_is_labelled_spare(self, run, manager, scrape) -> None:
        await run(chunked=True, notebook="simple.ipynb")
        forker = manager.kernels.forker
        for _ in range(1500):
            if forker.spare is not None and forker.spare.ready:
                break
            await asyncio.sleep(0.02)
        before = await scrape()
        events = await run(chunked=True, notebook="simple.ipynb")
        final = events[-1]["execution"]
        assert final["status"] == "completed" and final["warm_kernel"] is True
        after = await scrape()
        assert after.delta(
            before, "nbexec_kernel_start_duration_seconds_count", origin="spare"
        ) == 1
        assert after.delta(
            before, "nbexec_kernel_start_duration_seconds_count", origin="forked"
        ) == 0

    @pytest.mark.parametrize("jp_server_config", [server_config(fork_kernels=False)])
    async def test_a_spawned_kernel_start_is_labelled_spawned(self, run, scrape) -> None:
        before = await scrape()
        events = await run(chunked=True, notebook="simple.ipynb")
        assert events[-1]["execution"]["status"] == "completed"
        after = await scrape()
        assert after.delta(
            before, "nbexec_kernel_start_duration_seconds_count", origin="spawned"
        ) == 1
