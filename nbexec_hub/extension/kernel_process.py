"""A forked kernel's process as the server sees it, and its connection file.

A forked kernel is the template's child, not the server's (forking.py): `ForkedProcess`
shows it as ``subprocess.Popen`` would, through a pidfd. The kernel binds its own ports and
writes them into its connection file, which `bound_ports` waits for;
`write_connection_file` writes one as jupyter_client does.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import select
import signal
import subprocess
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .forking import KernelTemplate

#: the kernel's ports in its connection file (0 until the kernel binds them)
PORT_NAMES = ("shell_port", "iopub_port", "stdin_port", "hb_port", "control_port")


def write_connection_file(path: str, info: dict[str, Any]) -> None:
    """Write a connection file as jupyter_client does (owner-only: it holds the key)."""
    data = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in info.items()}
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.replace(tmp, path)


async def bound_ports(
    process: ForkedProcess, connection_file: str, timeout: float
) -> dict[str, int]:
    """The ports a forked kernel bound, once it has written them into its connection file."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the forked kernel exited with {process.returncode}")
        try:
            with open(connection_file) as f:
                written = json.load(f)
            ports = {name: int(written.get(name) or 0) for name in PORT_NAMES}
        except (OSError, ValueError, TypeError, AttributeError):
            ports = {}  # being written
        if ports and all(ports.values()):
            return ports
        await asyncio.sleep(0.005)
    raise RuntimeError(f"the forked kernel bound no ports within {timeout:g} s")


class ForkedProcess:
    """A forked kernel as ``subprocess.Popen`` shows a process, for the provisioner.

    The kernel is the template's child, not the server's: its end is seen through a
    pidfd (which never names another process, even once the pid is reused) and its exit
    status comes from the template, which reaps it.
    """

    stdin = stdout = stderr = None

    def __init__(self, pid: int, template: KernelTemplate) -> None:
        self.pid = pid
        self.template = template
        self.returncode: int | None = None
        try:
            self.pidfd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:
            self.pidfd = None
            self.returncode = template.exit_status(pid, -signal.SIGKILL)

    def poll(self) -> int | None:
        """None while the kernel runs, else its exit code (-signal when killed)."""
        if self.returncode is None and self.pidfd is not None:
            readable, _, _ = select.select([self.pidfd], [], [], 0)
            if readable:
                self.returncode = self.template.exit_status(self.pid, -signal.SIGKILL)
                self.close()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """The exit code; only called once ``poll`` said the kernel ended."""
        if self.pidfd is not None:
            select.select([self.pidfd], [], [], timeout)
        code = self.poll()
        if code is None:
            raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
        return code

    def send_signal(self, signum: int) -> None:
        if self.pidfd is None or self.poll() is not None:
            # as the kernel's own pid would: callers tolerate ESRCH only
            raise ProcessLookupError(errno.ESRCH, f"kernel process {self.pid} has ended")
        signal.pidfd_send_signal(self.pidfd, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def close(self) -> None:
        pidfd, self.pidfd = self.pidfd, None
        if pidfd is not None:
            os.close(pidfd)
