"""The engine: drives one execution's notebook through nbclient on a server kernel.

Every way a run can end (completed, cell error, cell timeout, shutdown, kernel death,
server stop) goes through the same exit: the kernel is shut down, the output notebook
is written atomically with everything that ran, and the final event is emitted.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from nbformat import NotebookNode

from ..protocol import OUTPUT
from . import metrics
from .checkpoint import Checkpointer
from .client_handshake import connect_client, kernel_info
from .execution import Execution
from .kernels import KernelActivity, KernelLease
from .live_output import LiveNotebookClient, OutputEvents
from .store import write_atomically

SKIP_TAG = "skip-execution"
#: evalues of SystemExit that mean "stop here, successfully" (papermill's rule)
CLEAN_EXIT_VALUES = ("", "0", "None")


class ExecutionFailed(Exception):
    """The run ended in error: the status to show and the event's error text."""

    def __init__(self, status: str, error: str) -> None:
        super().__init__(status)
        self.status = status
        self.error = error


def utc_iso(moment: datetime) -> str:
    """ISO-8601 in UTC with an explicit ``+00:00``."""
    return moment.astimezone(timezone.utc).isoformat()


def cell_error_text(source: str, ename: str, evalue: str) -> str:
    """nbclient's CellExecutionError text: the cell between dashed lines, then the error."""
    return (
        "An error occurred while executing the following cell:\n"
        f"------------------\n{source}\n------------------\n\n{ename}: {evalue}\n"
    )


def runnable_cells(nb: NotebookNode) -> list[int]:
    """Indexes of the code cells that will run (non-empty, not tagged skip-execution)."""
    return [
        index
        for index, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        and cell.source.strip()
        and SKIP_TAG not in cell.get("metadata", {}).get("tags", [])
    ]


class NotebookRunner:
    """Runs one execution: kernel start (with retries), cells, output, final event."""

    def __init__(
        self,
        execution: Execution,
        nb: NotebookNode,
        *,
        kernels: Any,
        kernel_name: str,
        notebook_api_path: str,
        output_os_path: str,
        output_api_path: str,
        start_attempts: int,
        startup_timeout: float,
        log: logging.Logger,
        release_output: Callable[[bool], None] | None = None,
        checkpoints: Checkpointer | None = None,
    ) -> None:
        self.execution = execution
        #: rewrites the output while it runs; closed before the final write
        self.checkpoints = checkpoints
        #: frees the output name's reservation (told whether the file was written)
        self.release_output = release_output
        self.nb = nb
        self.kernels = kernels
        self.kernel_name = kernel_name
        self.notebook_api_path = notebook_api_path
        self.output_os_path = output_os_path
        self.output_api_path = output_api_path
        self.start_attempts = max(1, start_attempts)
        self.startup_timeout = startup_timeout
        self.log = log
        self._lease: KernelLease | None = None
        self._client: NotebookClient | None = None
        self._activity: KernelActivity | None = None
        self._current: tuple[NotebookNode, datetime] | None = None
        #: the running cell's outputs on their way out as ``output`` events
        self._outputs: OutputEvents | None = None
        #: the kernel_info reply seen while connecting to the kernel (saves a round trip)
        self._kernel_info: dict[str, Any] | None = None
        #: whether any cell started: a run that ends before that "failed to start"
        self.cell_started = False
        #: whether the output notebook was written
        self.wrote_output = False

    # -- the whole life ---------------------------------------------------------------------

    async def run(self, slot: Any, have_slot: bool) -> None:
        """Wait for a slot (unless held), run, and always end with a final event."""
        ex = self.execution
        # only a run that gets through every cell turns this into "completed"
        unexpected = "the execution ended unexpectedly"
        status, error = f"error: {unexpected}", unexpected
        holding = have_slot
        ex.cancellable = True
        try:
            if ex.stop_reason:
                raise asyncio.CancelledError()
            if not holding:
                await slot.acquire()
                holding = True
                ex.mark_started()
            await self._execute()
            status, error = "completed", None
        except asyncio.CancelledError:
            status, error = self._stopped()
        except ExecutionFailed as failed:
            status, error = failed.status, failed.error
        except Exception as exc:
            self.log.exception("nbexec: execution %s failed", ex.exec_id)
            status, error = f"error: {type(exc).__name__}: {exc}", f"{type(exc).__name__}: {exc}"
        finally:
            ex.cancellable = False
            if holding:
                slot.release()
            if self.checkpoints is not None:
                await self.checkpoints.close()  # no checkpoint may land after the final write
            if self.cell_started or error is None:
                write_error = await self._write_output()
                if write_error and error is None:
                    status, error = f"error: {write_error}", write_error
            else:
                ex.output_path = None  # it failed to start: no output (A.1)
            if self.release_output is not None:
                self.release_output(self.wrote_output)
            ex.finish(status, error=error)
            # after the final event: reaping a kernel process takes a tenth of a second
            await self._release_kernel()

    def _stopped(self) -> tuple[str, str]:
        reason = self.execution.stop_reason or "execution cancelled"
        ename = "ExecutionShutdown"
        if self._current is not None:
            source = self._current[0].source
            self._end_cell_with_error(ename, reason)
            return f"error: {reason}", cell_error_text(source, ename, reason)
        return f"error: {reason}", f"{ename}: {reason}"

    # -- kernel ------------------------------------------------------------------------------

    async def _start_kernel(self) -> NotebookClient:
        """A ready kernel client; a kernel that dies before kernel_info is replaced."""
        ex = self.execution
        last_error: BaseException | None = None
        for attempt in range(1, self.start_attempts + 1):
            try:
                asked_at = time.monotonic()
                self._lease = await self._lease_kernel()
                ex.kernel_id, ex.warm_kernel = self._lease.kernel_id, self._lease.warm
                # a kernel revived behind nbclient's back has lost the run's state, and
                # nbclient would wait forever for the interrupted cell: let death be death
                self._lease.manager.stop_restarter()
                client = LiveNotebookClient(
                    self.nb,
                    km=self._lease.manager,
                    timeout=ex.cell_timeout,
                    interrupt_on_timeout=False,
                    startup_timeout=int(self.startup_timeout),
                    skip_cells_with_tag=SKIP_TAG,
                    log=self.log,
                    on_output=self._on_output,
                )
                self._client = client
                if self._lease.client is not None:
                    # a kernel that waited connected: one round trip proves it still runs
                    client.kc, self._lease.client = self._lease.client, None
                    self._kernel_info = await kernel_info(
                        client.kc, self.startup_timeout, self._lease.manager.is_alive
                    )
                elif self._lease.forked:
                    # nbclient's start drains IOPub for a fixed 0.2 s, twice what a forked
                    # kernel takes to start: wait for the kernel's own answers instead
                    client.kc = self._lease.manager.client()
                    self._kernel_info = await connect_client(
                        client.kc, self.startup_timeout, self._lease.manager.is_alive
                    )
                else:
                    await client.async_start_new_kernel_client()
                # someone restarting the kernel (it is listed) took the run's state
                self._activity = self.kernels.take_over_activity(
                    self._lease.kernel_id,
                    on_restart=lambda: ex.request_stop("the kernel was restarted"),
                )
                client.on_message = self._activity.record
                metrics.observe_kernel_start(self._lease.origin, time.monotonic() - asked_at)
                return client
            except Exception as exc:
                last_error = exc
                self.log.warning(
                    "nbexec: kernel start %d/%d for %s failed: %s",
                    attempt, self.start_attempts, ex.exec_id, exc,
                )
                await self._release_kernel()
        message = f"kernel {self.kernel_name!r} failed to start: {last_error}"
        raise ExecutionFailed(f"error: {message}", message)

    async def _lease_kernel(self) -> KernelLease:
        """Start (or take) a kernel; a stop arriving meanwhile still shuts it down."""
        starting = asyncio.ensure_future(
            self.kernels.start(self.kernel_name, self.notebook_api_path)
        )
        try:
            return await asyncio.shield(starting)
        except asyncio.CancelledError:
            try:
                lease = await starting
            except Exception:
                pass
            else:
                if lease.client is not None:  # a spare's, which nobody will use now
                    lease.client.stop_channels()
                await self.kernels.discard(lease.kernel_id)
            raise

    async def _release_kernel(self) -> None:
        activity, self._activity = self._activity, None
        if activity is not None:
            activity.close()
        client, self._client = self._client, None
        if client is not None and getattr(client, "kc", None) is not None:
            try:
                client.kc.stop_channels()
            except Exception as exc:
                self.log.debug("nbexec: stopping channels failed: %s", exc)
        lease, self._lease = self._lease, None
        self.execution.kernel_id = None
        if lease is not None:
            if lease.client is not None:  # a spare's client never handed to nbclient
                lease.client.stop_channels()
            await self.kernels.discard(lease.kernel_id)

    # -- cells -------------------------------------------------------------------------------

    async def _execute(self) -> None:
        client = await self._start_kernel()
        assert client.kc is not None
        info = self._kernel_info or await client.async_wait_for_reply(client.kc.kernel_info())
        if info is not None and "language_info" in info["content"]:
            self.nb.metadata["language_info"] = info["content"]["language_info"]
        indexes = runnable_cells(self.nb)
        total = len(indexes)
        for number, index in enumerate(indexes, start=1):
            if await self._execute_cell(client, index, f"{number}/{total}", number):
                return  # a clean SystemExit: completed, later cells not run

    async def _execute_cell(
        self, client: NotebookClient, index: int, progress: str, number: int
    ) -> bool:
        """Run one cell; True when it ended the notebook with a clean SystemExit."""
        ex = self.execution
        cell = self.nb.cells[index]
        started = datetime.now(timezone.utc)
        cell.outputs = []
        cell.metadata["nbexec"] = {"start_time": utc_iso(started)}
        ex.progress, ex.last_cell_source = progress, cell.source
        ex.emit("start", progress=progress, cell=copy.deepcopy(cell))
        self._current = (cell, started)
        self._outputs = OutputEvents(self._send_output)
        self.cell_started = True
        try:
            await client.async_execute_cell(cell, index, execution_count=number)
        except CellExecutionError as exc:
            if exc.ename == "SystemExit" and exc.evalue in CLEAN_EXIT_VALUES:
                self._end_cell()
                return True
            self._end_cell()
            raise ExecutionFailed(
                f"error: {exc.ename}: {exc.evalue}",
                cell_error_text(cell.source, exc.ename, exc.evalue),
            ) from None
        except CellTimeoutError:
            message = f"cell timed out after {ex.cell_timeout} seconds"
            self._end_cell_with_error("CellTimeoutError", message)
            raise ExecutionFailed(
                f"error: {message}", cell_error_text(cell.source, "CellTimeoutError", message)
            ) from None
        except DeadKernelError:
            if ex.stop_reason:
                raise asyncio.CancelledError() from None
            message = "the kernel died while the cell was running"
            self._end_cell_with_error("DeadKernelError", message)
            raise ExecutionFailed(
                f"error: {message}", cell_error_text(cell.source, "DeadKernelError", message)
            ) from None
        self._end_cell()
        return False

    def _end_cell(self) -> None:
        """Stamp the running cell's timings and emit its ``end`` event."""
        if self._current is None:
            return
        outputs, self._outputs = self._outputs, None
        if outputs is not None:
            outputs.close()  # the last of the cell's output events come before its end
        cell, started = self._current
        self._current = None
        ended = datetime.now(timezone.utc)
        cell.metadata["nbexec"] = {
            "start_time": utc_iso(started),
            "end_time": utc_iso(ended),
            "duration": round((ended - started).total_seconds(), 6),
        }
        ex = self.execution
        ex.emit("end", progress=ex.progress, cell=copy.deepcopy(cell))

    def _end_cell_with_error(self, ename: str, evalue: str) -> None:
        """Show why the running cell stopped in its outputs, then end it."""
        if self._current is None:
            return
        cell = self._current[0]
        error = nbformat.v4.new_output(
            "error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"]
        )
        cell.outputs.append(error)
        if self._outputs is not None:
            self._outputs.output(error)
        self._end_cell()

    def _on_output(self, msg: dict[str, Any], out: NotebookNode | None) -> None:
        """nbclient processed an IOPub message of the running cell."""
        if self._outputs is not None:
            self._outputs.message(msg, out)

    def _send_output(self, output: dict[str, Any], display_id: str | None) -> None:
        """Emit one ``output`` event of the running cell."""
        ex = self.execution
        if ex.is_done:
            return
        extra = {"display_id": display_id} if display_id else {}
        ex.emit(OUTPUT, progress=ex.progress, output=output, **extra)

    # -- output ------------------------------------------------------------------------------

    async def _write_output(self) -> str | None:
        """Write the notebook as it stands; the error message if that failed."""
        def write() -> None:
            write_atomically(self.output_os_path, nbformat.writes(self.nb))

        try:
            await asyncio.to_thread(write)
        except Exception as exc:
            self.log.error("nbexec: writing %s failed: %s", self.output_os_path, exc)
            self.execution.output_path = None
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            return f"writing the output notebook failed: {reason}"
        self.execution.output_path = self.output_api_path
        self.wrote_output = True
        return None
