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

A kernel id announced with a claimed spare (forking.py) gets that spare as its process
when the launch the manager prepared is the spare's, exactly; the manager's session key
is the spare's from the start, so its connection file and messages are the spare's.
Otherwise the spare is ended and the kernel forked afresh. After every forked launch the
forker is told, and forks the next spare.
"""

from __future__ import annotations

import os
from collections.abc import Hashable
from typing import Any

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning import LocalProvisioner

from .forking import ForkUnavailable, KernelForker
from .kernel_process import PORT_NAMES, ForkedProcess, bound_ports, write_connection_file
from .spare import Launch, Spare

PROVISIONER_NAME = "nbexec-forking-provisioner"
#: connection settings a spare must share with the launch it serves (key and ports aside)
SETTINGS = ("ip", "transport", "signature_scheme", "kernel_name")

#: kernels to fork, by kernel id, with the forker to ask and the launch's tag
_expected: dict[str, tuple[KernelForker, Hashable]] = {}


def encrypted(info: dict[str, Any]) -> bool:
    """Whether connection info carries CurveZMQ keys (no spare serves such a kernel)."""
    return any(name.startswith("curve_") for name in info)


def expect_fork(kernel_id: str, forker: KernelForker, tag: Hashable = None) -> None:
    """Fork the kernel that will be started with this id (if it can be forked); ``tag``
    is what a spare of its launch is found by (`KernelForker.claim_spare`)."""
    _expected[kernel_id] = (forker, tag)


def forget_fork(kernel_id: str) -> None:
    """The start of that kernel is over, forked or not (a spare claimed for it and not
    used is the forker's to end: `KernelForker.release_claim`)."""
    _expected.pop(kernel_id, None)


class ForkingProvisioner(LocalProvisioner):  # type: ignore[misc]
    """LocalProvisioner that forks the kernels announced with ``expect_fork``."""

    forker: KernelForker | None = None
    forked = False
    #: whether the kernel is a spare forked before it was asked for; if so, the client
    #: connected to it while it waited (for the run)
    from_spare = False
    spare_client: Any = None
    #: why this kernel was spawned although it was to be forked
    fallback_reason: str | None = None
    _tag: Hashable = None
    _spare: Spare | None = None

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        """As LocalProvisioner; a kernel to fork gets no ports from the port cache, and one
        with a claimed spare the spare's session key."""
        self.forker, self._tag = _expected.pop(self.kernel_id, (None, None))
        self.forked = self.from_spare = False
        km = self.parent
        if self.forker is not None and km is not None and km.transport == "tcp":
            km.cache_ports = False  # the kernel binds its own
            self._spare = self.forker.take_spare(self.kernel_id)
            if self._spare is not None:
                km.session.key = self._spare.key.encode()
        elif self.forker is not None:
            self.forker = None  # a spare claimed for it is ended by release_claim
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
                write_connection_file(self.parent.connection_file, self.connection_info)
        return await super().launch_kernel(cmd, **kwargs)

    def _launch(self, cmd: list[str], env: dict[str, str], cwd: str) -> Launch:
        km = self.parent
        info = self.connection_info
        return Launch(
            kernel_id=self.kernel_id,
            cmd=tuple(cmd),
            env=env,
            cwd=cwd,
            connection_file=km.connection_file,
            settings=tuple((name, info[name]) for name in SETTINGS if name in info),
            tag=self._tag,
        )

    def _spare_process(self, forker: KernelForker, launch: Launch) -> Spare | None:
        """The claimed spare, when it is a fresh kernel of this launch; else it is ended."""
        spare, self._spare = self._spare, None
        if spare is None:
            return None
        if encrypted(self.connection_info):
            reason: str | None = "the kernel's transport is encrypted"
        else:
            reason = spare.unfit(launch)
        if reason is None:
            return spare
        self.log.debug("nbexec: spare kernel not used: %s", reason)
        forker.release_claim(self.kernel_id)
        return None

    async def _fork(
        self, forker: KernelForker, cmd: list[str], kwargs: dict[str, Any]
    ) -> KernelConnectionInfo:
        km = self.parent
        info = dict(self.connection_info)
        env = dict(kwargs.get("env") or os.environ)
        cwd = str(kwargs.get("cwd") or os.getcwd())
        launch = self._launch(cmd, env, cwd)
        spare = self._spare_process(forker, launch)
        if spare is not None:
            process, ports, self.spare_client = spare.hand_over()
            forker.spares_used += 1
            self.from_spare = True
        else:
            write_connection_file(km.connection_file, {**info, **dict.fromkeys(PORT_NAMES, 0)})
            process = await forker.fork(cmd, env, cwd)
        self.process = process
        self.pid = self.pgid = process.pid  # the child starts a session of its own
        self.cwd = cwd
        self.forked = True
        try:
            if spare is None:
                ports = await bound_ports(process, km.connection_file, timeout=60.0)
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
        if spare is not None:  # the manager wrote the file with no ports meanwhile
            write_connection_file(km.connection_file, info)
        if not encrypted(info):  # a spare's keys would be the manager's to make
            forker.launched(launch)
        return info

    async def cleanup(self, restart: bool = False) -> None:
        """Release the process handle (a forked kernel took nothing from the port cache)."""
        if isinstance(self.process, ForkedProcess):
            self.process.close()
        client, self.spare_client = self.spare_client, None
        if client is not None:  # a spare's client no run took
            client.stop_channels()
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
