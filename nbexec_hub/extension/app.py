"""The Jupyter Server extension application: configuration, the manager, the routes.

All knobs are traitlets on `ExecutionExtensionApp` (``c.ExecutionExtensionApp.…`` in a
server config file, or ``--ExecutionExtensionApp.…`` on the command line).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from jupyter_server._tz import utcnow
from jupyter_server.extension.application import ExtensionApp
from tornado.ioloop import IOLoop
from traitlets import Dict, Float, Integer, Unicode, default

from .handlers import default_handlers
from .kernels import ServerKernels
from .manager import ExecutionManager
from .pool import WarmKernelPool


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

    warm_kernels = Dict(
        key_trait=Unicode(),
        value_trait=Integer(),
        default_value=None,
        allow_none=True,
        help=(
            "How many pre-started (warm) kernels to keep per kernel name, e.g. "
            "{'python3': 2}. None (the default): one for the server's default kernel; "
            "{} disables the pool. Only Python kernels are pooled; each warm kernel serves "
            "exactly one execution and is shut down after it."
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

    manager: ExecutionManager | None = None
    pool: WarmKernelPool | None = None
    _activity_task: asyncio.Task[Any] | None = None

    def initialize_settings(self) -> None:
        """Build the ExecutionManager on the server's own kernel manager."""
        server = self.serverapp
        assert server is not None
        kernels: ServerKernels | WarmKernelPool = ServerKernels(server.kernel_manager, self.log)
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
        )
        self.settings.update(
            nbexec_manager=self.manager,
            nbexec_max_body_bytes=self.max_body_bytes,
            nbexec_keepalive_seconds=self.keepalive_seconds,
        )

    def _python_pool_sizes(self) -> dict[str, int]:
        """The pool sizes asked for, keeping only installed Python kernels."""
        server = self.serverapp
        assert server is not None
        asked = self.warm_kernels
        if asked is None:
            asked = {server.kernel_manager.default_kernel_name: 1}
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
        if self.manager is not None:
            await self.manager.stop(self.shutdown_timeout)
        if self._activity_task is not None:
            self._activity_task.cancel()
