"""Durable executions inside a real in-process server (issue 13): kernels launched as a
server-side runner owes them, checkpoints of running outputs, logs replayed from the store
once they left memory, DELETE and retention reaching the store.

Restarts (a real server killed and started again) are in tests/durability.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import nbformat
import pytest

from tests.support.ext_helpers import (
    read_json,
    server_config,
    stream_text,
    wait_done,
    wait_for_event,
)

FACTS = (
    "import json, os\n"
    "print(json.dumps({'hist': str(get_ipython().history_manager.hist_file),\n"
    "                  'session': __session__, 'env': os.environ.get('JPY_SESSION_NAME')}))"
)


def write_notebook(path, *sources: str) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Py", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


@pytest.fixture
def jp_server_config(tmp_path):
    """Fresh kernels, a store in the test's folder, quick checkpoints, no log kept in memory."""
    return server_config(
        store_path=str(tmp_path / "store"),
        checkpoint_min_interval=0.2,
        checkpoint_max_interval=0.5,
        logs_in_memory=0,
        retention_max_count=3,
    )


async def progress_events(jp_fetch, exec_id: str, last_event_id: int | None = None) -> list:
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    response = await jp_fetch("api", "executions", exec_id, "progress", headers=headers)
    return [json.loads(line) for line in response.body.decode().splitlines()]


async def test_a_fresh_kernel_keeps_history_in_memory_and_knows_its_session(run, jp_root_dir):
    write_notebook(jp_root_dir / "deep" / "facts.ipynb", FACTS)
    events = await run(chunked=True, notebook="deep/facts.ipynb")
    assert events[-1]["execution"]["status"] == "completed", events[-1]
    facts = json.loads(stream_text(events[-2]["cell"]))
    expected = os.path.realpath(jp_root_dir / "deep" / "facts.ipynb")
    assert facts["hist"] == ":memory:"
    assert os.path.realpath(facts["session"]) == expected
    assert os.path.realpath(facts["env"]) == expected


async def test_a_spare_kernel_keeps_history_in_memory_and_knows_its_session(
    run, manager, jp_root_dir
):
    write_notebook(jp_root_dir / "deep" / "facts.ipynb", FACTS)
    await run(chunked=True, notebook="deep/facts.ipynb")  # its launch is the spare's
    for _ in range(1500):
        if manager.kernels.forker.spare is not None and manager.kernels.forker.spare.ready:
            break
        await asyncio.sleep(0.02)
    events = await run(chunked=True, notebook="deep/facts.ipynb")
    assert events[-1]["execution"]["warm_kernel"] is True
    facts = json.loads(stream_text(events[-2]["cell"]))
    expected = os.path.realpath(jp_root_dir / "deep" / "facts.ipynb")
    assert facts["hist"] == ":memory:"
    assert os.path.realpath(facts["session"]) == expected
    assert os.path.realpath(facts["env"]) == expected


async def test_checkpoints_write_finished_cells_and_a_long_cells_outputs(
    run, manager, jp_root_dir
):
    write_notebook(
        jp_root_dir / "long.ipynb",
        "print('one')",
        "import time\nprint('partial', flush=True)\ntime.sleep(30)\nprint('never')",
    )
    ex = manager.get((await run(notebook="long.ipynb"))["execution"]["exec_id"])
    await wait_for_event(ex, "start", lambda e: "sleep" in e["cell"]["source"])
    out_path = jp_root_dir / "long-Executed1.ipynb"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        out = read_json(out_path)
        if "partial" in stream_text(out.cells[1]):
            break
        await asyncio.sleep(0.1)
    assert ex.status == "executing"
    assert stream_text(out.cells[0]) == "one\n"  # the finished cell
    assert stream_text(out.cells[1]) == "partial\n"  # the long cell's outputs so far
    assert out.cells[0].metadata.nbexec["end_time"]
    await manager.shutdown(ex.exec_id)
    final = read_json(out_path)  # the final write, after the last checkpoint
    assert final.cells[1].outputs[-1].ename == "ExecutionShutdown"


async def test_finished_logs_replay_from_the_store_with_the_same_seq(
    jp_fetch, run, manager
):
    events = await run(chunked=True, notebook="simple.ipynb")
    exec_id = events[0]["execution"]["exec_id"]
    ex = await wait_done(manager.get(exec_id))
    await manager.history.store.flush()
    await asyncio.sleep(0)  # the store's callback drops the events from memory
    assert ex.events_dropped and len(ex.events_since(0)) <= 1
    replay = await progress_events(jp_fetch, exec_id)
    assert [e["seq"] for e in replay] == list(range(len(events)))
    assert [{k: v for k, v in e.items() if k != "seq"} for e in replay] == events
    resumed = await progress_events(jp_fetch, exec_id, last_event_id=1)
    assert resumed == replay[2:]


async def test_a_long_log_replays_in_pages(jp_fetch, run, manager, monkeypatch):
    from nbexec_hub.extension import store

    monkeypatch.setattr(store, "PAGE_EVENTS", 2)
    events = await run(chunked=True, notebook="steps.ipynb")
    await wait_done(manager.get(events[0]["execution"]["exec_id"]))
    await manager.history.store.flush()
    await asyncio.sleep(0)
    replay = await progress_events(jp_fetch, events[0]["execution"]["exec_id"])
    assert len(events) > 4 and [e["seq"] for e in replay] == list(range(len(events)))


async def test_delete_and_retention_remove_records_and_logs_from_the_store(
    jp_fetch, run, manager, tmp_path
):
    folder = tmp_path / "store" / "executions"
    ids = []
    for _ in range(4):
        events = await run(chunked=True, notebook="simple.ipynb")
        ids.append(events[0]["execution"]["exec_id"])
        await wait_done(manager.get(ids[-1]))
    await manager.history.store.flush()
    # retention_max_count=3: the oldest one is gone, from the listing and from the store
    assert [ex.exec_id for ex in manager.list()] == ids[1:]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"{i}.{ext}" for i in ids[1:] for ext in ("json", "log")
    )
    await jp_fetch("api", "executions", ids[1], method="DELETE")
    await manager.history.store.flush()
    assert not (folder / f"{ids[1]}.json").exists() and not (folder / f"{ids[1]}.log").exists()
    response = await jp_fetch("api", "executions", ids[1], "progress", raise_error=False)
    assert response.code == 404


async def test_the_store_folder_and_format_file(manager, tmp_path):
    store = manager.history.store
    assert store is not None and store.path == str(tmp_path / "store")
    assert json.loads((tmp_path / "store" / "format.json").read_text()) == {"format": 2}
    owner = json.loads((tmp_path / "store" / "owner.json").read_text())
    assert owner["pid"] == os.getpid()


@pytest.mark.parametrize("jp_server_config", [server_config()])
async def test_the_default_store_is_in_the_data_folder_keyed_by_root(
    manager, jp_serverapp, jp_data_dir, monkeypatch
):
    from nbexec_hub.extension.app import ExecutionExtensionApp

    store = manager.history.store
    assert store is not None
    assert os.path.dirname(store.path) == os.path.join(jp_serverapp.data_dir, "nbexec")
    assert os.path.realpath(jp_serverapp.data_dir) == os.path.realpath(jp_data_dir)
    # another root, or another named server of the hub on the same root: another store
    app = ExecutionExtensionApp()
    app.serverapp = jp_serverapp
    assert app._default_store_path() == store.path
    monkeypatch.setenv("JUPYTERHUB_SERVER_NAME", "gpu")
    assert app._default_store_path() != store.path


async def test_the_checkpoint_clock_starts_with_the_first_cell(tmp_path):
    import logging

    from nbexec_hub.extension.checkpoint import Checkpointer

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1"),
                                         nbformat.v4.new_code_cell("2")])
    out = tmp_path / "out.ipynb"
    checkpoints = Checkpointer(nb, str(out), min_interval=0.3, max_interval=10,
                               log=logging.getLogger("test"))
    await asyncio.sleep(0.4)  # the kernel starting: no cell yet, nothing due
    checkpoints.on_event(1, {"event": "start"})
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="one\n")]
    nb.cells[0].metadata["nbexec"] = {"start_time": "a", "end_time": "b"}
    checkpoints.on_event(2, {"event": "end"})
    await asyncio.sleep(0.1)
    assert checkpoints.written == 0 and not out.exists()  # within min_interval of the start
    await asyncio.sleep(0.4)
    assert checkpoints.written == 1
    assert stream_text(read_json(out).cells[0]) == "one\n"
    await checkpoints.close()
    assert checkpoints.written == 1
