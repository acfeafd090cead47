"""Where executions get their kernels: the server's own kernel manager.

Kernels started here share the server's port cache, show in JupyterLab's list of
running kernels, and their activity counts for the server's ``last_activity``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_core.paths import jupyter_runtime_dir
from jupyter_core.utils import ensure_async
from traitlets.utils.importstring import import_item

from .. import private_apis
from .forking import KernelForker
from .launch import launch_kwargs
from .provisioner import expect_fork, forget_fork


def give_new_kernels_a_last_activity(multi_kernel_manager: Any) -> None:
    """Let kernels have a ``last_activity`` from the moment they exist (executions start
    kernels often enough to hit jupyter_server's window without one; see private_apis)."""
    cls = multi_kernel_manager.kernel_manager_class
    private_apis.give_new_kernels_a_last_activity(
        import_item(cls) if isinstance(cls, str) else cls
    )


def keep_connection_files_in_runtime_dir(multi_kernel_manager: Any) -> None:
    """Make sure kernels' connection files are written to the Jupyter runtime folder.

    A connection file holds the kernel's HMAC key. jupyter_server gives its kernel manager
    the runtime folder; a manager without one writes ``kernel-<id>.json`` into the
    server's working directory, which under a hub is the user's home.
    """
    if not os.path.isabs(multi_kernel_manager.connection_dir or ""):
        multi_kernel_manager.connection_dir = jupyter_runtime_dir()
    os.makedirs(multi_kernel_manager.connection_dir, mode=0o700, exist_ok=True)


async def shutdown_now(multi_kernel_manager: Any, kernel_id: str, log: logging.Logger) -> None:
    """Shut a kernel down now, whatever state it is in; a failure only forgets it.

    A kernel that cannot be shut down (already gone, say) is still removed from the table
    and its connection file deleted, so nothing of it is left behind.
    """
    mkm = multi_kernel_manager
    if kernel_id not in mkm:
        return
    try:
        await ensure_async(mkm.shutdown_kernel(kernel_id, now=True))
    except Exception as exc:  # a kernel that is already gone must not fail the run
        log.warning("nbexec: shutting kernel %s down failed: %s", kernel_id, exc)
        if kernel_id in mkm:
            km = mkm.remove_kernel(kernel_id)
            with contextlib.suppress(Exception):
                km.cleanup_connection_file()


#: jupyter_server's kernel action events (a restart through ``/api/kernels`` is one)
KERNEL_ACTIONS = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"


class KernelActivity:
    """A running execution's kernel activity, recorded from the messages its run reads.

    jupyter_server watches every kernel's IOPub with a socket of its own and decodes each
    message once more (twice for a status) to stamp ``last_activity`` and
    ``execution_state``: for an execution that is a fifth of the server's CPU per run. The
    run already decodes every message of its cells, so it stamps them itself, exactly as
    that watch would for messages answering a request it tracks, and the watch is stopped
    (`take_over`). The kernel still counts as activity, shows busy in ``GET
    /api/kernels`` while a cell runs, and the idle culler sees it as before.

    A restart of the kernel by someone else (``POST /api/kernels/<id>/restart``) loses the
    run's state, and the run would wait for its cell forever: ``on_restart`` is called
    (from jupyter_server's kernel action events; a jupyter_server without them does not
    tell, and such a run waits for its cell's timeout or a shutdown).
    """

    def __init__(
        self, multi_kernel_manager: Any, kernel_id: str,
        on_restart: Callable[[], None] | None = None,
    ) -> None:
        self.mkm = multi_kernel_manager
        self.kernel_id = kernel_id
        self.km = multi_kernel_manager.get_kernel(kernel_id)
        self.on_restart = on_restart
        self._events = getattr(self.km, "event_logger", None) if on_restart else None
        # a jupyter_server without track_message_type (2.4) stamped every message
        self._tracked = getattr(multi_kernel_manager, "track_message_type", None)

    @classmethod
    def take_over(
        cls, multi_kernel_manager: Any, kernel_id: str,
        on_restart: Callable[[], None] | None = None,
    ) -> KernelActivity:
        """Stop jupyter_server's watch of a kernel and record its activity from now on."""
        multi_kernel_manager.stop_watching_activity(kernel_id)
        activity = cls(multi_kernel_manager, kernel_id, on_restart)
        if activity.km.execution_state == "starting":  # it answered kernel_info: ready
            activity.km.execution_state = "idle"
        activity.km.last_activity = private_apis.utcnow()
        if activity._events is not None:
            activity._events.add_listener(schema_id=KERNEL_ACTIONS, listener=activity._action)
        return activity

    def record(self, msg: dict[str, Any]) -> None:
        """One IOPub message of a running cell (nbclient's, decoded once)."""
        if self._tracked is not None and not self._tracked(msg["parent_header"].get("msg_type")):
            return
        self.mkm.last_kernel_activity = self.km.last_activity = private_apis.utcnow()
        state = msg["content"].get("execution_state") if msg["msg_type"] == "status" else None
        if isinstance(state, str):  # what the kernel sends is the kernel's word
            self.km.execution_state = state

    async def _action(self, logger: Any, schema_id: str, data: dict[str, Any]) -> None:
        if (
            data.get("kernel_id") == self.kernel_id
            and data.get("action") == "restart"
            and self.on_restart is not None
        ):
            self.on_restart()

    def close(self) -> None:
        """Stop listening for the kernel's restart (the run has released it)."""
        if self._events is not None:
            self._events.remove_listener(schema_id=KERNEL_ACTIONS, listener=self._action)
            self._events = None


@dataclass
class KernelLease:
    """A kernel handed to one execution, which must give it back with ``discard``."""

    kernel_id: str
    manager: Any  # the kernel's own KernelManager, as nbclient wants it
    #: forked from the kernel template (forking.py) rather than spawned
    forked: bool = False
    #: a spare: forked before it was asked for, waiting (the model's ``warm_kernel``)
    warm: bool = False
    #: a client connected to the kernel while it waited (a spare's)
    client: Any = None

    @property
    def origin(self) -> str:
        """How the kernel was started, as the metrics label it."""
        return "spare" if self.warm else "forked" if self.forked else "spawned"


class ServerKernels:
    """Fresh kernels from the server's MappingKernelManager, one per execution.

    With a ``forker``, each is announced to the forking provisioner by id before the
    manager starts it, so that it is forked from the kernel template when it can be.
    """

    def __init__(
        self, multi_kernel_manager: Any, log: logging.Logger, forker: KernelForker | None = None
    ) -> None:
        self.mkm = multi_kernel_manager
        self.log = log
        self.forker = forker
        if forker is not None:  # a spare's client, configured as the server's clients are
            forker.client_factory = lambda: AsyncKernelClient(parent=multi_kernel_manager)
        give_new_kernels_a_last_activity(multi_kernel_manager)
        keep_connection_files_in_runtime_dir(multi_kernel_manager)

    async def start(self, kernel_name: str, notebook_api_path: str) -> KernelLease:
        """Start a kernel whose working directory is the notebook's folder."""
        extra = await launch_kwargs(self.mkm, kernel_name, notebook_api_path)
        kernel_id = None
        if self.forker is not None:
            # a spare of this notebook's last launch, if one waits, is this kernel
            tag = (kernel_name, notebook_api_path)
            kernel_id = await self.forker.claim_spare(tag) or str(uuid.uuid4())
            expect_fork(kernel_id, self.forker, tag)
        try:
            kernel_id = await ensure_async(
                self.mkm.start_kernel(
                    kernel_id=kernel_id, kernel_name=kernel_name, path=notebook_api_path, **extra
                )
            )
        finally:
            if kernel_id is not None:
                forget_fork(kernel_id)
                if self.forker is not None:
                    self.forker.release_claim(kernel_id)
        km = self.mkm.get_kernel(kernel_id)
        provisioner = km.provisioner
        forked = bool(getattr(provisioner, "forked", False))
        if self.forker is not None and not forked and not hasattr(provisioner, "forked"):
            self.forker.say_once(
                f"kernel {kernel_name!r} has a provisioner of its own "
                f"({type(provisioner).__name__})"
            )
        if getattr(provisioner, "from_spare", False):
            # it waited with a client connected: the run takes that client
            client, provisioner.spare_client = provisioner.spare_client, None
            # as km.client() would make it: its is_alive asks the kernel's manager
            client.parent = km
            return KernelLease(kernel_id, km, forked=True, warm=True, client=client)
        return KernelLease(kernel_id, km, forked=forked)

    def take_over_activity(
        self, kernel_id: str, on_restart: Callable[[], None] | None = None
    ) -> KernelActivity:
        """Record a leased kernel's activity from its run's messages (`KernelActivity`)."""
        return KernelActivity.take_over(self.mkm, kernel_id, on_restart)

    async def discard(self, kernel_id: str) -> None:
        """Shut a kernel down now, whatever state it is in."""
        await shutdown_now(self.mkm, kernel_id, self.log)

    async def close(self) -> None:
        """Stop the kernel template; the server shuts its kernels down itself."""
        if self.forker is not None:
            await self.forker.close()
