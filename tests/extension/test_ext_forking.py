"""Forked kernels (issue 15): kernels forked from the template behave as spawned ones.

Every test here runs with ``fork_kernels`` on, whatever its default, on real kernels.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal

import nbformat
import pytest

from nbexec_hub.extension.forking import kernel_arguments
from tests.support.ext_helpers import (
    kernel_pid,
    read_json,
    server_config,
    settle,
    stream_text,
    wait_done,
    wait_for_event,
)

pytestmark = pytest.mark.skipif(
    not os.path.exists("/proc/self"), reason="kernels are forked on Linux only"
)

PROBE = (
    "import os, sys, json, random, tempfile, uuid\n"
    "first_run = 'leak' not in globals()\n"
    "print(json.dumps({'cwd': os.getcwd(), 'first_run': first_run,\n"
    "  'names': sorted(k for k in globals() if not k.startswith('_')),\n"
    "  'modules': 'graphlib' in sys.modules,\n"
    "  'path': [p for p in sys.path if 'site-packages' not in p and 'python3' not in p],\n"
    "  'dh': [str(d) for d in _dh], 'env': os.environ.get('NBEXEC_PROBE', ''),\n"
    "  'leaked_env': os.environ.get('NBEXEC_LEAK', ''),\n"
    "  'hist': str(get_ipython().history_manager.hist_file), 'session': __session__,\n"
    "  'session_env': os.environ.get('JPY_SESSION_NAME'),\n"
    "  'parent': os.environ.get('JPY_PARENT_PID') == str(os.getppid()),\n"
    "  'random': random.random(), 'temp': tempfile.mktemp(), 'uuid': str(uuid.uuid4()),\n"
    "  'execution_count': get_ipython().execution_count}))\n"
)
#: a second cell leaving traces a next execution must not see
LEAVE_TRACES = (
    "import graphlib\n"
    "leak = 1\n"
    "os.environ['NBEXEC_LEAK'] = 'yes'\n"
    "os.chdir('/')\n"
    "random.seed(0)"
)


@pytest.fixture
def jp_server_config():
    """Fresh kernels, forked."""
    return server_config(fork_kernels=True)


def write_notebook(path, *sources: str) -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Py", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


def printed(events, cell: int = 0) -> dict:
    """The JSON the probe cell printed."""
    ends = [e for e in events if e["event"] == "end"]
    return json.loads(stream_text(ends[cell]["cell"]))


def forked_count(forker) -> int:
    """Kernels forked for executions: afresh, or from a spare forked beforehand."""
    return forker.forks + forker.spares_used


async def forked_run(run, manager, **params):
    """Run and check the kernel was forked (the forker counted one more fork)."""
    before = forked_count(manager.kernels.forker)
    events = await run(chunked=True, **params)
    assert events[-1]["execution"]["status"] == "completed", events[-1]
    assert forked_count(manager.kernels.forker) == before + 1
    return events


def test_only_this_pythons_ipykernel_is_forked(tmp_path):
    import sys

    assert kernel_arguments([sys.executable, "-m", "ipykernel_launcher", "-f", "c.json"]) == [
        "ipykernel_launcher", "-f", "c.json"
    ]
    assert kernel_arguments(["/usr/bin/false", "-m", "ipykernel_launcher", "-f", "c"]) is None
    assert kernel_arguments([sys.executable, "-X", "dev", "-m", "ipykernel_launcher"]) is None
    assert kernel_arguments(["R", "--slave", "-e", "IRkernel::main()"]) is None


async def test_a_forked_kernel_is_a_spawned_one(run, manager, jp_root_dir):
    """Same folder, path, names, environment, history and session as a spawned kernel."""
    write_notebook(jp_root_dir / "sub" / "probe.ipynb", PROBE)
    os.environ["NBEXEC_PROBE"] = "set"  # a server variable set after the template started
    try:
        forked = printed(await forked_run(run, manager, notebook="sub/probe.ipynb"))
        forker, manager.kernels.forker = manager.kernels.forker, None
        try:
            events = await run(chunked=True, notebook="sub/probe.ipynb")
        finally:
            manager.kernels.forker = forker
        spawned = printed(events)
    finally:
        os.environ.pop("NBEXEC_PROBE")
    session = os.path.realpath(jp_root_dir / "sub" / "probe.ipynb")
    for facts in (forked, spawned):
        assert facts["cwd"] == str(jp_root_dir / "sub") and facts["env"] == "set"
        assert facts["hist"] == ":memory:"
        assert os.path.realpath(facts["session"]) == session
        assert os.path.realpath(facts["session_env"]) == session
        assert facts["parent"]
    same = ("cwd", "names", "modules", "path", "dh", "env", "hist", "session", "execution_count")
    assert {k: forked[k] for k in same} == {k: spawned[k] for k in same}


async def test_two_forked_runs_share_nothing(run, manager, jp_root_dir):
    write_notebook(jp_root_dir / "sub" / "traces.ipynb", PROBE, LEAVE_TRACES)
    first = printed(await forked_run(run, manager, notebook="sub/traces.ipynb"))
    second = printed(await forked_run(run, manager, notebook="sub/traces.ipynb"))
    for facts in (first, second):
        assert facts["first_run"] and not facts["modules"] and facts["leaked_env"] == ""
        assert facts["cwd"] == str(jp_root_dir / "sub")
    assert first["random"] != second["random"]
    assert first["temp"] != second["temp"] and first["uuid"] != second["uuid"]
    assert "NBEXEC_LEAK" not in os.environ


async def test_a_forked_kernel_killed_mid_cell_ends_the_run(
    run, manager, jp_serverapp, jp_root_dir
):
    model = (await run(notebook="slow.ipynb"))["execution"]
    ex = manager.get(model["exec_id"])
    await wait_for_event(ex, "start", lambda e: "sleep" in e["cell"]["source"])
    assert jp_serverapp.kernel_manager.get_kernel(ex.kernel_id).provisioner.forked
    os.kill(kernel_pid(jp_serverapp, ex.kernel_id), signal.SIGKILL)
    await wait_done(ex, timeout=30)
    assert ex.status == "error: the kernel died while the cell was running"
    final = ex.events_since(0)[-1][1]
    assert final["event"] == "notebook_error" and "DeadKernelError" in final["error"]
    out = read_json(jp_root_dir / "slow-Executed1.ipynb")
    assert out.cells[1].outputs[-1].ename == "DeadKernelError"
    assert jp_serverapp.kernel_manager.list_kernel_ids() == []


async def test_interrupting_or_shutting_a_forked_run_down(
    run, manager, jp_serverapp, jp_fetch, jp_root_dir
):
    write_notebook(
        jp_root_dir / "sleepy.ipynb", "import time\nprint('sleeping', flush=True)\ntime.sleep(60)"
    )
    model = (await run(notebook="sleepy.ipynb"))["execution"]
    ex = manager.get(model["exec_id"])
    # the cell runs (an interrupt before it would be lost, forked or spawned)
    await wait_for_event(ex, "output", lambda e: "sleeping" in e["output"].get("text", ""))
    km = jp_serverapp.kernel_manager.get_kernel(ex.kernel_id)
    assert km.provisioner.forked
    # an interrupt reaches the forked kernel's process group like a spawned one's
    await km.interrupt_kernel()
    await wait_done(ex, timeout=30)
    assert "KeyboardInterrupt" in ex.status
    model = (await run(notebook="slow.ipynb"))["execution"]
    ex = manager.get(model["exec_id"])
    await wait_for_event(ex, "start", lambda e: "sleep" in e["cell"]["source"])
    process = jp_serverapp.kernel_manager.get_kernel(ex.kernel_id).provisioner.process
    response = await jp_fetch(
        "api", "executions", ex.exec_id, method="POST", body="action=shutdown"
    )
    assert response.code == 202
    await wait_done(ex, timeout=30)
    assert ex.status.startswith("error:") and "shut" in ex.status
    assert process.poll() is not None  # the forked process ended
    assert jp_serverapp.kernel_manager.list_kernel_ids() == []


async def test_a_killed_template_is_replaced_and_runs_fall_back_meanwhile(
    run, manager, jp_root_dir
):
    write_notebook(jp_root_dir / "one.ipynb", "print(1)")
    await forked_run(run, manager, notebook="one.ipynb")
    forker = manager.kernels.forker
    old = forker.template
    os.kill(old.pid, signal.SIGKILL)
    await asyncio.to_thread(old.process.wait)
    events = await run(chunked=True, notebook="one.ipynb")
    assert events[-1]["execution"]["status"] == "completed"  # spawned instead
    for _ in range(600):  # a new template comes up in the background
        if forker.template is not None and forker.template is not old:
            break
        await asyncio.sleep(0.05)
    assert forker.template.pid != old.pid
    await forked_run(run, manager, notebook="one.ipynb")


async def test_fifty_forked_runs_at_once_complete(run, manager, jp_root_dir):
    write_notebook(jp_root_dir / "one.ipynb", "x = 1", "print(x + 1)")
    await forked_run(run, manager, notebook="one.ipynb")  # the template is up
    starts = await asyncio.gather(*(run(notebook="one.ipynb") for _ in range(50)))
    executions = [manager.get(s["execution"]["exec_id"]) for s in starts]
    await asyncio.gather(*(wait_done(ex, timeout=110) for ex in executions))
    assert [ex.status for ex in executions] == ["completed"] * 50
    assert forked_count(manager.kernels.forker) >= 40  # a few may fall back, none may fail
    await settle(manager)


@pytest.mark.parametrize(
    "jp_server_config", [server_config(fork_kernels=False)]
)
async def test_the_trait_turns_forking_off(run, manager, jp_root_dir):
    assert manager.kernels.forker is None
    write_notebook(jp_root_dir / "one.ipynb", "print(1)")
    events = await run(chunked=True, notebook="one.ipynb")
    assert events[-1]["execution"]["status"] == "completed"


@pytest.mark.parametrize(
    "jp_server_config", [server_config(fork_kernels=True, spare_kernel=False)]
)
async def test_a_forked_kernel_failing_to_start_is_spawned_instead(run, manager, jp_root_dir):
    write_notebook(jp_root_dir / "one.ipynb", "print(1)")
    await forked_run(run, manager, notebook="one.ipynb")  # the template is up
    template = manager.kernels.forker.template
    fork = template.fork

    async def fork_a_failing_kernel(argv, env, cwd, timeout):
        return await fork([argv[0], "--no-such-option-anywhere"], env, cwd, timeout)

    template.fork = fork_a_failing_kernel
    try:
        events = await run(chunked=True, notebook="one.ipynb")
    finally:
        template.fork = fork
    assert events[-1]["execution"]["status"] == "completed", events[-1]
    assert any("a forked kernel failed to start" in said for said in manager.kernels.forker._said)


async def test_the_template_ends_when_its_server_goes():
    import logging

    from nbexec_hub.extension.forking import KernelTemplate

    template = KernelTemplate(logging.getLogger("test"))
    await template.start(timeout=60)
    try:
        await template.ping(timeout=5)
        template._writer.close()  # what the server's exit does to its end of the socket
        for _ in range(200):
            if template.process.poll() is not None:
                break
            await asyncio.sleep(0.05)
        assert template.process.poll() == 0
    finally:
        await template.close()


@pytest.mark.parametrize(
    "jp_server_config",
    [server_config(fork_kernels=True, fork_template_start_delay=0)],
)
async def test_the_template_starts_with_the_server_before_any_run(run, manager, jp_root_dir):
    forker = manager.kernels.forker
    for _ in range(600):  # no run asked: the server starts it on its own
        if forker.template is not None:
            break
        await asyncio.sleep(0.1)
    assert forker.template is not None and forker.template.alive() and forker.forks == 0
    write_notebook(jp_root_dir / "one.ipynb", "print(1)")
    await forked_run(run, manager, notebook="one.ipynb")  # the very first run is forked


@pytest.mark.parametrize(
    "jp_server_config",
    [server_config(fork_kernels=True, fork_template_start_delay=None)],
)
async def test_without_a_start_delay_the_first_run_starts_the_template(
    run, manager, jp_root_dir
):
    forker = manager.kernels.forker
    await asyncio.sleep(1)
    assert forker.template is None and forker._starting is None  # nothing ran: none
    write_notebook(jp_root_dir / "one.ipynb", "print(1)")
    await forked_run(run, manager, notebook="one.ipynb")  # it waited for the template
    assert forker.template is not None
