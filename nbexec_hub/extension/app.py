"""The Jupyter Server extension application: configuration, the manager, the routes.

Each part is configured where it lives, in ``jupyter_server_config.py`` or on the command
line: the app (``c.ExecutionExtensionApp.…``: request bounds, forking and spare kernels,
the store's folder), ``c.ExecutionManager.…`` (concurrency, kernel start, checkpoints) and
``c.ExecutionHistory.…`` (retention). The app builds each with ``parent=self``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from tornado.ioloop import IOLoop, PeriodicCallback
from traitlets import Bool, Float, Integer, TraitError, Unicode, default, validate

from ..private_apis import utcnow
from . import metrics
from .durability import ExecutionHistory
from .forking import KernelForker
from .handlers import default_handlers
from .kernels import ServerKernels
from .manager import ExecutionManager
from .provisioner import make_default_provisioner
from .store import ExecutionStore, StoreUnavailable

#: the configurable parts the app builds with parent=self
PARTS = (ExecutionManager, ExecutionHistory)
#: traits that lived on the app and moved to the part using them: name -> its class name
MOVED_TRAITS = {
    name: cls.__name__ for cls in PARTS for name in cls.class_trait_names(config=True)
}

#: the warm pool's section and traits (removed: forked kernels and their spare beat it)
REMOVED_SECTION = "WarmKernelPool"
REMOVED_TRAITS = (
    "warm_kernels", "warm_kernels_max_total", "warm_kernel_max_idle",
    "warm_kernel_check_interval", "warm_kernel_start_delay", "warm_kernel_refill_delay",
)

#: seconds between two retention checks (a finished execution also triggers one)
RETENTION_CHECK_SECONDS = 3600.0


class ExecutionExtensionApp(ExtensionApp):
    """Adds ``/api/executions`` to a Jupyter server: run notebooks with parameters."""

    name = "nbexec_hub"
    load_other_extensions = True
    classes = list(PARTS)

    max_body_bytes = Integer(
        10 * 1024 * 1024,
        help="Largest accepted request body, in bytes (larger: 413).",
    ).tag(config=True)

    activity_interval = Float(
        30.0,
        help=(
            "While executions run, mark the server active this often (seconds), so that the "
            "hub's idle culler leaves it alone even when a cell is silent for long."
        ),
    ).tag(config=True)

    keepalive_seconds = Float(
        15.0,
        help="Seconds between keep-alive comments on an idle Server-Sent Events stream.",
    ).tag(config=True)

    fork_kernels = Bool(
        True,
        help=(
            "Fork executions' kernels from a template process that has imported ipykernel "
            "(Linux; kernelspecs running this server's Python's ipykernel): a kernel in about "
            "a tenth of a second instead of half a second. Kernels that cannot be forked, "
            "and all kernels when the template is unwell, are spawned as usual (said once "
            "in the log). False: always spawn."
        ),
    ).tag(config=True)

    fork_template_start_delay = Float(
        2.0,
        allow_none=True,
        help=(
            "Seconds after the server starts before the kernel template starts (about half "
            "a second of CPU and 16 MB), so that the server's first run gets a forked "
            "kernel too. None: the first run starts it, and waits for it."
        ),
    ).tag(config=True)

    spare_kernel = Bool(
        True,
        help=(
            "With fork_kernels: after each forked launch, fork one spare kernel of the same "
            "launch and keep it waiting, so that the next execution of the same notebook "
            "(with the same kernel, environment and IPython configuration) starts with no "
            "kernel start to wait for. A spare is in no kernel list and counts as no "
            "activity; it costs one kernel's memory (about 17 MB) while it waits."
        ),
    ).tag(config=True)

    spare_kernel_max_idle = Float(
        600.0,
        help=(
            "Seconds a spare kernel may wait unused before it is ended (more than 0; "
            "spare_kernel = False turns spares off)."
        ),
    ).tag(config=True)

    @validate("spare_kernel_max_idle")
    def _valid_spare_max_idle(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if not value > 0:
            raise TraitError(
                "spare_kernel_max_idle must be more than 0 seconds "
                "(spare_kernel = False turns spares off)"
            )
        return value

    store_path = Unicode(
        help=(
            "The folder keeping execution records and event logs across restarts. Default: "
            "nbexec/executions-<hash of the root folder and the hub's server name> in the "
            "server's Jupyter data folder. An empty string keeps executions in memory only."
        ),
    ).tag(config=True)

    @default("store_path")
    def _default_store_path(self) -> str:
        server = self.serverapp
        assert server is not None
        server_name = os.environ.get("JUPYTERHUB_SERVER_NAME", "")
        key = f"{os.path.realpath(server.root_dir)}\n{server_name}".encode()
        digest = hashlib.sha256(key).hexdigest()[:12]
        return os.path.join(server.data_dir, "nbexec", f"executions-{digest}")

    manager: ExecutionManager | None = None
    forker: KernelForker | None = None
    _retention: PeriodicCallback | None = None
    _template_timer: object | None = None
    _activity_task: asyncio.Task[Any] | None = None

    def initialize_settings(self) -> None:
        """Build the ExecutionManager on the server's own kernel manager."""
        server = self.serverapp
        assert server is not None
        self._adopt_moved_config()
        self._warn_removed_config()
        kernels = ServerKernels(server.kernel_manager, self.log, forker=self._kernel_forker())
        history = ExecutionHistory(
            self._open_store(), root_dir=server.root_dir, parent=self, log=self.log
        )
        self.manager = ExecutionManager(
            root_dir=server.root_dir,
            kernels=kernels,
            kernel_spec_manager=server.kernel_spec_manager,
            default_kernel_name=server.kernel_manager.default_kernel_name,
            on_run=self._keep_server_active,
            history=history,
            parent=self,
            log=self.log,
        )
        metrics.watch_manager(self.manager)
        self.manager.restore()
        self._retention = PeriodicCallback(
            self.manager.apply_retention, RETENTION_CHECK_SECONDS * 1000
        )
        self._retention.start()
        self.settings.update(
            nbexec_manager=self.manager,
            nbexec_max_body_bytes=self.max_body_bytes,
            nbexec_keepalive_seconds=self.keepalive_seconds,
        )

    def _adopt_moved_config(self) -> None:
        """Carry ``c.ExecutionExtensionApp.<name>`` over for the traits that moved to the
        part that uses them (they lived on the app up to 0.1), saying where they went."""
        section = self.config.get(type(self).__name__) or {}
        for name in section:
            owner = MOVED_TRAITS.get(name)
            if owner is None:
                continue
            target = self.config[owner]
            if name not in target:
                target[name] = section[name]
            self.log.warning(
                "nbexec: c.%s.%s is now c.%s.%s", type(self).__name__, name, owner, name
            )

    def _warn_removed_config(self) -> None:
        """Say that the warm pool's traits do nothing any more, and what replaced them."""
        given = [
            f"c.{REMOVED_SECTION}.{name}" for name in self.config.get(REMOVED_SECTION) or {}
        ] + [
            f"c.{type(self).__name__}.{name}"
            for name in self.config.get(type(self).__name__) or {}
            if name in REMOVED_TRAITS
        ]
        if given:
            self.log.warning(
                "nbexec: %s: the warm kernel pool is gone and these settings do nothing. "
                "Kernels are forked, and a spare of the last launch waits for the next run "
                "(c.%s.fork_kernels, c.%s.spare_kernel).",
                ", ".join(given), type(self).__name__, type(self).__name__,
            )

    def _kernel_forker(self) -> KernelForker | None:
        """The forker of executions' kernels, when forking is on and can be set up."""
        if not self.fork_kernels:
            return None
        reason = make_default_provisioner()
        if reason is not None:
            self.log.warning("nbexec: kernels are spawned instead of forked: %s", reason)
            return None
        self.forker = KernelForker(
            self.log, spare=self.spare_kernel, spare_max_idle=self.spare_kernel_max_idle
        )
        if self.fork_template_start_delay is not None:
            self._template_timer = IOLoop.current().call_later(
                self.fork_template_start_delay, self.forker.start_template_soon
            )
        return self.forker

    def _open_store(self) -> ExecutionStore | None:
        """The execution store, or None (then executions live in memory only, as logged)."""
        if not self.store_path:
            self.log.warning(
                "nbexec: store_path is empty: executions are kept in memory only and are "
                "forgotten when the server stops"
            )
            return None
        try:
            store = ExecutionStore.open(self.store_path, self.log)
        except StoreUnavailable as exc:
            self.log.error(
                "nbexec: the execution store %s cannot be used: %s. Executions are kept in "
                "memory only and are forgotten when the server stops; set "
                "c.ExecutionExtensionApp.store_path to a writable folder.",
                self.store_path, exc,
            )
            return None
        self.log.info("nbexec: executions are stored in %s", store.path)
        return store

    def initialize_handlers(self) -> None:
        """Register the routes (below the server's base URL)."""
        self.handlers.extend(default_handlers)

    def _keep_server_active(self) -> None:
        """Start the activity ticker if it is not running."""
        if self._activity_task is None or self._activity_task.done():
            self._activity_task = asyncio.ensure_future(self._tick_activity())

    async def _tick_activity(self) -> None:
        assert self.manager is not None and self.serverapp is not None
        while self.manager.has_running():
            self.serverapp.web_app.settings["api_last_activity"] = utcnow()
            await asyncio.sleep(self.activity_interval)

    async def stop_extension(self) -> None:
        """Server shutdown: end running executions cleanly, each writing its output."""
        if self._retention is not None:
            self._retention.stop()
        if self._template_timer is not None:
            IOLoop.current().remove_timeout(self._template_timer)
        if self.manager is not None:
            await self.manager.stop()
        if self.forker is not None:  # its template, and the spare
            await self.forker.close()
        if self._activity_task is not None:
            self._activity_task.cancel()
