"""The execution store on its own (issue 13): layout, upgrades, damaged files, retention."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest

from nbexec_hub.extension.durability import ExecutionHistory
from nbexec_hub.extension.execution import Execution
from nbexec_hub.extension.store import ExecutionStore, StoreUnavailable

log = logging.getLogger("test-store")


def model(exec_id: str, status: str = "completed", **extra) -> dict:
    return {"exec_id": exec_id, "path": "a.ipynb", "params": {}, "output_path": None,
            "overwrite": False, "jupyter_kernel": None, "cell_timeout": None,
            "status": status, "progress": None, "last_cell_source": None,
            "started_at": 1.0, "completed_at": 2.0, **extra}


def write_format_1(path, executions: dict[str, list[dict]]) -> None:
    """A store as format 1 laid it out: one index, flat log lines with their seq inside."""
    (path / "logs").mkdir(parents=True)
    index = {"format": 1, "executions": {}}
    for exec_id, events in executions.items():
        index["executions"][exec_id] = {"model": model(exec_id), "output_path": "a-Executed1.ipynb"}
        with open(path / "logs" / f"{exec_id}.jsonl", "w") as f:
            for seq, event in enumerate(events):
                f.write(json.dumps(dict(event, seq=seq)) + "\n")
    (path / "executions.json").write_text(json.dumps(index))


async def test_a_format_1_store_is_upgraded_in_place(tmp_path):
    events = [{"event": "notebook_start", "timestamp": 1.0},
              {"event": "notebook_complete", "timestamp": 2.0}]
    write_format_1(tmp_path, {"id-1": events, "id-2": events[:1]})
    store = ExecutionStore.open(str(tmp_path), log)
    try:
        found = store.load()
        assert [s.record["model"]["exec_id"] for s in found] == ["id-1", "id-2"]
        assert found[0].next_seq == 2 and found[0].record["output_path"] == "a-Executed1.ipynb"
        assert await store.read_events("id-1", 0) == list(enumerate(events))
        assert await store.read_events("id-1", 1) == [(1, events[1])]
    finally:
        await store.close()
    assert json.loads((tmp_path / "format.json").read_text()) == {"format": 2}
    assert not (tmp_path / "executions.json").exists() and not (tmp_path / "logs").exists()


async def test_a_store_of_a_newer_format_is_left_alone(tmp_path):
    (tmp_path / "format.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(StoreUnavailable, match="newer nbexec-hub"):
        ExecutionStore.open(str(tmp_path), log)
    assert json.loads((tmp_path / "format.json").read_text()) == {"format": 99}


async def test_a_store_in_use_by_a_live_server_is_refused(tmp_path):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        store = ExecutionStore.open(str(tmp_path), log)
        await store.close()
        owner = json.loads((tmp_path / "owner.json").read_text())
        stat = open(f"/proc/{other.pid}/stat").read().rsplit(")", 1)[1].split()[19]
        owner.update(pid=other.pid, started=stat)
        (tmp_path / "owner.json").write_text(json.dumps(owner))
        with pytest.raises(StoreUnavailable, match="in use by another server"):
            ExecutionStore.open(str(tmp_path), log)
    finally:
        other.kill()
        other.wait()
    store = ExecutionStore.open(str(tmp_path), log)  # its owner is gone: taken over
    await store.close()


async def test_damaged_files_are_skipped_not_fatal(tmp_path, caplog):
    store = ExecutionStore.open(str(tmp_path), log)
    folder = tmp_path / "executions"
    (folder / "bad.json").write_text("{not json")
    (folder / "running.json").write_text(json.dumps(
        {"model": model("running", status="executing"), "next_seq": 1, "created": 1}))
    # a crash cut the last line of the log short
    (folder / "running.log").write_text(
        '{"seq":0,"event":{"event":"notebook_start"}}\n'
        '{"seq":1,"event":{"event":"start","progress":"1/2"}}\n{"seq":2,"eve'
    )
    found = store.load()
    await store.close()
    assert [s.record["model"]["exec_id"] for s in found] == ["running"]
    assert found[0].next_seq == 2 and found[0].last_event == {"event": "start", "progress": "1/2"}
    assert "skipping unreadable execution record bad.json" in caplog.text


async def test_a_running_execution_ends_interrupted_once(tmp_path):
    store = ExecutionStore.open(str(tmp_path), log)
    folder = tmp_path / "executions"
    running = model("r", status="executing", progress="1/2", last_cell_source="sleep()",
                    completed_at=None)
    (folder / "r.json").write_text(json.dumps({"model": running, "next_seq": 1, "created": 1}))
    (folder / "r.log").write_text('{"seq":0,"event":{"event":"notebook_start"}}\n'
                                  '{"seq":1,"event":{"event":"start"}}\n')
    history = ExecutionHistory(store, root_dir=str(tmp_path), retention_max_age=0,
                               retention_max_count=0, logs_in_memory=0, log=log)
    [ex] = history.restore(100)
    await history.close()
    assert ex.status == "error: interrupted: the server stopped" and ex.next_seq == 3
    assert ex.output_path is None  # no output file: nothing to point at
    final = (await ExecutionStore(str(tmp_path), log).read_events("r", 2))[0][1]
    assert final["event"] == "notebook_error"
    assert "sleep()" in final["error"] and "interrupted: the server stopped" in final["error"]
    assert final["execution"]["status"] == ex.status
    # the next start finds it ended: nothing is added
    store = ExecutionStore.open(str(tmp_path), log)
    again = ExecutionHistory(store, root_dir=str(tmp_path), retention_max_age=0,
                             retention_max_count=0, logs_in_memory=0, log=log)
    [ex] = again.restore(100)
    await again.close()
    assert ex.next_seq == 3 and ex.status == "error: interrupted: the server stopped"


def finished(exec_id: str, completed_at: float) -> Execution:
    return Execution.restored(model(exec_id, completed_at=completed_at), 2)


def test_retention_by_age_and_count(monkeypatch):
    from nbexec_hub.extension import durability

    monkeypatch.setattr(durability, "now", lambda: 1000.0)
    executions = [finished("old", 10.0), finished("a", 900.0), finished("b", 950.0),
                  finished("c", 990.0)]
    running = Execution.restored(model("run", status="executing", completed_at=None), 1)
    executions.append(running)

    def expired(max_age: float, max_count: int) -> list[str]:
        history = ExecutionHistory(None, root_dir="/", retention_max_age=max_age,
                                   retention_max_count=max_count, logs_in_memory=0, log=log)
        return sorted(ex.exec_id for ex in history.expired(executions))

    assert expired(0, 0) == []
    assert expired(500, 0) == ["old"]
    assert expired(0, 2) == ["a", "old"]
    assert expired(60, 1) == ["a", "b", "old"]
    assert expired(1, 0) == ["a", "b", "c", "old"]  # never the running one


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
async def test_a_read_only_folder_is_unavailable(tmp_path):
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(StoreUnavailable):
            ExecutionStore.open(str(tmp_path / "store"), log)
    finally:
        tmp_path.chmod(0o755)


async def test_a_record_that_does_not_load_is_skipped(tmp_path, caplog):
    store = ExecutionStore.open(str(tmp_path), log)
    (tmp_path / "owner.json").write_text("{cut sho")  # an unreadable owner is no owner
    broken = {"exec_id": "broken", "status": "completed"}  # no path
    (tmp_path / "executions" / "broken.json").write_text(json.dumps({"model": broken}))
    (tmp_path / "executions" / "fine.json").write_text(json.dumps({"model": model("fine")}))
    history = ExecutionHistory(store, root_dir=str(tmp_path), retention_max_age=0,
                               retention_max_count=0, logs_in_memory=0, log=log)
    assert [ex.exec_id for ex in history.restore(100)] == ["fine"]
    await history.close()
    assert "does not load" in caplog.text
    store = ExecutionStore.open(str(tmp_path), log)
    await store.close()
