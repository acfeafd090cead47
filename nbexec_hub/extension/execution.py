"""One notebook execution: its model, its status and its log of progress events.

The log is append-only with a sequence number per event, so any number of readers
can replay it from any point and wait for more without ever slowing the kernel
down: the producer never waits for a reader.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

#: the events that end an execution's log
from ..protocol import FINAL_EVENTS, NOTEBOOK_COMPLETE, NOTEBOOK_ERROR
from . import metrics


def now() -> float:
    """The current POSIX time: the one clock of the extension (a seam for tests)."""
    return time.time()


def new_exec_id() -> str:
    """A fresh execution id (UUID4)."""
    return str(uuid.uuid4())


class Execution:
    """A notebook run: what was asked, how far it got, and everything it reported."""

    def __init__(
        self,
        *,
        path: str,
        params: dict[str, Any],
        output_path: str | None,
        overwrite: bool,
        jupyter_kernel: str | None,
        cell_timeout: int | None,
        max_events: int = 10000,
    ) -> None:
        self.exec_id = new_exec_id()
        self.path = path
        self.params = params
        self.output_path = output_path
        self.overwrite = overwrite
        self.jupyter_kernel = jupyter_kernel
        self.cell_timeout = cell_timeout
        self.status = "initializing"
        self.progress: str | None = None
        self.last_cell_source: str | None = None
        self.started_at: float | None = None
        self.completed_at: float | None = None
        #: the kernel running it (an id of the server's kernel manager) while it runs
        self.kernel_id: str | None = None
        #: the kernel name actually used
        self.kernel_name: str | None = None
        #: whether a spare kernel (forked before the run asked for it) ran it
        self.warm_kernel = False
        #: why it is being stopped from outside (shutdown action, deletion, server stop)
        self.stop_reason: str | None = None
        #: the asyncio task driving it, owned by the manager
        self.task: asyncio.Task[None] | None = None
        #: true while the runner may be cancelled (not before it starts, not while it ends)
        self.cancellable = False

        # The first event (notebook_start) is always kept; later ones are bounded.
        self._head: tuple[int, dict[str, Any]] | None = None
        self._tail: deque[tuple[int, dict[str, Any]]] = deque(maxlen=max(1, max_events - 1))
        self._next_seq = 0
        self._changed = asyncio.Event()
        self.finished = asyncio.Event()
        #: called with ``(seq, event)`` after each event (the store, the checkpoints)
        self.listeners: list[Callable[[int, dict[str, Any]], None]] = []
        #: whether the events after the first left memory (they replay from the store)
        self.events_dropped = False

    @classmethod
    def restored(cls, model: dict[str, Any], next_seq: int, max_events: int = 10000) -> Execution:
        """An execution of an earlier server life, from its stored model (no events in memory)."""
        ex = cls(
            path=model["path"],
            params=model.get("params") or {},
            output_path=model.get("output_path"),
            overwrite=bool(model.get("overwrite")),
            jupyter_kernel=model.get("jupyter_kernel"),
            cell_timeout=model.get("cell_timeout"),
            max_events=max_events,
        )
        ex.exec_id = model["exec_id"]
        ex.status = model.get("status") or "initializing"
        for name in ("progress", "last_cell_source", "started_at", "completed_at", "kernel_name"):
            setattr(ex, name, model.get(name))
        ex.warm_kernel = bool(model.get("warm_kernel"))
        ex._next_seq = next_seq
        ex.events_dropped = True
        if ex.status == "completed" or ex.status.startswith("error"):
            ex.finished.set()
        return ex

    # -- the model -------------------------------------------------------------------------

    def model(self) -> dict[str, Any]:
        """The execution model of the contract (A.1), plus a few extra fields."""
        return {
            "exec_id": self.exec_id,
            "path": self.path,
            "params": self.params,
            "output_path": self.output_path,
            "overwrite": self.overwrite,
            "jupyter_kernel": self.jupyter_kernel,
            "cell_timeout": self.cell_timeout,
            "status": self.status,
            "progress": self.progress,
            "last_cell_source": self.last_cell_source,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "kernel_id": self.kernel_id,
            "kernel_name": self.kernel_name,
            "warm_kernel": self.warm_kernel,
        }

    @property
    def is_done(self) -> bool:
        """Whether the final event has been emitted."""
        return self.finished.is_set()

    def request_stop(self, reason: str) -> None:
        """Ask a running execution to stop with ``reason`` (the first reason given stands);
        its runner is cancelled at once when it may be, else it sees the reason itself."""
        if self.is_done or self.stop_reason is not None:
            return
        self.stop_reason = reason
        if self.task is not None and self.cancellable:
            self.task.cancel()

    def mark_started(self) -> None:
        """It got a slot: from now on it is executing."""
        self.status = "executing"
        self.started_at = now()

    # -- the event log ---------------------------------------------------------------------

    def emit(self, name: str, **extra: Any) -> dict[str, Any]:
        """Append an event (``event``, ``timestamp``, then ``extra``) and wake readers."""
        if self.is_done:
            raise RuntimeError(f"execution {self.exec_id} already ended")
        event: dict[str, Any] = {"event": name, "timestamp": now()}
        event.update(extra)
        entry = (self._next_seq, event)
        self._next_seq += 1
        if self._head is None:
            self._head = entry
        else:
            self._tail.append(entry)
        if name in FINAL_EVENTS:
            self.finished.set()
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        metrics.on_event(self, event)
        for listener in self.listeners:
            listener(entry[0], event)
        return event

    def finish(self, status: str, *, error: str | None = None) -> dict[str, Any]:
        """End it: set the final status and emit ``notebook_complete``/``notebook_error``."""
        self.status = status
        self.completed_at = now()
        self.kernel_id = None
        if error is None:
            return self.emit(NOTEBOOK_COMPLETE, execution=self.model())
        return self.emit(
            NOTEBOOK_ERROR, output_path=self.output_path, error=error, execution=self.model()
        )

    @property
    def next_seq(self) -> int:
        """The ``seq`` the next event will get."""
        return self._next_seq

    def events_since(self, seq: int) -> list[tuple[int, dict[str, Any]]]:
        """The kept events with a ``seq`` of at least ``seq``, oldest first."""
        entries = [] if self._head is None else [self._head]
        entries.extend(self._tail)
        return [entry for entry in entries if entry[0] >= seq]

    def drop_events(self) -> None:
        """Let the events go from memory (the store holds them); the first one stays."""
        self._tail.clear()
        self.events_dropped = True

    def changed(self) -> asyncio.Event:
        """An event set at the next emit: take it before reading, then wait on it."""
        return self._changed
