"""Checkpoints: the output notebook rewritten while an execution runs, so a dying server
leaves the outputs of every finished cell on disk.

After each cell the notebook is written again, at most every ``min_interval`` seconds
(counted from the first cell's start; a cell ending sooner is written when that time is
up, so a notebook done within it is only written at its end), and during a long cell at
least every ``max_interval`` seconds with the outputs it has so far. Each write is atomic (a
temporary file renamed over the output), runs on a thread, and never overlaps the next
one nor the final write of the run (`Checkpointer.close` comes first).

Serializing happens on the event loop, where nbclient changes the notebook, but only
for what changed: a cell that ended is serialized once and reused in every later
checkpoint, so a checkpoint costs the running cell, not the whole notebook.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from nbformat import NotebookNode

from . import metrics
from .store import write_atomically


def _cell_state(cell: NotebookNode) -> tuple[Any, Any]:
    """(start_time, end_time) of the cell's ``metadata.nbexec`` as it stands."""
    stamps = cell.get("metadata", {}).get("nbexec") or {}
    return stamps.get("start_time"), stamps.get("end_time")


class Checkpointer:
    """Rewrites one execution's output notebook while the execution runs."""

    def __init__(
        self,
        nb: NotebookNode,
        output_os_path: str,
        *,
        min_interval: float,
        max_interval: float,
        log: logging.Logger,
    ) -> None:
        self.nb = nb
        self.output_os_path = output_os_path
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.log = log
        #: id(cell) -> (its state when serialized, its JSON)
        self._cells: dict[int, tuple[tuple[Any, Any], str]] = {}
        self._last_text: str | None = None
        self._last_write = time.monotonic()
        self._cell_ended = False  # since the last write
        self._running = False  # a cell has started: long-cell checkpoints apply
        self._wake = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        #: how many checkpoints were written (for tests and logs)
        self.written = 0

    def on_event(self, seq: int, event: dict[str, Any]) -> None:
        """An execution listener: cells starting and ending drive the checkpoints."""
        name = event.get("event")
        if name == "start":
            if not self._running:  # the clock starts with the first cell, not the kernel
                self._last_write = time.monotonic()
            self._running = True
        elif name == "end":
            self._cell_ended = True
        else:
            return
        if self._task is None and not self._closed and self.max_interval > 0:
            self._task = asyncio.ensure_future(self._run())
        self._wake.set()

    async def close(self) -> None:
        """No more checkpoints; waits for one being written (the final write comes next)."""
        self._closed = True
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        self._cells.clear()  # a finished execution keeps no copy of its notebook
        self._last_text = None

    # -- the loop ----------------------------------------------------------------------------

    def _due_in(self) -> float | None:
        """Seconds until the next checkpoint is due; None while nothing calls for one."""
        since = time.monotonic() - self._last_write
        if self._cell_ended:
            return max(0.0, self.min_interval - since)
        if self._running:
            return max(0.0, self.max_interval - since)
        return None

    async def _run(self) -> None:
        while not self._closed:
            due = self._due_in()
            if due is None or due > 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), due)
                except asyncio.TimeoutError:
                    pass
                continue
            self._cell_ended = False
            self._last_write = time.monotonic()
            await self._write()

    async def _write(self) -> None:
        try:
            text = self._serialize()
        except Exception as exc:  # a checkpoint must never end the run
            self.log.warning("nbexec: checkpoint of %s not serializable: %s",
                             self.output_os_path, exc)
            metrics.count_checkpoint(written=False)
            return
        if text == self._last_text:
            return
        try:
            await asyncio.to_thread(write_atomically, self.output_os_path, text)
        except Exception as exc:
            self.log.warning("nbexec: checkpoint of %s failed: %s", self.output_os_path, exc)
            metrics.count_checkpoint(written=False)
            return
        self._last_text = text
        self.written += 1
        metrics.count_checkpoint(written=True)

    def _serialize(self) -> str:
        """The notebook as JSON, reusing the JSON of cells that did not change."""
        parts = []
        for cell in self.nb.cells:
            state = _cell_state(cell)
            cached = self._cells.get(id(cell))
            running = state[0] is not None and state[1] is None
            if cached is None or cached[0] != state or running:
                cached = (state, json.dumps(cell, ensure_ascii=False))
                self._cells[id(cell)] = cached
            parts.append(cached[1])
        rest = {k: v for k, v in self.nb.items() if k != "cells"}
        head = json.dumps(rest, ensure_ascii=False)
        return '{"cells": [' + ",\n".join(parts) + "], " + head[1:] + "\n"
