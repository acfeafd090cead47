"""Claiming a spare kernel while it starts (issue 15), on the forker alone: a spare that
fails, is replaced or is ended meanwhile gives its claimant no kernel, never an error."""

from __future__ import annotations

import asyncio
import logging

import pytest

from nbexec_hub.extension.forking import KernelForker
from nbexec_hub.extension.spare import Launch, Spare

TAG = ("python3", "nb.ipynb")


class AliveTemplate:
    def alive(self) -> bool:
        return True


def starting_spare(forker: KernelForker, step) -> Spare:
    """A spare of TAG whose start runs ``step`` (a coroutine function) and then succeeds."""
    launch = Launch("k1", ("python", "-m", "ipykernel_launcher"), {}, "/", "/tmp/kernel-k1.json",
                    (), tag=TAG)
    spare = Spare(launch, key="secret", files=(), template=forker.template)

    async def start() -> None:
        await step(spare)

    spare.task = asyncio.ensure_future(start())
    forker.spare = spare
    return spare


@pytest.fixture
def forker():
    forker = KernelForker(logging.getLogger("test"))
    forker.template = AliveTemplate()
    return forker


async def test_a_spare_failing_while_claimed_gives_no_kernel(forker):
    async def fail(spare):
        await asyncio.sleep(0.05)
        forker._drop_spare(spare)  # what a failed start does
        raise RuntimeError("the forked kernel exited with 1")

    spare = starting_spare(forker, fail)
    assert await forker.claim_spare(TAG) is None
    assert forker.spare is None and forker._claimed == {}
    assert spare.ended
    with pytest.raises(RuntimeError):
        await spare.task


async def test_a_spare_cancelled_while_claimed_gives_no_kernel(forker):
    async def hang(spare):
        await asyncio.sleep(30)

    spare = starting_spare(forker, hang)
    asyncio.get_running_loop().call_later(0.05, spare.task.cancel)
    assert await forker.claim_spare(TAG) is None  # no CancelledError for the claimant


async def test_a_spare_replaced_while_claimed_gives_no_kernel(forker):
    async def slow(spare):
        await asyncio.sleep(0.2)

    spare = starting_spare(forker, slow)
    asyncio.get_running_loop().call_later(0.05, forker._drop_spare, spare)  # another launch
    assert await forker.claim_spare(TAG) is None
    assert spare.ended


async def test_a_spare_too_slow_to_start_is_not_waited_for_long(forker):
    async def slow(spare):
        await asyncio.sleep(30)

    forker.spare_claim_wait = 0.1
    spare = starting_spare(forker, slow)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await forker.claim_spare(TAG) is None
    assert loop.time() - started < 5
    assert forker.spare is spare  # it may still serve a later run
    spare.task.cancel()


async def test_the_claimants_own_cancellation_goes_through(forker):
    async def slow(spare):
        await asyncio.sleep(30)

    forker.spare_claim_wait = 10
    spare = starting_spare(forker, slow)
    claim = asyncio.ensure_future(forker.claim_spare(TAG))
    await asyncio.sleep(0.05)
    claim.cancel()
    with pytest.raises(asyncio.CancelledError):
        await claim
    assert not spare.task.done()  # the spare's start is not the claimant's to cancel
    spare.task.cancel()


async def test_a_spare_of_another_template_is_never_claimed(forker):
    async def done(spare):
        return None

    spare = starting_spare(forker, done)
    await spare.task
    forker.template = AliveTemplate()  # the template was replaced since
    assert await forker.claim_spare(TAG) is None
    assert spare.ended


def test_a_released_spare_leaves_the_file_of_the_kernel_started_under_its_id(tmp_path):
    """A claimed spare whose kernel was started otherwise (another provisioner, say) is
    ended; the connection file at its path is that kernel's by then, and stays."""
    path = tmp_path / "kernel-k1.json"
    launch = Launch("k1", ("python",), {}, str(tmp_path), str(path), (), tag=TAG)
    spare = Spare(launch, key="secret", files=())
    spare.file_removed = True  # as start does once the spare bound its ports
    path.write_text("{}")  # the kernel started under the spare's id wrote it
    spare.end()
    assert path.exists() and spare.ended


async def test_a_spare_ended_before_it_starts_forks_nothing(tmp_path):
    class Template:
        forks = 0

        async def fork(self, *args):
            self.forks += 1
            raise AssertionError("no fork for an ended spare")

    path = tmp_path / "kernel-k1.json"
    launch = Launch("k1", ("python",), {}, str(tmp_path), str(path), (), tag=TAG)
    spare = Spare(launch, key="secret", files=())
    spare.end()
    template = Template()
    await spare.start(template, ["ipykernel_launcher"], lambda: None, 5.0, 5.0)
    assert template.forks == 0 and not path.exists()


def test_spare_max_idle_must_be_positive():
    from traitlets import TraitError

    from nbexec_hub.extension.app import ExecutionExtensionApp

    with pytest.raises(TraitError):
        ExecutionExtensionApp(spare_kernel_max_idle=0)
    assert ExecutionExtensionApp(spare_kernel_max_idle=0.5).spare_kernel_max_idle == 0.5


async def test_a_fork_answered_after_its_requester_gave_up_is_killed(tmp_path):
    """The template forks anyway; the kernel nobody waits for any more must not live on."""
    import json
    import os
    import signal

    from nbexec_hub.extension.forking import KernelTemplate

    template = KernelTemplate(logging.getLogger("test"))
    await template.start(timeout=60)
    try:
        connection = tmp_path / "kernel-orphan.json"
        connection.write_text(json.dumps({
            "ip": "127.0.0.1", "transport": "tcp", "key": "k", "signature_scheme": "hmac-sha256",
            "shell_port": 0, "iopub_port": 0, "stdin_port": 0, "hb_port": 0, "control_port": 0,
        }))
        request = asyncio.ensure_future(template.fork(
            ["ipykernel_launcher", "-f", str(connection)], dict(os.environ), str(tmp_path), 30
        ))
        await asyncio.sleep(0)  # the request is on its way
        request.cancel()  # what a stopping server, or an ended spare, does to it
        with pytest.raises(asyncio.CancelledError):
            await request
        for _ in range(500):  # the late answer's kernel is killed; the template reports it
            if -signal.SIGKILL in template._exited.values():
                break
            await asyncio.sleep(0.02)
        assert -signal.SIGKILL in template._exited.values()
    finally:
        await template.close()
