"""The ExecutionManager: creates, lists, stops and deletes executions.

It owns the in-memory table of executions, the FIFO limit on how many run at once and
the reservations of output files; its `ExecutionHistory` keeps them in the store and
forgets old ones. Handlers only parse requests and call it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from functools import partial
from typing import Any

import nbformat
from jupyter_client.kernelspec import NoSuchKernel
from jupyter_core.utils import ensure_async
from nbformat import NotebookNode
from traitlets import Float, Integer, default
from traitlets.config import LoggingConfigurable

from ..errors import BadRequest, NotFound
from ..protocol import NOTEBOOK_START
from .checkpoint import Checkpointer
from .durability import INTERRUPTED, ExecutionHistory
from .execution import Execution
from .limiter import FifoLimiter
from .naming import OutputReservations, normalize_api_path, to_api_path, to_os_path
from .parameters import convert_parameters, declared_parameters, inject_parameters
from .request import RunRequest
from .runner import NotebookRunner


def read_notebook(os_path: str) -> NotebookNode:
    """Read and check a notebook file (raises on anything that is not a notebook)."""
    with open(os_path, encoding="utf-8") as f:
        nb = nbformat.read(f, as_version=4)
    if not isinstance(nb.get("cells"), list):
        raise ValueError("it has no list of cells")
    for cell in nb.cells:
        if not isinstance(cell, dict) or "cell_type" not in cell or "source" not in cell:
            raise ValueError("a cell lacks cell_type or source")
    return nb


class ExecutionManager(LoggingConfigurable):
    """All executions of this server, and the one place that starts and stops them.

    Configured as ``c.ExecutionManager.…``; the extension app builds it with ``parent=``.
    """

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

    def __init__(
        self,
        *,
        root_dir: str,
        kernels: Any,
        kernel_spec_manager: Any,
        default_kernel_name: str,
        on_run: Callable[[], None] | None = None,
        history: ExecutionHistory | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.root_dir = os.path.abspath(root_dir)
        self.kernels = kernels
        self.kernel_spec_manager = kernel_spec_manager
        self.default_kernel_name = default_kernel_name
        self.limiter = FifoLimiter(self.max_concurrent_executions)
        #: called whenever an execution starts (the app keeps the server active with it)
        self.on_run = on_run
        self.executions: dict[str, Execution] = {}
        self.reservations = OutputReservations()
        self._background: set[asyncio.Task[Any]] = set()
        #: executions whose task has not ended, deleted ones included
        self._live: dict[str, Execution] = {}
        #: the store of records and logs, restore and retention (memory only without a store)
        self.history = history or ExecutionHistory(
            None, root_dir=self.root_dir, parent=self, log=self.log, logs_in_memory=0
        )

    def restore(self) -> None:
        """Bring back the executions of the store (start-up), then apply retention."""
        for ex in self.history.restore(self.max_events_per_execution):
            self.executions[ex.exec_id] = ex
        self.apply_retention()

    def apply_retention(self) -> None:
        """Forget the finished executions that retention says are too old or too many."""
        gone = self.history.expired(list(self.executions.values()))
        for ex in gone:
            self.executions.pop(ex.exec_id, None)
        self.history.forget(gone)

    # -- queries -----------------------------------------------------------------------------

    def list(self) -> list[Execution]:
        """Every execution, oldest first."""
        return list(self.executions.values())

    def get(self, exec_id: str) -> Execution:
        """One execution, or NotFound."""
        try:
            return self.executions[exec_id]
        except KeyError:
            raise NotFound(f"no execution with id {exec_id!r}") from None

    async def events_since(self, ex: Execution, seq: int) -> list[tuple[int, dict[str, Any]]]:
        """The next events of an execution from ``seq`` on (from memory or the store)."""
        return await self.history.events_since(ex, seq)

    def has_running(self) -> bool:
        """Whether any execution has not ended yet."""
        return any(not ex.is_done for ex in self.executions.values())

    async def parameters(self, notebook: str | None) -> dict[str, Any]:
        """The parameters a notebook declares."""
        if not notebook:
            raise BadRequest("the notebook query parameter is required")
        api_path = normalize_api_path(notebook, "notebook")
        nb = await self._read(api_path)
        return {"path": api_path, "parameters": [p.to_json() for p in declared_parameters(nb)]}

    # -- running -----------------------------------------------------------------------------

    def _notebook_os_path(self, api_path: str) -> str:
        os_path = to_os_path(self.root_dir, api_path, "notebook")
        if os.path.isdir(os_path):
            raise BadRequest(f"notebook {api_path!r} is a directory")
        if not os.path.isfile(os_path):
            raise NotFound(f"notebook not found: {api_path!r}")
        return os_path

    async def _read(self, api_path: str) -> NotebookNode:
        os_path = self._notebook_os_path(api_path)
        try:
            return await asyncio.to_thread(read_notebook, os_path)
        except Exception as exc:
            raise BadRequest(f"{api_path!r} is not a valid notebook: {exc}") from None

    async def _kernel_spec(self, name: str) -> Any:
        try:
            return await ensure_async(self.kernel_spec_manager.get_kernel_spec(name))
        except NoSuchKernel:
            return None

    async def _resolve_kernel(self, req: RunRequest, nb: NotebookNode | None) -> tuple[str, Any]:
        if req.jupyter_kernel:
            spec = await self._kernel_spec(req.jupyter_kernel)
            if spec is None:
                raise BadRequest(f"unknown kernel name {req.jupyter_kernel!r}")
            return req.jupyter_kernel, spec
        declared = ((nb or {}).get("metadata", {}).get("kernelspec") or {}).get("name")
        if declared:
            spec = await self._kernel_spec(declared)
            if spec is not None:
                return declared, spec
            self.log.warning("nbexec: kernel %r of the notebook is not installed", declared)
        return self.default_kernel_name, await self._kernel_spec(self.default_kernel_name)

    def _new_execution(
        self, req: RunRequest, output_path: str | None, reserved: str | None = None
    ) -> Execution:
        ex = Execution(
            path=req.notebook,
            params=req.params,
            output_path=output_path,
            overwrite=req.overwrite,
            jupyter_kernel=req.jupyter_kernel,
            cell_timeout=req.cell_timeout,
            max_events=self.max_events_per_execution,
        )
        self.executions[ex.exec_id] = ex
        self.history.track(ex, reserved)
        return ex

    async def create(self, req: RunRequest) -> Execution:
        """Check a run request, reserve its output and start (or queue) it."""
        nb_os_path = self._notebook_os_path(req.notebook)
        out_os_path = (
            None if req.output_path is None
            else to_os_path(self.root_dir, req.output_path, "output_path")
        )
        if req.jupyter_kernel:
            await self._resolve_kernel(req, None)
        try:
            nb = await asyncio.to_thread(read_notebook, nb_os_path)
        except Exception as exc:
            ex = self._new_execution(req, None)
            ex.emit(NOTEBOOK_START, execution=ex.model())
            message = f"{req.notebook!r} is not a valid notebook: {exc}"
            ex.finish(f"error: {message}", error=message)
            return ex
        kernel_name, spec = await self._resolve_kernel(req, nb)
        values: dict[str, Any] = {}
        if req.params:
            language = getattr(spec, "language", "python") or ""
            if language.lower() != "python":
                raise BadRequest(
                    f"kernel {kernel_name!r} runs {language}: parameters can only be injected"
                    " into Python kernels"
                )
            declared = declared_parameters(nb)
            values = convert_parameters(req.params, declared, from_form=req.from_form)
        inject_parameters(nb, values)
        # read_notebook validated it and the parameters cell is nbformat's own: writing it
        # without a second validation (the output is validated when it is written)
        placeholder = (await asyncio.to_thread(nbformat.v4.writes, nb)).encode("utf-8")
        try:
            if out_os_path is not None:
                assert req.output_path is not None
                await self.reservations.reserve_exact(
                    out_os_path, req.output_path, req.overwrite, placeholder
                )
            else:
                out_os_path = await self.reservations.reserve_numbered(nb_os_path, placeholder)
        except OSError as exc:
            raise BadRequest(f"the output notebook cannot be created: {exc.strerror}") from None
        output_api_path = to_api_path(self.root_dir, out_os_path)
        ex = self._new_execution(req, req.output_path, output_api_path)
        ex.kernel_name = kernel_name
        have_slot = self.limiter.try_acquire()
        if have_slot:
            ex.mark_started()
        ex.emit(NOTEBOOK_START, execution=ex.model())
        checkpoints = Checkpointer(
            nb,
            out_os_path,
            min_interval=self.checkpoint_min_interval,
            max_interval=self.checkpoint_max_interval,
            log=self.log,
        )
        ex.listeners.append(checkpoints.on_event)
        runner = NotebookRunner(
            ex,
            nb,
            kernels=self.kernels,
            kernel_name=kernel_name,
            notebook_api_path=req.notebook,
            output_os_path=out_os_path,
            output_api_path=output_api_path,
            start_attempts=self.kernel_start_attempts,
            startup_timeout=self.kernel_startup_timeout,
            log=self.log,
            release_output=partial(self._release_output, out_os_path),
            checkpoints=checkpoints,
        )
        ex.task = asyncio.create_task(runner.run(self.limiter, have_slot))
        self._live[ex.exec_id] = ex
        ex.task.add_done_callback(lambda _: self._live.pop(ex.exec_id, None))
        ex.task.add_done_callback(lambda _: ex.listeners.remove(checkpoints.on_event))
        ex.task.add_done_callback(lambda _: self.apply_retention())
        if self.on_run is not None:
            self.on_run()
        return ex

    def _release_output(self, out_os_path: str, written: bool) -> None:
        self.reservations.release(out_os_path, written=written)

    # -- stopping ----------------------------------------------------------------------------

    async def shutdown(
        self, exec_id: str, *, wait: bool = True, reason: str = "shut down by request"
    ) -> Execution:
        """Stop an execution (its kernel shut down); with ``wait``, until it has ended."""
        ex = self.get(exec_id)
        await self._finish_or_not(self._stop(ex, reason), wait)
        return ex

    async def _stop(self, ex: Execution, reason: str) -> None:
        if ex.is_done:
            return
        ex.request_stop(reason)
        await ex.finished.wait()

    async def _stop_and_settle(self, ex: Execution, reason: str) -> None:
        """Stop, then wait until its kernel is released too."""
        await self._stop(ex, reason)
        if ex.task is not None:
            await asyncio.shield(ex.task)

    async def _finish_or_not(self, coro: Any, wait: bool) -> None:
        if wait:
            await coro
        else:
            self.in_background(coro)

    async def delete(self, exec_id: str, *, wait: bool = True) -> None:
        """Forget an execution at once, stopping it first if it still runs."""
        ex = self.get(exec_id)
        del self.executions[exec_id]
        self.history.forget([ex])
        await self._finish_or_not(self._stop(ex, "deleted"), wait)

    async def delete_all(self, *, wait: bool = True) -> None:
        """Forget every execution at once, stopping those that run."""
        executions = list(self.executions.values())
        self.executions.clear()
        self.history.forget(executions)
        stops = asyncio.gather(*(self._stop(ex, "deleted") for ex in executions))
        await self._finish_or_not(stops, wait)

    def in_background(self, coro: Any) -> None:
        """Run a coroutine without waiting, keeping a reference until it ends."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def stop(self) -> None:
        """Server shutdown: stop every running execution, each writing its output, for at
        most ``shutdown_timeout``; they end as ``error: interrupted: the server stopped``,
        as after a crash (A.6)."""
        # also deleted ones, and those ended whose kernel is still being released
        running = list(self._live.values())
        if running:
            self.log.info("nbexec: stopping %d running executions", len(running))
        stops = [
            asyncio.ensure_future(self._stop_and_settle(ex, INTERRUPTED))
            for ex in running
        ]
        if stops:
            done, pending = await asyncio.wait(stops, timeout=self.shutdown_timeout)
            for task in pending:
                task.cancel()
        await self.kernels.close()
        await self.history.close()
