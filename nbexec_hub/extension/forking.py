"""The server's side of kernel forking: the template process, its health, fork requests.

``KernelTemplate`` starts ``fork_template.py`` with the server's Python and talks to it
over a socket pair (the protocol is in that module's docstring). ``KernelForker`` is what
the rest of the extension uses: it says whether a kernel launch can be forked, keeps one
healthy template (replacing one that died or stopped answering), and is handed to the
provisioner per kernel id. Every reason not to fork is logged once; the kernel is then
spawned as usual.

After each forked launch the forker forks one spare of it (spare.py) and hands it to the
next run of the same notebook that claims it: `claim_spare`, `take_spare` and
`release_claim` around the kernel's start, `launched` after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Hashable
from typing import Any

from jupyter_client.asynchronous import AsyncKernelClient

from .kernel_process import ForkedProcess
from .spare import Launch, Spare, startup_files

TEMPLATE_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fork_template.py")

#: exit statuses of ended kernels kept until asked for (a killed spare's never is)
MAX_EXIT_STATUSES = 1024

#: environment variables whose effect is fixed when an interpreter starts: a kernel
#: launched with values other than the template's is spawned instead
STARTUP_VARIABLES = ("LD_PRELOAD", "LD_LIBRARY_PATH")


class ForkUnavailable(Exception):
    """This launch cannot be forked (the kernel is spawned instead); the text says why."""


def startup_environment(env: dict[str, str]) -> dict[str, str]:
    """The variables of ``env`` that act only when an interpreter starts."""
    return {k: v for k, v in env.items() if k.startswith("PYTHON") or k in STARTUP_VARIABLES}


def forking_supported() -> str | None:
    """Why this system cannot fork kernels (None: it can)."""
    if not sys.platform.startswith("linux"):
        return f"kernels are forked on Linux only, not {sys.platform}"
    if not hasattr(os, "pidfd_open") or not hasattr(signal, "pidfd_send_signal"):
        return "this Python has no pidfd_open"
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError as exc:
        return f"this Linux has no pidfd_open ({exc})"
    return None


def kernel_arguments(cmd: list[str]) -> list[str] | None:
    """The arguments after ``-m`` when ``cmd`` runs this Python's ipykernel, else None."""
    if len(cmd) < 3 or cmd[1] != "-m" or cmd[2] not in ("ipykernel_launcher", "ipykernel"):
        return None
    try:
        same = os.path.samefile(cmd[0], sys.executable)
    except OSError:
        same = False
    return list(cmd[2:]) if same else None


class KernelTemplate:
    """One template process and the conversation with it."""

    def __init__(self, log: logging.Logger, python: str = sys.executable) -> None:
        self.log = log
        self.python = python
        self.process: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._read_task: asyncio.Task[None] | None = None
        self._waiting: dict[str, asyncio.Future[Any]] = {}
        self._ids = itertools.count()
        #: exit codes of ended children, by pid (kept until asked for)
        self._exited: dict[int, int] = {}
        #: the environment it started with (its interpreter's start-up variables)
        self.environ: dict[str, str] = {}
        self.closed = False

    async def start(self, timeout: float) -> None:
        """Start the template and wait until it has imported ipykernel."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.environ = dict(os.environ)
        try:
            # a session of its own: a Ctrl-C meant for the server does not reach it or
            # its kernels (which start sessions of their own anyway)
            self.process = subprocess.Popen(
                [self.python, TEMPLATE_SCRIPT, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=self.environ,
            )
        finally:
            theirs.close()
        self.pid = self.process.pid
        self._reader, self._writer = await asyncio.open_unix_connection(sock=ours)
        try:
            first = await asyncio.wait_for(self._reader.readline(), timeout)
            message = json.loads(first) if first else {}
        except Exception as exc:
            await self.close()
            raise ForkUnavailable(f"the kernel template did not start: {exc}") from None
        if "ready" not in message:
            await self.close()
            raise ForkUnavailable(f"the kernel template failed: {message.get('failed', 'exited')}")
        self._read_task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self._reader is not None
        try:
            while line := await self._reader.readline():
                message = json.loads(line)
                if "exited" in message:
                    self._exited[message["exited"]] = message["status"]
                    if len(self._exited) > MAX_EXIT_STATUSES:  # ones nobody asked for
                        del self._exited[next(iter(self._exited))]
                    continue
                key = message.get("forked", message.get("pong"))
                future = self._waiting.pop(str(key), None)
                if future is not None and not future.done():
                    future.set_result(message)
                elif "forked" in message:  # its requester gave up waiting: nobody's kernel
                    self._kill_orphan(int(message["pid"]))
        except (ConnectionError, ValueError) as exc:
            self.log.warning("nbexec: lost the kernel template: %s", exc)
        finally:
            self.closed = True
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(ForkUnavailable("the kernel template went away"))
            self._waiting.clear()

    @staticmethod
    def _kill_orphan(pid: int) -> None:
        """Kill a forked kernel nobody took, through a pidfd (a kernel that died at once
        and was reaped, its pid reused, within this very turn is the one case it misses)."""
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return  # already gone
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except OSError:
            pass
        finally:
            os.close(pidfd)

    def alive(self) -> bool:
        """Whether the process runs and the conversation is open."""
        return (
            not self.closed and self.process is not None and self.process.poll() is None
        )

    async def _ask(self, message: dict[str, Any], key: str, timeout: float) -> dict[str, Any]:
        if not self.alive() or self._writer is None:
            raise ForkUnavailable("the kernel template is not running")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[key] = future
        try:
            self._writer.write(json.dumps(message).encode() + b"\n")
            await self._writer.drain()
            return await asyncio.wait_for(future, timeout)
        except BaseException as exc:
            # an answer that came as this gave up (a timeout or a cancellation in the same
            # turn drops it): a kernel forked for it would be nobody's
            if future.done() and not future.cancelled() and future.exception() is None:
                answer = future.result()
                if "forked" in answer:
                    self._kill_orphan(int(answer["pid"]))
            if isinstance(exc, asyncio.TimeoutError):
                raise ForkUnavailable(
                    f"the kernel template did not answer in {timeout:g} s"
                ) from None
            if isinstance(exc, ConnectionError):
                raise ForkUnavailable(f"the kernel template went away: {exc}") from None
            raise
        finally:
            self._waiting.pop(key, None)

    async def ping(self, timeout: float) -> None:
        """Raise ForkUnavailable unless the template answers within ``timeout``."""
        key = str(next(self._ids))
        await self._ask({"ping": key}, key, timeout)

    async def fork(
        self, argv: list[str], env: dict[str, str], cwd: str, timeout: float
    ) -> ForkedProcess:
        """Fork a kernel running ``python -m <argv>`` in ``cwd`` with exactly ``env``."""
        key = str(next(self._ids))
        answer = await self._ask(
            {"fork": key, "argv": argv, "env": env, "cwd": cwd}, key, timeout
        )
        return ForkedProcess(int(answer["pid"]), self)

    def exit_status(self, pid: int, unknown: int) -> int:
        """A child's exit code as the template reported it (``unknown`` when not yet)."""
        return self._exited.pop(pid, unknown)

    async def close(self, timeout: float = 5.0) -> None:
        """End the template (its socket closing is its signal); kill it if it lingers."""
        self.closed = True
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        if self._read_task is not None:
            self._read_task.cancel()
            with contextlib.suppress(BaseException):
                await self._read_task
        process = self.process
        if process is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while process.poll() is None and loop.time() < deadline:
            await asyncio.sleep(0.02)
        if process.poll() is None:
            process.kill()
            await asyncio.to_thread(process.wait)


class KernelForker:
    """Forks kernels for executions from a template it keeps healthy."""

    def __init__(
        self,
        log: logging.Logger,
        *,
        start_timeout: float = 60.0,
        answer_timeout: float = 5.0,
        spare: bool = True,
        spare_max_idle: float = 600.0,
    ) -> None:
        self.log = log
        #: whether a spare kernel is forked after each launch, and how long it may wait
        self.spare_enabled = spare
        self.spare_max_idle = spare_max_idle
        #: the waiting spare, and those claimed for a kernel id whose start is under way
        self.spare: Spare | None = None
        #: seconds a run waits for a spare still starting before it forks its own
        self.spare_claim_wait = 1.0
        #: makes the client a spare waits with (ServerKernels: one configured as the
        #: server's kernel clients are)
        self.client_factory: Callable[[], Any] = AsyncKernelClient
        self._claimed: dict[str, Spare] = {}
        #: how many spares were started, and how many executions got one
        self.spares_started = 0
        self.spares_used = 0
        self.start_timeout = start_timeout
        self.answer_timeout = answer_timeout
        self.template: KernelTemplate | None = None
        self._starting: asyncio.Task[KernelTemplate] | None = None
        self._said: set[str] = set()
        self.closed = False
        self.unsupported = forking_supported()
        #: seconds before a template that failed to start is tried again
        self.retry_after = 30.0
        self._failed_at = 0.0
        self._had_template = False
        #: how many kernels were forked
        self.forks = 0

    def say_once(self, reason: str) -> None:
        """Log why a kernel was spawned instead of forked, once per reason."""
        if reason not in self._said:
            self._said.add(reason)
            self.log.warning("nbexec: kernels are spawned instead of forked: %s", reason)

    def _template_task(self) -> asyncio.Task[KernelTemplate]:
        """The start of a template: the one under way, else a new one (not within
        ``retry_after`` seconds of a failed one)."""
        task = self._starting
        if task is not None and task.done() and task.exception() is not None:
            if time.monotonic() - self._failed_at < self.retry_after:
                return task
            task = None
        if task is None:
            task = self._starting = asyncio.ensure_future(self._start_template())
        return task

    async def _start_template(self) -> KernelTemplate:
        template = KernelTemplate(self.log)
        try:
            await template.start(self.start_timeout)
        except BaseException:
            self._failed_at = time.monotonic()
            raise
        self.log.info("nbexec: kernel template started (pid %s)", template.pid)
        if self.closed:
            await template.close()
            raise ForkUnavailable("the server is stopping")
        self.template = template
        self._had_template = True
        return template

    def start_template_soon(self) -> None:
        """Start the template now, in the background (a server that runs nothing yet), so
        that the first run gets a forked kernel too; a failure is logged once."""
        if self.unsupported or self.closed or self.template is not None:
            return

        def said(task: asyncio.Task[KernelTemplate]) -> None:
            if not task.cancelled() and task.exception() is not None:
                self.say_once(f"the kernel template did not start: {task.exception()}")

        self._template_task().add_done_callback(said)

    async def ready_template(self) -> KernelTemplate:
        """The running template. Launches wait for the first one (it costs about what a
        spawn does, and a server that runs nothing never starts one); a dead or sick one
        is replaced in the background while launches fall back."""
        if self.unsupported:
            raise ForkUnavailable(self.unsupported)
        if self.closed:
            raise ForkUnavailable("the server is stopping")
        template = self.template
        if template is not None and not template.alive():
            self.log.warning("nbexec: the kernel template died; starting a new one")
            self._drop(template)
        if self.template is not None:
            return self.template
        task = self._template_task()
        if not self._had_template and not task.done():
            return await asyncio.shield(task)
        if task.done() and task.exception() is not None:
            raise ForkUnavailable(str(task.exception()))
        if task.done():
            return task.result()
        raise ForkUnavailable("the kernel template is starting")

    def _drop(self, template: KernelTemplate) -> None:
        """Forget a template and end it; the next launch starts a new one."""
        if self.template is template:
            self.template = None
            self._starting = None
        task = asyncio.ensure_future(template.close(timeout=0))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def fork(self, cmd: list[str], env: dict[str, str], cwd: str) -> ForkedProcess:
        """Fork the kernel ``cmd`` would spawn, or raise ForkUnavailable saying why not."""
        argv = kernel_arguments(cmd)
        if argv is None:
            raise ForkUnavailable(f"the kernel command is not this Python's ipykernel: {cmd[:3]}")
        template = await self.ready_template()
        if startup_environment(env) != startup_environment(template.environ):
            raise ForkUnavailable(
                "the kernel's environment sets interpreter start-up variables "
                "(PYTHON*, LD_*) other than the server's"
            )
        try:
            process = await template.fork(argv, env, cwd, self.answer_timeout)
        except ForkUnavailable:
            self.log.warning("nbexec: the kernel template does not answer; starting a new one")
            self._drop(template)
            self._template_task()
            raise
        self.forks += 1
        return process

    # -- spares ------------------------------------------------------------------------------

    async def claim_spare(self, tag: Hashable) -> str | None:
        """The kernel id of a ready spare for ``tag``, which the caller then starts with that
        id and releases with `release_claim`; None when there is none. A spare still
        starting is waited for, up to `spare_claim_wait` (it started before this request,
        so it is ready before a new fork would be); one that ended is dropped here."""
        spare = self.spare
        if spare is None or spare.launch.tag != tag:
            return None
        if not self._of_live_template(spare):
            return None
        if spare.task is not None and not spare.task.done():
            # asyncio.wait: the spare's own failure or end is not this caller's
            await asyncio.wait({spare.task}, timeout=self.spare_claim_wait)
            if self.spare is not spare:  # another run claimed it meanwhile, or it was dropped
                return None
            if not self._of_live_template(spare):  # the template was replaced meanwhile
                return None
        if not spare.ready:
            if spare.task is None or spare.task.done():  # it failed, or died waiting
                self._drop_spare(spare)
            return None
        self.spare = None
        self._claimed[spare.launch.kernel_id] = spare
        return spare.launch.kernel_id

    def _of_live_template(self, spare: Spare) -> bool:
        """Whether the spare's template is the running one; if not, the spare is dropped
        (it ends with the template that forked it)."""
        template = self.template
        if template is not None and spare.template is template and template.alive():
            return True
        self._drop_spare(spare)
        return False

    def take_spare(self, kernel_id: str) -> Spare | None:
        """The spare claimed for this kernel id (the provisioner's, at its launch)."""
        return self._claimed.get(kernel_id)

    def release_claim(self, kernel_id: str) -> None:
        """The start of that kernel is over: a claimed spare it did not use is ended."""
        spare = self._claimed.pop(kernel_id, None)
        if spare is not None:
            spare.end()

    def launched(self, launch: Launch) -> None:
        """A forked kernel of ``launch`` started: fork a spare of it, unless one waits."""
        if not self.spare_enabled or self.closed or self.template is None:
            return
        current = self.spare
        if current is not None:
            if (
                current.launch.renamed(launch.kernel_id) == launch
                and not current.ended
                and current.template is self.template
            ):
                return  # one for this very launch waits (or is starting)
            self._drop_spare(current)
        again = launch.renamed(str(uuid.uuid4()))
        argv = kernel_arguments(list(again.cmd))
        if argv is None:
            return
        spare = Spare(again, key=str(uuid.uuid4()), files=startup_files(launch),
                      template=self.template)
        self.spare = spare
        spare.task = asyncio.ensure_future(self._start_spare(spare, self.template, argv))

    async def _start_spare(self, spare: Spare, template: KernelTemplate, argv: list[str]) -> None:
        try:
            await spare.start(template, argv, self.client_factory, self.answer_timeout, 60.0)
        except asyncio.CancelledError:
            self._drop_spare(spare)
            raise
        except Exception as exc:
            # logged once per reason (a spare is tried after every launch); one ended on
            # purpose fails as it ends
            if not spare.ended and str(exc) not in self._said:
                self._said.add(str(exc))
                self.log.info("nbexec: a spare kernel did not start: %s", exc)
            self._drop_spare(spare)
            return
        if spare.ended:
            return
        self.spares_started += 1
        spare.expiry = asyncio.get_running_loop().call_later(
            self.spare_max_idle, self._expire, spare
        )

    def _expire(self, spare: Spare) -> None:
        if self.spare is spare:
            self.log.debug("nbexec: spare kernel unused for %g s, ended", self.spare_max_idle)
            self._drop_spare(spare)

    def _drop_spare(self, spare: Spare) -> None:
        if self.spare is spare:
            self.spare = None
        spare.end()

    async def close(self) -> None:
        """Stop the template (forked kernels end with it, as spawned ones with the server)."""
        self.closed = True
        spare = self.spare
        if spare is not None:
            self._drop_spare(spare)
            if spare.task is not None and not spare.task.done():  # it ends itself
                await asyncio.wait({spare.task}, timeout=self.answer_timeout)
        for kernel_id in list(self._claimed):
            self.release_claim(kernel_id)
        starting, self._starting = self._starting, None
        if starting is not None and not starting.done():
            starting.cancel()
            with contextlib.suppress(BaseException):
                await starting
        template, self.template = self.template, None
        if template is not None:
            await template.close()
