"""``nbexec-forking-provisioner``: a jupyter_client kernel provisioner that forks kernels.

Registered in the ``jupyter_client.kernel_provisioners`` entry point group. The extension
makes it the default provisioner of the server's kernels (unless a deployment chose
another default); for every kernel that is not an execution's, and for any launch that
cannot be forked, it is jupyter_client's ``LocalProvisioner`` unchanged. An execution's
kernel is announced by id (``expect_fork``) before the server's kernel manager starts it:
its launch is then a fork of the kernel template, with the command, environment and
working directory the manager prepared, and its ports bound by the kernel itself (the
connection file carries port 0 until the kernel writes the ports it bound), so no port
can be taken between choosing and binding it. Poll, wait, signals, kill, terminate and
clean-up act on the forked process (and its session's group, as for spawned kernels).
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning import LocalProvisioner

from .forking import ForkedProcess, ForkUnavailable, KernelForker

PROVISIONER_NAME = "nbexec-forking-provisioner"
PORT_NAMES = ("shell_port", "iopub_port", "stdin_port", "hb_port", "control_port")

#: kernels to fork, by kernel id, with the forker to ask
_expected: dict[str, KernelForker] = {}


def expect_fork(kernel_id: str, forker: KernelForker) -> None:
    """Fork the kernel that will be started with this id (if it can be forked)."""
    _expected[kernel_id] = forker


def forget_fork(kernel_id: str) -> None:
    """The start of that kernel is over, forked or not."""
    _expected.pop(kernel_id, None)


class ForkingProvisioner(LocalProvisioner):  # type: ignore[misc]
    """LocalProvisioner that forks the kernels announced with ``expect_fork``."""

    forker: KernelForker | None = None
    forked = False
    #: why this kernel was spawned although it was to be forked
    fallback_reason: str | None = None

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        """As LocalProvisioner; a kernel to fork gets no ports from the port cache."""
        self.forker = _expected.pop(self.kernel_id, None)
        self.forked = False
        km = self.parent
        if self.forker is not None and km is not None and km.transport == "tcp":
            km.cache_ports = False  # the kernel binds its own
        elif self.forker is not None:
            self.forker = None
        return await super().pre_launch(**kwargs)

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        """Fork the kernel when it was announced and can be; else spawn it."""
        forker, self.forker = self.forker, None
        if forker is not None:
            try:
                return await self._fork(forker, cmd, kwargs)
            except ForkUnavailable as exc:
                self.fallback_reason = str(exc)
                forker.say_once(str(exc))
                self._write_connection_file(self.connection_info)
        return await super().launch_kernel(cmd, **kwargs)

    async def _fork(
        self, forker: KernelForker, cmd: list[str], kwargs: dict[str, Any]
    ) -> KernelConnectionInfo:
        km = self.parent
        info = dict(self.connection_info)
        self._write_connection_file({**info, **dict.fromkeys(PORT_NAMES, 0)})
        env = dict(kwargs.get("env") or os.environ)
        cwd = str(kwargs.get("cwd") or os.getcwd())
        process = await forker.fork(cmd, env, cwd)
        self.process = process
        self.pid = self.pgid = process.pid  # the child starts a session of its own
        self.cwd = cwd
        self.forked = True
        try:
            ports = await self._bound_ports(process, km.connection_file, timeout=60.0)
        except Exception as exc:
            # a child that fails where a spawned kernel might not: spawn this one
            await self.kill()
            process.close()
            self.process, self.forked = None, False
            raise ForkUnavailable(f"a forked kernel failed to start: {exc}") from None
        except BaseException:
            await self.kill()
            raise
        info.update(ports)
        self.connection_info = info
        for name, port in ports.items():  # load_connection_info keeps ports already set
            setattr(km, name, port)
        return info

    def _write_connection_file(self, info: dict[str, Any]) -> None:
        """Write the connection file as jupyter_client does (owner-only), from ``info``."""
        km = self.parent
        data = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in info.items()}
        path = km.connection_file
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
        os.replace(tmp, path)

    @staticmethod
    async def _bound_ports(
        process: ForkedProcess, connection_file: str, timeout: float
    ) -> dict[str, int]:
        """The ports the kernel bound, once it has written them into its connection file."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the forked kernel exited with {process.returncode}")
            try:
                with open(connection_file) as f:
                    written = json.load(f)
                ports = {name: int(written.get(name) or 0) for name in PORT_NAMES}
            except (OSError, ValueError):
                ports = {}  # being written
            if ports and all(ports.values()):
                return ports
            await asyncio.sleep(0.005)
        raise RuntimeError(f"the forked kernel bound no ports within {timeout:g} s")

    async def cleanup(self, restart: bool = False) -> None:
        """Release the process handle (a forked kernel took nothing from the port cache)."""
        if isinstance(self.process, ForkedProcess):
            self.process.close()
        await super().cleanup(restart=restart)

    async def get_provisioner_info(self) -> dict[str, Any]:
        """As LocalProvisioner's, saying whether the kernel was forked."""
        info = await super().get_provisioner_info()
        info["forked"] = self.forked
        return info


def make_default_provisioner() -> str | None:
    """Make this provisioner the default of kernelspecs that name none; why not, if not.

    A deployment that chose another default provisioner keeps it (its kernels are then
    spawned by it), as do kernelspecs that name their own.
    """
    from importlib.metadata import entry_points

    from jupyter_client.provisioning.factory import KernelProvisionerFactory

    names = {ep.name for ep in entry_points(group="jupyter_client.kernel_provisioners")}
    if PROVISIONER_NAME not in names:
        return f"the {PROVISIONER_NAME} entry point is not installed (reinstall nbexec-hub)"
    factory = KernelProvisionerFactory.instance()
    current = factory.default_provisioner_name
    if current not in ("local-provisioner", PROVISIONER_NAME):
        return f"the server's default kernel provisioner is {current!r}"
    factory.default_provisioner_name = PROVISIONER_NAME
    return None
