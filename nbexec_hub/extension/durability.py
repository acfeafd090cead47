"""What outlives the server: executions' records and logs in the store, and their retention.

`ExecutionHistory` stands between the ExecutionManager and the `ExecutionStore`. It
persists each execution's events and model as they happen (the store writes them on its
own thread), lets a finished execution's events leave memory once they are on disk
(replays then read the store), brings the executions of an earlier server life back at
start-up (ending those that were running as interrupted), and decides which old
records retention forgets. Without a store (a folder that cannot be written) it keeps
everything in memory, as the server did before.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from traitlets import Float, Integer
from traitlets.config import LoggingConfigurable

from ..protocol import CELL_START, FINAL_EVENTS, NOTEBOOK_START, OUTPUT
from .execution import Execution, now
from .runner import cell_error_text
from .store import ExecutionStore

INTERRUPTED = "interrupted: the server stopped"
#: events after which the stored model is brought up to date (cheap: not per output)
_RECORD_EVENTS = (NOTEBOOK_START, CELL_START, *FINAL_EVENTS)


class ExecutionHistory(LoggingConfigurable):
    """Persistence, restore and retention of executions, over a store or none.

    Configured as ``c.ExecutionHistory.…`` (retention and memory); built with ``parent=``.
    """

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

    def __init__(self, store: ExecutionStore | None, *, root_dir: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.store = store
        self.root_dir = root_dir
        #: finished executions whose events are still in memory, oldest first
        self._recent: deque[Execution] = deque()
        #: the store listener of each tracked execution, by id
        self._persisting: dict[str, Callable[[int, dict[str, Any]], None]] = {}

    # -- start-up ----------------------------------------------------------------------------

    def restore(self, max_events: int) -> list[Execution]:
        """The stored executions, oldest first; those that were running end as interrupted."""
        if self.store is None:
            return []
        restored, interrupted = [], False
        for stored in self.store.load():
            record = stored.record
            try:
                ex = Execution.restored(record["model"], stored.next_seq, max_events)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                self.log.error("nbexec: skipping a stored execution that does not load: %r", exc)
                continue
            self.track(ex, record.get("output_path"), created=record.get("created"))
            if not ex.is_done:
                self._interrupt(ex, record.get("output_path"), stored.last_event)
                interrupted = True
            restored.append(ex)
        if interrupted:  # their final events are on disk before the first replay
            self.store.wait_written()
        if restored:
            self.log.info("nbexec: %d executions restored from %s", len(restored), self.store.path)
        return restored

    def _interrupt(
        self, ex: Execution, output_api_path: str | None, last_event: dict[str, Any] | None
    ) -> None:
        """End an execution the server stopped under: its output is the last checkpoint."""
        ex.output_path = None
        if ex.progress is not None and output_api_path is not None:
            if os.path.isfile(os.path.join(self.root_dir, *output_api_path.split("/"))):
                ex.output_path = output_api_path
        in_cell = last_event is not None and last_event.get("event") in (CELL_START, OUTPUT)
        if in_cell and ex.last_cell_source is not None:
            error = cell_error_text(ex.last_cell_source, "ExecutionShutdown", INTERRUPTED)
        else:
            error = f"ExecutionShutdown: {INTERRUPTED}"
        ex.finish(f"error: {INTERRUPTED}", error=error)

    # -- persisting ------------------------------------------------------------------------

    def track(
        self, ex: Execution, output_api_path: str | None, created: float | None = None
    ) -> None:
        """Persist this execution's events and model from now on."""
        if self.store is None:
            return
        store, created = self.store, created if created is not None else time.time()

        def persist(seq: int, event: dict[str, Any]) -> None:
            store.append(ex.exec_id, seq, event)
            name = event["event"]
            if name in _RECORD_EVENTS:
                record = {"model": ex.model(), "output_path": output_api_path,
                          "next_seq": seq + 1, "created": created}
                store.save(ex.exec_id, record)
            if name in FINAL_EVENTS and not ex.events_dropped:
                store.after_writes(lambda: self._on_disk(ex))

        ex.listeners.append(persist)
        self._persisting[ex.exec_id] = persist

    def _on_disk(self, ex: Execution) -> None:
        """A finished execution's log is all on disk: keep only the latest logs in memory."""
        if ex.events_dropped or ex.exec_id not in self._persisting:  # forgotten meanwhile
            return
        self._recent.append(ex)
        while len(self._recent) > self.logs_in_memory:
            self._recent.popleft().drop_events()

    async def events_since(self, ex: Execution, seq: int) -> list[tuple[int, dict[str, Any]]]:
        """The next events of ``ex`` from ``seq`` on: from memory, else a page of the store."""
        if ex.events_dropped and self.store is not None:
            return await self.store.read_events(ex.exec_id, seq)
        return ex.events_since(seq)

    def forget(self, executions: list[Execution]) -> None:
        """Remove executions from the store (their events too), now and for good: events
        they still emit (a deleted run being stopped) are no longer persisted."""
        if not executions:
            return
        for ex in executions:
            persist = self._persisting.pop(ex.exec_id, None)
            if persist is not None and persist in ex.listeners:
                ex.listeners.remove(persist)
            if self.store is not None:
                self.store.delete(ex.exec_id)
        ids = {ex.exec_id for ex in executions}
        self._recent = deque(ex for ex in self._recent if ex.exec_id not in ids)

    # -- retention -----------------------------------------------------------------------------

    def expired(self, executions: list[Execution]) -> list[Execution]:
        """The executions retention forgets: finished executions past the age, or beyond the count
        (the oldest first); running ones are never forgotten."""
        finished = [ex for ex in executions if ex.is_done]
        gone: list[Execution] = []
        if self.retention_max_age > 0:
            limit = now() - self.retention_max_age
            gone = [ex for ex in finished if (ex.completed_at or ex.started_at or 0) < limit]
        if self.retention_max_count > 0:
            gone_ids = {ex.exec_id for ex in gone}
            keep = [ex for ex in finished if ex.exec_id not in gone_ids]
            excess = len(keep) - self.retention_max_count
            if excess > 0:
                keep.sort(key=lambda ex: ex.completed_at or 0)
                gone += keep[:excess]
        return gone

    async def close(self) -> None:
        """Write everything still queued (server shutdown)."""
        if self.store is not None:
            await self.store.close()
