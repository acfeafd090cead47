"""The Jupyter Server extension application: configuration, the manager, the routes.

All knobs are traitlets on `ExecutionExtensionApp` (``c.ExecutionExtensionApp.…`` in a
server config file, or ``--ExecutionExtensionApp.…`` on the command line).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from tornado.ioloop import IOLoop, PeriodicCallback
from traitlets import Bool, Dict, Float, Integer, Unicode, default

from ..private_apis import utcnow
from . import metrics
from .durability import ExecutionHistory
from .forking import KernelForker
from .handlers import default_handlers
from .kernels import ServerKernels
from .manager import ExecutionManager
from .pool import WarmKernelPool
from .provisioner import make_default_provisioner
from .store import ExecutionStore, StoreUnavailable

#: seconds between two retention checks (a finished execution also triggers one)
RETENTION_CHECK_SECONDS = 3600.0


class ExecutionExtensionApp(ExtensionApp):
    """Adds ``/api/executions`` to a Jupyter server: run notebooks with parameters."""

    name = "nbexec_hub"
    load_other_extensions = True

    max_concurrent_executions = Integer(
        help=(
            "How many executions may run at once; the others wait in order as 'initializing'. "
            "Default: twice the number of CPUs, at least 2."
        ),
    ).tag(config=True)

    @default("max_concurrent_executions")
    def _default_max_concurrent(self) -> int:
        return max(2, 2 * (os.cpu_count() or 1))

    max_events_per_execution = Integer(
        10000,
        help="How many progress events an execution keeps for replay (its first one always).",
    ).tag(config=True)

    max_body_bytes = Integer(
        10 * 1024 * 1024,
        help="Largest accepted request body, in bytes (larger: 413).",
    ).tag(config=True)

    kernel_start_attempts = Integer(
        3,
        help="How many fresh kernels to try when one dies before replying to kernel_info.",
    ).tag(config=True)

    kernel_startup_timeout = Float(
        60.0,
        help="Seconds to wait for a started kernel to reply to kernel_info.",
    ).tag(config=True)

    shutdown_timeout = Float(
        15.0,
        help="Seconds the server waits at shutdown for running executions to write their output.",
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

    warm_kernels = Dict(
        key_trait=Unicode(),
        value_trait=Integer(),
        default_value=None,
        allow_none=True,
        help=(
            "How many pre-started (warm) kernels to keep per kernel name, e.g. "
            "{'python3': 2}. None (the default): none when kernels are forked "
            "(fork_kernels), else one for the server's default kernel; {} disables the pool. "
            "Only Python kernels are pooled; each warm kernel serves exactly one execution "
            "and is shut down after it."
        ),
    ).tag(config=True)

    warm_kernels_max_total = Integer(
        4,
        help="At most this many warm kernels in all, whatever warm_kernels asks (memory).",
    ).tag(config=True)

    warm_kernel_max_idle = Float(
        3600.0,
        help=(
            "Seconds an unused warm kernel may wait. After that it is shut down and the pool "
            "of its name stays empty until executions come back, so an idle server holds none."
        ),
    ).tag(config=True)

    warm_kernel_check_interval = Float(
        5.0,
        help="Seconds between checks that replace warm kernels that died while waiting.",
    ).tag(config=True)

    warm_kernel_start_delay = Float(
        2.0,
        help="Seconds after server start before the pool starts its kernels (start-up first).",
    ).tag(config=True)

    warm_kernel_refill_delay = Float(
        1.0,
        help=(
            "A warm kernel taken by an execution is replaced when that execution ends, or "
            "after this many seconds if it runs longer (so that starting the replacement "
            "does not slow the execution down)."
        ),
    ).tag(config=True)

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

    retention_max_age = Float(
        30 * 24 * 3600.0,
        help=(
            "Seconds a finished execution is kept (record and event log; its output notebook "
            "stays). 0: no age limit."
        ),
    ).tag(config=True)

    retention_max_count = Integer(
        1000,
        help=(
            "How many finished executions are kept at most; past it the oldest are forgotten. "
            "0: no limit."
        ),
    ).tag(config=True)

    logs_in_memory = Integer(
        10,
        help=(
            "How many finished executions keep their event logs in memory too (the latest); "
            "the others replay from the store. Without a store every log stays in memory."
        ),
    ).tag(config=True)

    checkpoint_min_interval = Float(
        2.0,
        help=(
            "While an execution runs its output notebook is rewritten after each cell, but at "
            "most this often (seconds)."
        ),
    ).tag(config=True)

    checkpoint_max_interval = Float(
        30.0,
        help=(
            "During a long cell the output notebook is rewritten at least this often "
            "(seconds), with the outputs so far. 0 turns checkpoints off."
        ),
    ).tag(config=True)

    manager: ExecutionManager | None = None
    pool: WarmKernelPool | None = None
    forker: KernelForker | None = None
    _retention: PeriodicCallback | None = None
    _activity_task: asyncio.Task[Any] | None = None

    def initialize_settings(self) -> None:
        """Build the ExecutionManager on the server's own kernel manager."""
        server = self.serverapp
        assert server is not None
        kernels: ServerKernels | WarmKernelPool = ServerKernels(
            server.kernel_manager, self.log, forker=self._kernel_forker()
        )
        sizes = self._python_pool_sizes()
        if sizes:
            self.pool = kernels = WarmKernelPool(
                fresh=kernels,
                sizes=sizes,
                max_total=self.warm_kernels_max_total,
                max_idle=self.warm_kernel_max_idle,
                check_interval=self.warm_kernel_check_interval,
                log=self.log,
                refill_delay=self.warm_kernel_refill_delay,
            )
            IOLoop.current().call_later(self.warm_kernel_start_delay, self.pool.start_filling)
        self.manager = ExecutionManager(
            root_dir=server.root_dir,
            kernels=kernels,
            kernel_spec_manager=server.kernel_spec_manager,
            default_kernel_name=server.kernel_manager.default_kernel_name,
            max_concurrent=self.max_concurrent_executions,
            max_events=self.max_events_per_execution,
            kernel_start_attempts=self.kernel_start_attempts,
            kernel_startup_timeout=self.kernel_startup_timeout,
            log=self.log,
            on_run=self._keep_server_active,
            history=ExecutionHistory(
                self._open_store(),
                root_dir=server.root_dir,
                max_age=self.retention_max_age,
                max_count=self.retention_max_count,
                logs_in_memory=self.logs_in_memory,
                log=self.log,
            ),
            checkpoint_intervals=(self.checkpoint_min_interval, self.checkpoint_max_interval),
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

    def _kernel_forker(self) -> KernelForker | None:
        """The forker of executions' kernels, when forking is on and can be set up."""
        if not self.fork_kernels:
            return None
        reason = make_default_provisioner()
        if reason is not None:
            self.log.warning("nbexec: kernels are spawned instead of forked: %s", reason)
            return None
        self.forker = KernelForker(self.log)
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

    def _python_pool_sizes(self) -> dict[str, int]:
        """The pool sizes asked for, keeping only installed Python kernels."""
        server = self.serverapp
        assert server is not None
        asked = self.warm_kernels
        if asked is None:  # forked kernels beat the pool unless runs come with pauses
            default = server.kernel_manager.default_kernel_name
            asked = {} if self.forker is not None else {default: 1}
        sizes = {}
        for name, size in asked.items():
            if size <= 0:
                continue
            try:
                spec = server.kernel_spec_manager.get_kernel_spec(name)
            except Exception as exc:
                self.log.warning("nbexec: no warm kernels for %r: %s", name, exc)
                continue
            language = getattr(spec, "language", "")
            if not isinstance(language, str) or language.lower() != "python":
                self.log.warning("nbexec: only Python kernels are kept warm, not %r", name)
                continue
            sizes[name] = size
        return sizes

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
        if self.manager is not None:
            await self.manager.stop(self.shutdown_timeout)
        if self.forker is not None:  # the pool, when on, does not close its fresh kernels
            await self.forker.close()
        if self._activity_task is not None:
            self._activity_task.cancel()
