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
from traitlets import Float, Integer, default

from .handlers import default_handlers
from .kernels import ServerKernels
from .manager import ExecutionManager


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

    manager: ExecutionManager | None = None
    _activity_task: asyncio.Task[Any] | None = None

    def initialize_settings(self) -> None:
        """Build the ExecutionManager on the server's own kernel manager."""
        server = self.serverapp
        assert server is not None
        self.manager = ExecutionManager(
            root_dir=server.root_dir,
            kernels=ServerKernels(server.kernel_manager, self.log),
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
