"""Executions outlive their server (issue 13, contract A.6), on real `jupyter server`
processes with real kernels: killed with SIGKILL mid-run, started again on the same root
(and the same store), twice; retention; an old-format store; a store that cannot be written.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
import requests

from tests.support.servers import JupyterServer, jupyter_server, store_path
from tests.support.service_calls import ndjson_events, sse_events

INTERRUPTED = "error: interrupted: the server stopped"

pytestmark = pytest.mark.timeout(240)


def write_notebook(path: Path, *sources: str) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Py", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


def api(server: JupyterServer, *parts: str) -> str:
    return "/".join([server.url, "api", "executions", *parts])


def run(server: JupyterServer, notebook: str, *, wait: bool = True) -> list[dict[str, Any]]:
    """POST a run; with ``wait`` every event of the chunked answer, else the first only."""
    headers = dict(server.headers, **({"X-Response-Encoding": "chunked"} if wait else {}))
    resp = requests.post(api(server), data={"notebook": notebook}, headers=headers, timeout=60)
    assert resp.status_code == 202, resp.text
    if not wait:
        return [resp.json()]
    return [json.loads(line) for line in resp.text.splitlines()]


def listing(server: JupyterServer) -> list[dict[str, Any]]:
    resp = requests.get(api(server), headers=server.headers, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()["executions"]


def progress(server: JupyterServer, exec_id: str) -> list[dict[str, Any]]:
    """The whole progress stream of an execution that has ended (JSON lines)."""
    resp = requests.get(api(server, exec_id, "progress"), headers=server.headers, timeout=30)
    assert resp.status_code == 200, resp.text
    return [json.loads(line) for line in resp.text.splitlines()]


def read_until(server: JupyterServer, exec_id: str, stop) -> list[dict[str, Any]]:
    """The progress events of a running execution up to the first for which ``stop`` is true."""
    seen = []
    with requests.get(api(server, exec_id, "progress"), headers=server.headers, stream=True,
                      timeout=60) as resp:
        for event in ndjson_events(resp):
            seen.append(event)
            if stop(event):
                return seen
    raise AssertionError(f"the stream ended before the awaited event: {seen[-1:]}")


def outputs_text(path: Path) -> list[str]:
    """Each cell's stream text in a notebook file."""
    nb = nbformat.read(str(path), as_version=4)
    return ["".join(o.get("text", "") for o in c.get("outputs", []) if o.output_type == "stream")
            for c in nb.cells]


def wait_for(check, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    write_notebook(root / "quick.ipynb", "print('hello')", "6 * 7")
    write_notebook(
        root / "long.ipynb",
        "print('one')",
        "print('two')",
        "import time\nprint('three', flush=True)\ntime.sleep(300)",
        "print('never')",
    )
    return root


def test_a_killed_server_comes_back_with_its_executions(root: Path) -> None:
    out = root / "long-Executed1.ipynb"
    with jupyter_server(root) as first:
        quick = run(first, "quick.ipynb")
        quick_id = quick[0]["execution"]["exec_id"]
        assert quick[-1]["event"] == "notebook_complete"
        long_id = run(first, "long.ipynb", wait=False)[0]["execution"]["exec_id"]
        before = read_until(first, long_id, lambda e: e["event"] == "start"
                            and "sleep" in e["cell"]["source"])
        quick_log = progress(first, quick_id)
        first_models = {m["exec_id"]: m for m in listing(first)}
        # the checkpoint after the second cell (at most checkpoint_min_interval later)
        wait_for(lambda: outputs_text(out)[:2] == ["one\n", "two\n"], "the checkpoint")
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)

    assert outputs_text(out)[:2] == ["one\n", "two\n"]  # what the killed server left
    assert "never" not in "".join(outputs_text(out))

    with jupyter_server(root) as second:
        models = listing(second)
        assert [m["exec_id"] for m in models] == [quick_id, long_id]
        quick_model, long_model = models
        assert quick_model == first_models[quick_id]
        assert long_model["status"] == INTERRUPTED
        assert long_model["completed_at"] is not None
        assert long_model["output_path"] == "long-Executed1.ipynb"
        assert long_model["progress"] == "3/4" and "sleep" in long_model["last_cell_source"]
        assert long_model["started_at"] == first_models[long_id]["started_at"]

        assert progress(second, quick_id) == quick_log  # the same events, the same seq

        long_log = progress(second, long_id)
        assert [e["seq"] for e in long_log] == list(range(len(long_log)))
        assert long_log[: len(before)] == before
        final = long_log[-1]
        assert final["event"] == "notebook_error" and final["execution"] == long_model
        assert "time.sleep(300)" in final["error"]
        assert "ExecutionShutdown: interrupted: the server stopped" in final["error"]
        assert final["output_path"] == "long-Executed1.ipynb"

        # resuming from an event id: SSE from the next seq on
        resp = requests.get(
            api(second, long_id, "progress"), timeout=30,
            headers=dict(second.headers, Accept="text/event-stream", **{"Last-Event-ID": "2"}),
        )
        resumed = sse_events(resp.text)
        assert [int(i) for i, _ in resumed] == list(range(3, len(long_log)))
        assert [data for _, data in resumed] == long_log[3:]

        third_id = run(second, "quick.ipynb")[0]["execution"]["exec_id"]
        second_models = listing(second)

    # a second restart (after a clean stop): nothing changes, nothing is interrupted twice
    with jupyter_server(root) as third:
        assert listing(third) == second_models
        assert [m["exec_id"] for m in second_models] == [quick_id, long_id, third_id]
        assert progress(third, long_id) == long_log
        assert progress(third, quick_id) == quick_log
        assert run(third, "quick.ipynb")[-1]["event"] == "notebook_complete"


def test_retention_by_count_and_by_age(root: Path) -> None:
    folder = store_path(root) / "executions"
    with jupyter_server(root, "--ExecutionHistory.retention_max_count=2") as server:
        ids = [run(server, "quick.ipynb")[0]["execution"]["exec_id"] for _ in range(3)]
        wait_for(lambda: [m["exec_id"] for m in listing(server)] == ids[1:], "count retention")
        wait_for(lambda: sorted(p.name for p in folder.iterdir())
                 == sorted(f"{i}.{x}" for i in ids[1:] for x in ("json", "log")), "the store")
        gone = requests.get(api(server, ids[0]), headers=server.headers, timeout=10)
        assert gone.status_code == 404
        # DELETE forgets at once: listing, progress, and (once written) the store
        resp = requests.delete(api(server, ids[1]), headers=server.headers, timeout=10)
        assert resp.status_code == 202
        assert [m["exec_id"] for m in listing(server)] == ids[2:]
        wait_for(lambda: not (folder / f"{ids[1]}.log").exists(), "the deletion in the store")
    time.sleep(1.5)
    with jupyter_server(root, "--ExecutionHistory.retention_max_age=1") as server:
        assert listing(server) == []  # older than a second: forgotten at start-up
        wait_for(lambda: not list(folder.iterdir()), "the store emptied")


def test_an_old_format_store_is_upgraded_in_place(root: Path) -> None:
    store = store_path(root)
    (store / "logs").mkdir(parents=True)
    model = {"exec_id": "0b5e3a1c-9d2e-4f5a-8b7c-6d5e4f3a2b1c", "path": "quick.ipynb",
             "params": {"n": "1"}, "output_path": "quick-Executed1.ipynb", "overwrite": False,
             "jupyter_kernel": None, "cell_timeout": None, "status": "completed",
             "progress": "2/2", "last_cell_source": "6 * 7", "started_at": time.time() - 60,
             "completed_at": time.time() - 59}
    events = [{"event": "notebook_start", "timestamp": 1.0, "execution": model},
              {"event": "notebook_complete", "timestamp": 2.0, "execution": model}]
    (store / "executions.json").write_text(json.dumps({"format": 1, "executions": {
        model["exec_id"]: {"model": model, "output_path": "quick-Executed1.ipynb"}}}))
    (store / "logs" / f"{model['exec_id']}.jsonl").write_text(
        "".join(json.dumps(dict(e, seq=i)) + "\n" for i, e in enumerate(events)))
    with jupyter_server(root) as server:
        [listed] = listing(server)
        assert {k: listed[k] for k in model} == model
        assert progress(server, model["exec_id"]) == [dict(e, seq=i) for i, e in enumerate(events)]
    assert json.loads((store / "format.json").read_text()) == {"format": 2}
    assert not (store / "executions.json").exists()
    assert "upgrading the execution store" in server.log.read_text()


@contextlib.contextmanager
def read_only_folder(path: Path) -> Iterator[None]:
    """A folder nothing can be written in: a read-only tmpfs (root), else mode 0555."""
    path.mkdir(parents=True)
    if os.geteuid() == 0:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)],
                              capture_output=True)
        if done.returncode != 0:
            why = f"cannot mount a read-only tmpfs: {done.stderr.decode().strip()}"
            if os.environ.get("NBEXEC_STRICT") == "1":  # CI: this test may not skip
                pytest.fail(why)
            pytest.skip(why)
        try:
            yield
        finally:
            subprocess.run(["umount", "-l", str(path)], check=True)
    else:
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(0o755)


def test_a_read_only_store_folder_leaves_executions_in_memory(root: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    with read_only_folder(locked), jupyter_server(
        root, f"--ExecutionExtensionApp.store_path={locked / 'store'}"
    ) as server:
        events = run(server, "quick.ipynb")
        assert events[-1]["event"] == "notebook_complete"
        exec_id = events[0]["execution"]["exec_id"]
        assert [m["exec_id"] for m in listing(server)] == [exec_id]
        assert [e["seq"] for e in progress(server, exec_id)] == list(range(len(events)))
        log = server.log.read_text()
    assert f"the execution store {locked / 'store'} cannot be used" in log
    assert "kept in memory only" in log


def test_a_cleanly_stopped_server_ends_its_runs_the_same_way(root: Path) -> None:
    with jupyter_server(root) as first:
        long_id = run(first, "long.ipynb", wait=False)[0]["execution"]["exec_id"]
        read_until(first, long_id, lambda e: e["event"] == "output"
                   and "three" in e["output"].get("text", ""))
    # SIGTERM: the server stopped the run itself, wrote its output, then its store
    with jupyter_server(root) as second:
        [model] = listing(second)
        assert model["status"] == INTERRUPTED and model["output_path"] == "long-Executed1.ipynb"
        log = progress(second, long_id)
        assert [e["event"] for e in log].count("notebook_error") == 1
    nb = nbformat.read(str(root / "long-Executed1.ipynb"), as_version=4)
    assert outputs_text(root / "long-Executed1.ipynb")[:3] == ["one\n", "two\n", "three\n"]
    assert nb.cells[2].outputs[-1].evalue == "interrupted: the server stopped"
