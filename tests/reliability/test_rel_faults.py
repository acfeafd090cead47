"""Faults on a real hub with real kernels: what callers of the service see when a kernel, a
user's server, the hub or the proxy dies mid-run, when the notebook vanishes, when the disk
is full. Destructive cases get a private hub (``realhub_factory``)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest
import requests

from tests.support.realhub import RealHub, slow_notebook
from tests.support.rel_helpers import (
    EXECS,
    first_output_text,
    gated_notebook,
    kill,
    pid_notebook,
    proxy_pid,
    server_pid,
)
from tests.support.service_calls import Service, ndjson_events, sse_messages

FINAL = ("notebook_complete", "notebook_error")


def test_kernel_killed_mid_run_ends_the_relay_with_an_error(
    realhub: RealHub, alice_token: str, alice_server: Any
) -> None:
    """SIGKILL of the kernel between two cells: the run ends with ``notebook_error``.

    Run it a few times when touching kernel handling: it once failed one run in three,
    while execution kernels kept jupyter_client's auto-restarter (a revived kernel made
    the run wait forever for the interrupted cell).
    """
    realhub.put_notebook("alice", "rel/pid.ipynb", pid_notebook())
    caller = Service(realhub, alice_token)
    resp = caller.request(
        "POST", EXECS, stream=True, timeout=60, headers={"X-Response-Encoding": "chunked"},
        data={"notebook": "rel/pid.ipynb", "output_path": "rel/pid-out.ipynb", "overwrite": "1"},
    )
    assert resp.status_code == 202, resp.text
    events = ndjson_events(resp)
    pid = next(int(first_output_text(e)) for e in events if e["event"] == "end")
    kill(pid)
    started = time.monotonic()
    try:
        rest = list(events)
    except requests.exceptions.RequestException as exc:
        log = "\n".join(realhub.log_text().splitlines()[-30:])
        pytest.fail(f"no final event within a minute of killing kernel {pid} ({exc}):\n{log}")
    assert time.monotonic() - started < 30
    assert rest and rest[-1]["event"] == "notebook_error", rest[-1:]
    model = rest[-1]["execution"]
    assert model["status"].startswith("error:")
    out = nbformat.read(realhub.home("alice") / "rel" / "pid-out.ipynb", as_version=4)
    assert out.cells[0].outputs[0]["text"].strip() == str(pid)  # what ran before is kept


def test_user_server_killed_mid_run_ends_the_relay_then_409_stopped(
    realhub_factory: Any,
) -> None:
    """SIGKILL of alice's server while a chunked POST and an SSE reader relay its events.

    Issue 6 asks that the relay then *ends with a clear final event* (the service cannot
    get one from a dead server, so it has to say so itself) and that the service answers
    409 ``stopped``.
    """
    hub = realhub_factory()
    hub.start_server("alice")
    caller = Service(hub, hub.create_token("alice"))
    hub.put_notebook("alice", "long.ipynb", slow_notebook(cells=60, seconds=0.5))
    post = caller.request("POST", EXECS, data={"notebook": "long.ipynb"}, stream=True,
                          timeout=60, headers={"X-Response-Encoding": "chunked"})
    events = ndjson_events(post)
    exec_id = next(events)["execution"]["exec_id"]
    reader = caller.request("GET", f"{EXECS}/{exec_id}/progress", stream=True, timeout=60,
                            headers={"Accept": "text/event-stream"})
    messages = sse_messages(reader)
    next(messages)
    kill(server_pid(hub))
    started = time.monotonic()
    posted = _drain(events)
    relayed = [event for _, event in _drain(messages)]
    assert time.monotonic() - started < 45, "the relays did not end"
    r = caller.request("GET", EXECS)
    assert r.status_code == 409, r.text
    assert r.json()["state"] == "stopped"
    for name, got in (("chunked POST", posted), ("SSE progress", relayed)):
        assert got and got[-1]["event"] == "notebook_error", (
            f"the {name} relay broke off without a final event; last: {got[-1:]}"
        )


def _drain(stream: Iterator[Any]) -> list[Any]:
    """What a stream still yields until it ends (or breaks off)."""
    got = []
    with contextlib.suppress(requests.exceptions.RequestException):
        for item in stream:
            got.append(item)
    return got


def _resume_until_final(caller: Service, exec_id: str, last: int, deadline: float) -> list[int]:
    """Reconnect by ``Last-Event-ID`` until the final event; the seqs received."""
    seqs = []
    while time.monotonic() < deadline:
        try:
            resp = caller.request(
                "GET", f"{EXECS}/{exec_id}/progress", stream=True, timeout=30,
                headers={"Accept": "text/event-stream", "Last-Event-ID": str(last)},
            )
            if resp.status_code != 200:
                time.sleep(0.5)
                continue
            for ident, event in sse_messages(resp):
                seqs.append(event["seq"])
                assert ident == str(event["seq"])
                last = event["seq"]
                if event["event"] in FINAL:
                    return seqs
        except requests.exceptions.RequestException:
            time.sleep(0.5)
    raise TimeoutError(f"no final event; got {seqs}")


@pytest.mark.parametrize("what", ["hub", "proxy"])
def test_hub_or_proxy_restart_mid_run_execution_completes_and_readers_resume(
    realhub_factory: Any, what: str
) -> None:
    hub = realhub_factory(extra_config=(
        "c.JupyterHub.cleanup_servers = False\nc.JupyterHub.proxy_check_interval = 1\n"
    ))
    hub.start_server("alice")
    caller = Service(hub, hub.create_token("alice"))
    hub.put_notebook("alice", "long.ipynb", slow_notebook(cells=24, seconds=0.5))
    exec_id = caller.run("alice", "long.ipynb")["exec_id"]
    reader = caller.request("GET", f"{EXECS}/{exec_id}/progress", stream=True, timeout=30,
                            headers={"Accept": "text/event-stream"})
    seqs = []
    for _, event in sse_messages(reader):
        seqs.append(event["seq"])
        if event["seq"] >= 4:
            break
    reader.close()
    if what == "hub":
        hub.restart(down_seconds=1)
    else:
        kill(proxy_pid(hub))
    seqs += _resume_until_final(caller, exec_id, seqs[-1], time.monotonic() + 90)
    assert seqs == list(range(len(seqs))), f"gaps or repeats after the {what} restart: {seqs}"
    model = caller.wait_done("alice", exec_id, timeout=90)
    assert model["status"] == "completed"
    assert model["progress"] == "25/25"


def test_notebook_deleted_mid_run(realhub: RealHub, alice_token: str, alice_server: Any) -> None:
    home = realhub.home("alice")
    nb_path = realhub.put_notebook("alice", "rel/vanishing.ipynb",
                                   gated_notebook("go-vanishing"))
    caller = Service(realhub, alice_token)
    model = caller.run("alice", "rel/vanishing.ipynb", output_path="rel/vanishing-out.ipynb",
                       overwrite="true")
    nb_path.unlink()
    (home / "rel" / "go-vanishing").write_text("go")
    try:
        done = caller.wait_done("alice", model["exec_id"], timeout=90)
    finally:
        (home / "rel" / "go-vanishing").unlink()
    assert done["status"] == "completed", done
    out = nbformat.read(home / "rel" / "vanishing-out.ipynb", as_version=4)
    assert out.cells[-1].outputs, "the last cell ran and its output was written"
    r = caller.request("GET", f"{EXECS}/parameters", params={"notebook": "rel/vanishing.ipynb"})
    assert r.status_code == 404 and r.json()["message"]


@contextlib.contextmanager
def full_folder(path: Path, server: int) -> Iterator[str]:
    """A folder where writing more than ~64 KiB fails: a tiny tmpfs (root), else a file
    size limit on the server process (which then gets EFBIG)."""
    path.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)],
                             capture_output=True).returncode == 0
    proc = psutil.Process(server)
    before = proc.rlimit(psutil.RLIMIT_FSIZE)
    if not mounted:
        proc.rlimit(psutil.RLIMIT_FSIZE, (64 * 1024, before[1]))
    try:
        yield "tmpfs" if mounted else "rlimit"
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=True)
        else:
            proc.rlimit(psutil.RLIMIT_FSIZE, before)


def test_full_disk_on_the_output_folder(
    realhub: RealHub, alice_token: str, alice_server: Any
) -> None:
    nb = slow_notebook(cells=2, seconds=0.01)
    nb.cells.append(nbformat.v4.new_code_cell("print('x' * 500_000)"))
    nb_path = realhub.put_notebook("alice", "rel/big.ipynb", nb)
    before = nb_path.read_bytes()
    full = realhub.home("alice") / "rel" / f"full-{int(time.time() * 1000)}"
    caller = Service(realhub, alice_token)
    with full_folder(full, server_pid(realhub)):
        resp = caller.request(
            "POST", EXECS, stream=True, timeout=60, headers={"X-Response-Encoding": "chunked"},
            data={"notebook": "rel/big.ipynb", "output_path": f"rel/{full.name}/out.ipynb"},
        )
        assert resp.status_code == 202, resp.text
        events = list(ndjson_events(resp))
        leftovers = sorted(p.name for p in full.iterdir())
    final = events[-1]
    assert final["event"] == "notebook_error", final
    text = (final["error"] + final["execution"]["status"]).lower()
    assert "space" in text or "too large" in text, f"not a clear error: {final['error']!r}"
    assert nb_path.read_bytes() == before, "the input notebook changed"
    for name in leftovers:  # never a half-written notebook
        if name.endswith(".ipynb"):
            json.loads((full / name).read_text())
