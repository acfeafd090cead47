"""Spare kernels (issue 15): after a forked launch, the same launch waits forked and ready.

The next run of the same notebook gets it, and must find exactly what a freshly forked
kernel would give it; anything that changed since the spare started (the notebook, the
server's environment, IPython's start-up files, the folder itself) gets a fresh kernel.
A spare is nobody's kernel while it waits: in no list, ended with the server.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal

import pytest

from tests.extension.test_ext_forking import LEAVE_TRACES, PROBE, printed, write_notebook
from tests.support.ext_helpers import kernel_pid, server_config, settle, wait_done, wait_for_event

pytestmark = pytest.mark.skipif(
    not os.path.exists("/proc/self"), reason="kernels are forked on Linux only"
)


@pytest.fixture
def jp_server_config():
    """Forked kernels, with spares (the defaults)."""
    return server_config(fork_kernels=True, spare_kernel=True)


async def spare_ready(forker, timeout: float = 30.0):
    """The waiting spare, once it has bound its ports."""
    for _ in range(int(timeout / 0.02)):
        spare = forker.spare
        if spare is not None and spare.ready:
            return spare
        await asyncio.sleep(0.02)
    raise AssertionError(f"no spare kernel became ready: {forker.spare}")


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (zombies of the template count as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def ended(pid: int, timeout: float = 10.0) -> bool:
    for _ in range(int(timeout / 0.02)):
        if not alive(pid):
            return True
        await asyncio.sleep(0.02)
    return False


async def completed(run, **params) -> list[dict]:
    events = await run(chunked=True, **params)
    assert events[-1]["execution"]["status"] == "completed", events[-1]
    return events


async def spare_after_a_run(run, forker, notebook: str):
    """Run ``notebook`` once (its launch forks a spare) and return the spare once ready."""
    await completed(run, notebook=notebook)
    return await spare_ready(forker)


def spare_was_used(events) -> bool:
    return bool(events[-1]["execution"]["warm_kernel"])


async def test_the_next_run_gets_a_spare_that_is_a_fresh_kernel(run, manager, jp_root_dir):
    """Second run on the spare: the same facts as the first, nothing of it left over."""
    write_notebook(jp_root_dir / "sub" / "traces.ipynb", PROBE, LEAVE_TRACES)
    forker = manager.kernels.forker
    first_events = await completed(run, notebook="sub/traces.ipynb")
    assert not spare_was_used(first_events)
    spare = await spare_ready(forker)
    second_events = await completed(run, notebook="sub/traces.ipynb")
    assert spare_was_used(second_events) and forker.spares_used == 1
    first, second = printed(first_events), printed(second_events)
    assert second["first_run"] and not second["modules"] and second["leaked_env"] == ""
    same = ("cwd", "names", "modules", "path", "dh", "env", "hist", "session",
            "session_env", "parent", "execution_count")
    assert {k: first[k] for k in same} == {k: second[k] for k in same}
    assert first["cwd"] == str(jp_root_dir / "sub")
    assert first["random"] != second["random"] and first["temp"] != second["temp"]
    assert first["uuid"] != second["uuid"]
    # the spare became that run's kernel, under its own id, and was shut down after it
    assert spare.used and second_events[-1]["execution"]["kernel_id"] is None
    await settle(manager)
    assert spare.launch.kernel_id not in manager.kernels.mkm.list_kernel_ids()


async def test_a_spare_waits_in_no_kernel_list(run, manager, jp_fetch, jp_root_dir):
    write_notebook(jp_root_dir / "one.ipynb", "print(1)")
    await completed(run, notebook="one.ipynb")
    spare = await spare_ready(manager.kernels.forker)
    await settle(manager)  # the run's own kernel is shut down just after its last event
    response = await jp_fetch("api", "kernels")
    assert json.loads(response.body) == []
    assert manager.kernels.mkm.list_kernel_ids() == []
    assert alive(spare.process.pid)
    # nothing can find it to run code in it: its connection file is gone once it bound
    # its ports (the provisioner writes it again for the run that takes it)
    assert not os.path.exists(spare.launch.connection_file)


async def test_another_notebook_gets_a_fresh_kernel_and_the_spare_follows_it(
    run, manager, jp_root_dir
):
    write_notebook(jp_root_dir / "a.ipynb", "print('a')")
    write_notebook(jp_root_dir / "b.ipynb", "print(__session__)")
    forker = manager.kernels.forker
    spare_a = await spare_after_a_run(run, forker, "a.ipynb")
    pid_a = spare_a.process.pid
    events = await completed(run, notebook="b.ipynb")
    assert not spare_was_used(events)
    assert events[-2]["cell"]["outputs"][0]["text"].strip().endswith("b.ipynb")
    assert await ended(pid_a)  # replaced by b's
    spare_b = await spare_ready(forker)
    assert spare_b.launch.tag == ("python3", "b.ipynb")
    assert spare_was_used(await completed(run, notebook="b.ipynb"))


async def test_a_changed_server_environment_gets_a_fresh_kernel(run, manager, jp_root_dir):
    write_notebook(jp_root_dir / "env.ipynb", "import os\nprint(os.environ.get('NBEXEC_LATER'))")
    forker = manager.kernels.forker
    spare = await spare_after_a_run(run, forker, "env.ipynb")
    pid = spare.process.pid
    os.environ["NBEXEC_LATER"] = "now"
    try:
        events = await completed(run, notebook="env.ipynb")
    finally:
        os.environ.pop("NBEXEC_LATER")
    assert not spare_was_used(events)
    assert events[-2]["cell"]["outputs"][0]["text"].strip() == "now"
    assert await ended(pid)


async def test_changed_ipython_start_up_files_get_a_fresh_kernel(
    run, manager, jp_root_dir, jp_home_dir
):
    write_notebook(jp_root_dir / "st.ipynb", "print(globals().get('from_startup'))")
    forker = manager.kernels.forker
    await spare_after_a_run(run, forker, "st.ipynb")
    startup = jp_home_dir / ".ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "00-nbexec.py").write_text("from_startup = 'new'\n")
    events = await completed(run, notebook="st.ipynb")
    assert not spare_was_used(events)
    assert events[-2]["cell"]["outputs"][0]["text"].strip() == "new"
    # an edit in place (same name, same folder) counts too
    await spare_ready(forker)
    (startup / "00-nbexec.py").write_text("from_startup = 'edited, longer'\n")
    events = await completed(run, notebook="st.ipynb")
    assert not spare_was_used(events)
    assert events[-2]["cell"]["outputs"][0]["text"].strip() == "edited, longer"
    # and a config file in the notebook's folder, which IPython reads too
    await spare_ready(forker)
    (jp_root_dir / "ipython_kernel_config.py").write_text("c.InteractiveShell.banner2 = 'x'\n")
    assert not spare_was_used(await completed(run, notebook="st.ipynb"))


async def test_a_folder_replaced_since_gets_a_fresh_kernel(run, manager, jp_root_dir):
    write_notebook(jp_root_dir / "dir" / "nb.ipynb", "import os\nprint(os.listdir('.'))")
    forker = manager.kernels.forker
    await spare_after_a_run(run, forker, "dir/nb.ipynb")
    os.rename(jp_root_dir / "dir", jp_root_dir / "dir-old")
    write_notebook(jp_root_dir / "dir" / "nb.ipynb", "import os\nprint(os.listdir('.'))")
    (jp_root_dir / "dir" / "marker").write_text("")
    events = await completed(run, notebook="dir/nb.ipynb")
    assert not spare_was_used(events)
    assert "marker" in events[-2]["cell"]["outputs"][0]["text"]


async def test_a_spare_that_died_is_not_used(run, manager, jp_root_dir):
    write_notebook(jp_root_dir / "one.ipynb", "print(1)")
    forker = manager.kernels.forker
    spare = await spare_after_a_run(run, forker, "one.ipynb")
    os.kill(spare.process.pid, signal.SIGKILL)
    assert await ended(spare.process.pid)
    events = await completed(run, notebook="one.ipynb")
    assert not spare_was_used(events)
    assert forker.spares_used == 0


async def test_a_spare_killed_mid_run_ends_that_run_with_its_error(
    run, manager, jp_serverapp, jp_root_dir
):
    write_notebook(jp_root_dir / "s.ipynb", "import time\nprint('go', flush=True)\ntime.sleep(60)")
    forker = manager.kernels.forker
    first = (await run(notebook="s.ipynb"))["execution"]
    ex1 = manager.get(first["exec_id"])
    await spare_ready(forker)
    second = (await run(notebook="s.ipynb"))["execution"]
    ex2 = manager.get(second["exec_id"])
    await wait_for_event(ex2, "output", lambda e: "go" in e["output"].get("text", ""))
    assert ex2.warm_kernel
    os.kill(kernel_pid(jp_serverapp, ex2.kernel_id), signal.SIGKILL)
    await wait_done(ex2, timeout=30)
    assert ex2.status == "error: the kernel died while the cell was running"
    await manager.shutdown(ex1.exec_id)
    await wait_done(ex1, timeout=30)


@pytest.mark.parametrize(
    "jp_server_config",
    [server_config(fork_kernels=True, spare_kernel_max_idle=0.3)],
)
async def test_an_unused_spare_ends_after_its_idle_time(run, manager, jp_root_dir):
    write_notebook(jp_root_dir / "one.ipynb", "print(1)")
    forker = manager.kernels.forker
    spare = await spare_after_a_run(run, forker, "one.ipynb")
    assert await ended(spare.process.pid, timeout=10)
    assert forker.spare is None
    assert not os.path.exists(spare.launch.connection_file)


@pytest.mark.parametrize(
    "jp_server_config", [server_config(fork_kernels=True, spare_kernel=False)]
)
async def test_the_trait_turns_spares_off(run, manager, jp_root_dir):
    write_notebook(jp_root_dir / "one.ipynb", "print(1)")
    forker = manager.kernels.forker
    for _ in range(2):
        assert not spare_was_used(await completed(run, notebook="one.ipynb"))
    await asyncio.sleep(0.3)
    assert forker.spare is None and forker.spares_started == 0


async def test_the_spare_ends_with_the_server(run, manager, jp_root_dir):
    write_notebook(jp_root_dir / "one.ipynb", "print(1)")
    forker = manager.kernels.forker
    spare = await spare_after_a_run(run, forker, "one.ipynb")
    pid = spare.process.pid
    await forker.close()  # what the extension's stop does
    assert await ended(pid)
    assert not os.path.exists(spare.launch.connection_file)


async def test_runs_at_once_never_share_a_kernel(run, manager, jp_root_dir):
    """Several runs of one notebook at once, its spare starting or waiting: each gets a
    fresh kernel of its own (a spare goes to one run; the next spare, forked at that run's
    launch, may go to another)."""
    write_notebook(jp_root_dir / "sub" / "traces.ipynb", PROBE, LEAVE_TRACES)
    await completed(run, notebook="sub/traces.ipynb")  # its spare starts now
    batches = [await asyncio.gather(*(completed(run, notebook="sub/traces.ipynb")
                                      for _ in range(3))) for _ in range(2)]
    for batch in batches:
        facts = [printed(events) for events in batch]
        assert all(f["first_run"] and not f["modules"] for f in facts)
        assert len({f["uuid"] for f in facts}) == 3


async def test_nothing_is_left_behind(run, manager, jp_serverapp, jp_root_dir):
    """Spares used, replaced and refused leave no process, claim or connection file."""
    import psutil

    runtime = jp_serverapp.runtime_dir
    forker = manager.kernels.forker
    write_notebook(jp_root_dir / "a.ipynb", "print(1)")
    write_notebook(jp_root_dir / "b.ipynb", "print(2)")
    for notebook in ("a.ipynb", "a.ipynb", "b.ipynb", "a.ipynb"):
        await completed(run, notebook=notebook)
        await spare_ready(forker)
    os.environ["NBEXEC_LATER"] = "1"  # the waiting spare is refused
    try:
        await completed(run, notebook="a.ipynb")
    finally:
        os.environ.pop("NBEXEC_LATER")
    spare = await spare_ready(forker)
    await settle(manager)
    assert forker._claimed == {}
    children = psutil.Process(forker.template.pid).children()
    assert [c.pid for c in children if c.status() != psutil.STATUS_ZOMBIE] == [spare.process.pid]
    assert [f for f in os.listdir(runtime) if f.startswith("kernel-")] == []
    pid = spare.process.pid
    await forker.close()
    assert await ended(pid)
