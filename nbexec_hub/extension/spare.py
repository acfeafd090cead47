"""Spare kernels: a forked launch repeated ahead of time, for the next run of its notebook.

After each forked launch the forker (forking.py) forks a `Spare`: the same `Launch` again
(command, environment, working directory, connection settings) under a new kernel id and
key, initialized, with a client connected. The next execution of the same notebook with
the same kernel takes it when nothing it was started from has changed: the launch is
compared whole, and what IPython reads as it starts besides its launch (configuration
files, the profile's start-up scripts, ``PYTHONSTARTUP``) is compared by its status
(`startup_files`). Anything else gets a freshly forked kernel.

A spare is a fork of the template like any other kernel, never of a kernel that ran
anything, so it is in the state of a fresh one. While it waits it is nobody's kernel: in no
kernel table (not listed, no activity), and its connection file is removed once it has
bound its ports, so that nothing (``jupyter console --existing``, say) can find it and
run code in it; the provisioner writes the file again when a kernel takes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .client_handshake import connect_client
from .kernel_process import PORT_NAMES, ForkedProcess, bound_ports, write_connection_file

if TYPE_CHECKING:
    from .forking import KernelTemplate

#: IPython's configuration files, looked for in each of its configuration folders
IPYTHON_CONFIG_FILES = (
    "ipython_config.py", "ipython_config.json",
    "ipython_kernel_config.py", "ipython_kernel_config.json",
)


@dataclass(frozen=True)
class Launch:
    """A forked kernel's launch as the provisioner made it: what a spare repeats."""

    kernel_id: str
    cmd: tuple[str, ...]
    env: dict[str, str] = field(hash=False)
    cwd: str
    connection_file: str
    #: the connection settings besides key and ports (ip, transport, signature scheme)
    settings: tuple[tuple[str, Any], ...]
    #: what the caller finds a spare by (ServerKernels: kernel name and notebook path)
    tag: Hashable = None

    def renamed(self, kernel_id: str) -> Launch:
        """The same launch for another kernel id (its connection file is named after it)."""

        def sub(text: str) -> str:
            return text.replace(self.kernel_id, kernel_id)

        return replace(
            self,
            kernel_id=kernel_id,
            cmd=tuple(sub(arg) for arg in self.cmd),
            env={name: sub(value) for name, value in self.env.items()},
            connection_file=sub(self.connection_file),
        )

    def differences(self, other: Launch) -> list[str]:
        """What differs between two launches (nothing: a kernel of one is one of the other)."""
        names = ("kernel_id", "cmd", "env", "cwd", "connection_file", "settings")
        return [name for name in names if getattr(self, name) != getattr(other, name)]


def _status(path: str) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _options(cmd: tuple[str, ...]) -> dict[str, str]:
    """The kernel command's ``--name=value`` and ``--name value`` options."""
    options: dict[str, str] = {}
    for i, arg in enumerate(cmd):
        if not arg.startswith("--"):
            continue
        name, sep, value = arg[2:].partition("=")
        if not sep and i + 1 < len(cmd) and not cmd[i + 1].startswith("-"):
            value = cmd[i + 1]
        options[name] = value
    return options


def _profile_dir(launch: Launch, options: dict[str, str]) -> str:
    """The IPython profile folder a kernel of ``launch`` reads."""
    def in_cwd(path: str) -> str:
        return os.path.join(launch.cwd, os.path.expanduser(path))

    if options.get("profile-dir"):
        return in_cwd(options["profile-dir"])
    env = launch.env
    ipython_dir = (
        options.get("ipython-dir")
        or env.get("IPYTHONDIR")
        or os.path.join(env.get("HOME") or "~", ".ipython")
    )
    return os.path.join(in_cwd(ipython_dir), f"profile_{options.get('profile') or 'default'}")


def startup_files(launch: Launch) -> tuple[Any, ...]:
    """The status of what a kernel of ``launch`` reads as it starts, besides its launch:
    IPython's configuration files (in the working directory, the profile, the
    environment's and the system's folders), the profile's start-up scripts and the
    ``PYTHONSTARTUP`` file, and a ``--config`` file. A spare whose files changed since it
    started read old ones."""
    options = _options(launch.cmd)
    profile = _profile_dir(launch, options)
    folders = (launch.cwd, profile, os.path.join(sys.prefix, "etc", "ipython"),
               "/usr/local/etc/ipython", "/etc/ipython")
    seen: list[Any] = [
        _status(os.path.join(folder, name)) for folder in folders for name in IPYTHON_CONFIG_FILES
    ]
    startup = os.path.join(profile, "startup")
    seen.append(_status(startup))
    try:
        names = sorted(os.listdir(startup))
    except OSError:
        names = []
    seen.extend((name, _status(os.path.join(startup, name))) for name in names)
    for extra in (launch.env.get("PYTHONSTARTUP"), options.get("config")):
        seen.append(_status(os.path.join(launch.cwd, os.path.expanduser(extra))) if extra else None)
    return tuple(seen)


@dataclass
class Spare:
    """A kernel forked for a launch to come: started by `start`, taken by `hand_over`,
    ended by `end` (at once, or by cancelling `start`, which releases what it has)."""

    launch: Launch
    key: str
    files: tuple[Any, ...]
    template: KernelTemplate | None = None
    process: ForkedProcess | None = None
    ports: dict[str, int] | None = None
    #: a client connected to it, kernel_info answered on both channels
    client: Any = None
    connected: bool = False
    task: asyncio.Task[None] | None = None
    #: the timer that ends it unused (cancelled when it is taken or ended)
    expiry: asyncio.TimerHandle | None = None
    #: handed over to the kernel it became (``used``) or ended unused (``ended``)
    used: bool = False
    ended: bool = False
    #: its connection file was removed once it bound its ports (the path may be another
    #: kernel's file by the time the spare is released: the kernel started under its id)
    file_removed: bool = False

    @property
    def ready(self) -> bool:
        """Whether it started (its client connected) and still runs."""
        return self.connected and not self.ended and self.alive()

    def alive(self) -> bool:
        """Whether its process runs."""
        return self.process is not None and self.process.poll() is None

    async def start(
        self,
        template: KernelTemplate,
        argv: list[str],
        make_client: Callable[[], Any],
        answer_timeout: float,
        timeout: float,
    ) -> None:
        """Fork it (``python -m <argv>``), wait for its ports, hide its connection file,
        connect a client. Raises what went wrong; whatever it failed or was ended with is
        released."""
        launch = self.launch
        if self.ended:
            return
        info = {**dict(launch.settings), "key": self.key, **dict.fromkeys(PORT_NAMES, 0)}
        try:
            write_connection_file(launch.connection_file, info)
            self.process = await template.fork(argv, launch.env, launch.cwd, answer_timeout)
            if self.ended:
                return
            self.ports = await bound_ports(self.process, launch.connection_file, timeout)
            # it has read the file and written its ports: nothing finds it from now on
            os.remove(launch.connection_file)
            self.file_removed = True
            if self.ended:
                return
            self.client = make_client()
            self.client.load_connection_info({**dict(launch.settings), **self.ports,
                                              "key": self.key})
            await connect_client(self.client, timeout, self.alive)
            self.connected = True
        finally:
            if self.ended or not self.connected:
                self._release()

    def unfit(self, launch: Launch) -> str | None:
        """Why this spare is not a fresh kernel of ``launch`` (None: it is)."""
        if not self.ready:
            return "it ended"
        differences = self.launch.differences(launch)
        if differences:
            return f"the launch differs ({', '.join(differences)})"
        assert self.process is not None
        try:  # the folder it runs in is still the notebook's (not one removed since)
            same_folder = os.path.samefile(f"/proc/{self.process.pid}/cwd", launch.cwd)
        except OSError:
            same_folder = False
        if not same_folder:
            return "its working directory is not the notebook's folder any more"
        if startup_files(launch) != self.files:
            return "IPython's configuration or start-up files changed"
        return None

    def hand_over(self) -> tuple[ForkedProcess, dict[str, int], Any]:
        """Its process, ports and connected client, for the kernel it becomes (it is no
        spare after that)."""
        assert self.process is not None and self.ports is not None
        process, self.process = self.process, None
        client, self.client = self.client, None
        self.used = True
        self._cancel_expiry()
        return process, self.ports, client

    def _cancel_expiry(self) -> None:
        expiry, self.expiry = self.expiry, None
        if expiry is not None:
            expiry.cancel()

    def end(self) -> None:
        """End it: kill its process, stop its client, remove its connection file. While
        `start` is under way it is cancelled, and releases what it has as it stops (a fork
        it was waiting for is killed by the template's side, which nobody waits for)."""
        if self.used or self.ended:
            return
        self.ended = True
        task = self.task
        if task is not None and not task.done():
            if task is not asyncio.current_task():
                task.cancel()
            return
        self._release()

    def _release(self) -> None:
        if self.used:
            return
        self._cancel_expiry()
        client, self.client = self.client, None
        if client is not None:
            client.stop_channels()
        process, self.process = self.process, None
        if process is not None:
            with contextlib.suppress(OSError):
                process.kill()
            process.close()
        if not self.file_removed:
            self.file_removed = True
            with contextlib.suppress(OSError):
                os.remove(self.launch.connection_file)
