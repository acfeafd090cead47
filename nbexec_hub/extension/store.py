"""The execution store: every execution's record and event log, in files that outlive the server.

One folder per server (``ExecutionExtensionApp.store_path``), format 2::

    format.json            {"format": 2}
    owner.json             the host and process using the folder (one server at a time)
    executions/<id>.json   the record: {"model", "output_path", "next_seq"}, replaced atomically
    executions/<id>.log    the event log: one {"seq", "event"} JSON object per line, appended

Plain files rather than SQLite: home folders are often on NFS, where SQLite's locks are
unreliable (IPython's ``history.sqlite`` hangs there), WAL does not work at all, and a
deleted row does not give its space back without a VACUUM. Here only one process writes,
a record is replaced with a rename (atomic on NFS too) and a log only grows by appends,
so a reader never sees half a record and a crash loses at most the last line of a log.

All writing happens on one thread fed by a queue, in batches: the event loop only
enqueues, so neither a request nor a cell ever waits for the disk.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: the current layout of the folder (see `upgrade` for the older ones)
FORMAT = 2
#: how long the writer gathers operations before writing them (seconds)
BATCH_SECONDS = 0.05
#: at most this many events, or about this many bytes, per replayed page
PAGE_EVENTS = 500
PAGE_BYTES = 4 * 1024 * 1024


class StoreUnavailable(Exception):
    """The folder cannot hold the store (not writable, newer format, used by another server)."""


def write_atomically(path: str, text: str, *, sync: bool = False) -> None:
    """Write through a temporary file in the same folder, then rename it over ``path``
    (the execution store's files and the output notebooks alike)."""
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f".{name}.{uuid.uuid4().hex}.tmp")
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_json(path: str) -> Any:
    """A JSON file's content."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def log_line(seq: int, event: dict[str, Any]) -> str:
    """One line of an event log."""
    return json.dumps({"seq": seq, "event": event}, separators=(",", ":")) + "\n"


@dataclass
class StoredExecution:
    """One execution as found in the store at start-up."""

    record: dict[str, Any]
    #: the ``seq`` after the last event of its log
    next_seq: int
    #: the last event of its log (None for an empty log)
    last_event: dict[str, Any] | None


def _process_start(pid: int) -> str | None:
    """When a process started (from /proc; None where unknown), to tell a reused pid."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _owner_alive(owner: dict[str, Any]) -> bool:
    """Whether the server that wrote ``owner.json`` still runs (known only on this host)."""
    pid = owner.get("pid")
    if owner.get("host") != socket.gethostname() or not isinstance(pid, int):
        return False
    if pid == os.getpid():
        return False  # a restarted container often gets the same pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    started = owner.get("started")
    return started is None or _process_start(pid) == started


class ExecutionStore:
    """The store in one folder: loading at start-up, batched writes, replays."""

    def __init__(self, path: str, log: logging.Logger) -> None:
        self.path = os.path.abspath(path)
        self.folder = os.path.join(self.path, "executions")
        self.log = log
        self._queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._failing = False
        #: (exec_id, seq) -> byte offset where that seq's line starts (paged replays)
        self._offsets: OrderedDict[tuple[str, int], int] = OrderedDict()
        self._offsets_lock = threading.Lock()

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str, log: logging.Logger) -> ExecutionStore:
        """Open (creating or upgrading) the store at ``path``; StoreUnavailable if it cannot be."""
        from .store_format import upgrade  # the older layouts only matter here

        store = cls(path, log)
        try:
            os.makedirs(store.folder, exist_ok=True)
            owner_file = os.path.join(store.path, "owner.json")
            if os.path.exists(owner_file):
                try:
                    owner = read_json(owner_file)
                except ValueError:
                    owner = None  # unreadable: nobody to respect
                if isinstance(owner, dict) and _owner_alive(owner):
                    raise StoreUnavailable(
                        f"it is in use by another server (pid {owner.get('pid')} on this host)"
                    )
            upgrade(store.path, log)
            me = {"host": socket.gethostname(), "pid": os.getpid(),
                  "started": _process_start(os.getpid()), "since": time.time()}
            write_atomically(owner_file, json.dumps(me))  # also proves the folder is writable
        except OSError as exc:
            raise StoreUnavailable(exc.strerror or str(exc)) from None
        except ValueError as exc:
            raise StoreUnavailable(f"it holds an unreadable file: {exc}") from None
        store._thread = threading.Thread(target=store._write_loop, name="nbexec-store", daemon=True)
        store._thread.start()
        return store

    def load(self) -> list[StoredExecution]:
        """Every execution in the store, oldest first (unreadable ones are logged and skipped)."""
        found = []
        for name in os.listdir(self.folder):
            if not name.endswith(".json"):
                continue
            exec_id = name[: -len(".json")]
            try:
                record = read_json(os.path.join(self.folder, name))
                model = record["model"]
                if model.get("exec_id") != exec_id:
                    raise ValueError("its exec_id does not match its name")
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                self.log.error("nbexec: skipping unreadable execution record %s: %s", name, exc)
                continue
            next_seq, last = int(record.get("next_seq") or 0), None
            status = model.get("status")
            if status not in ("completed",) and not str(status).startswith("error"):
                next_seq, last = self._log_end(exec_id)  # it was running: its log says how far
            found.append(StoredExecution(record, next_seq, last))
        found.sort(key=lambda s: (s.record.get("created") or 0, s.record["model"]["exec_id"]))
        return found

    def _log_end(self, exec_id: str) -> tuple[int, dict[str, Any] | None]:
        """The seq after the last readable event of a log, and that event."""
        next_seq, last = 0, None
        try:
            with open(self._log_path(exec_id), "rb") as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                        next_seq, last = entry["seq"] + 1, entry["event"]
                    except (ValueError, KeyError, TypeError):
                        continue  # a line cut short by a crash
        except FileNotFoundError:
            pass
        return next_seq, last

    def _record_path(self, exec_id: str) -> str:
        return os.path.join(self.folder, f"{exec_id}.json")

    def _log_path(self, exec_id: str) -> str:
        return os.path.join(self.folder, f"{exec_id}.log")

    # -- writing (from the event loop: enqueue only) ------------------------------------------

    def append(self, exec_id: str, seq: int, event: dict[str, Any]) -> None:
        """Add an event to an execution's log (soon, on the writer thread)."""
        self._queue.put(("append", exec_id, seq, event))

    def save(self, exec_id: str, record: dict[str, Any]) -> None:
        """Replace an execution's record (soon, on the writer thread)."""
        self._queue.put(("save", exec_id, record))

    def delete(self, exec_id: str) -> None:
        """Remove an execution's record and log (soon, on the writer thread)."""
        self._queue.put(("delete", exec_id))

    def after_writes(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the event loop once everything enqueued so far is written."""
        loop = asyncio.get_running_loop()
        self._queue.put(("notify", lambda: loop.call_soon_threadsafe(callback)))

    def wait_written(self, timeout: float = 30.0) -> None:
        """Block until everything enqueued so far is written (start-up only, off the loop)."""
        written = threading.Event()
        self._queue.put(("notify", written.set))
        written.wait(timeout)

    async def flush(self) -> None:
        """Wait until everything enqueued so far is written."""
        done = asyncio.Event()
        self.after_writes(done.set)
        await done.wait()

    async def close(self) -> None:
        """Write what is queued, then stop the writer thread."""
        if self._thread is None:
            return
        self._queue.put(("stop",))
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    # -- the writer thread ---------------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            ops = [self._queue.get()]
            time.sleep(BATCH_SECONDS)
            while True:
                try:
                    ops.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                stop = self._write_batch(ops)
            except Exception:  # a bug here must not stop every later write
                self.log.exception("nbexec: the execution store's writer failed")
                stop = any(op[0] == "stop" for op in ops)
            del ops  # while waiting for more, hold on to nothing (executions are freed)
            if stop:
                return

    def _write_batch(self, ops: list[tuple[Any, ...]]) -> bool:
        """Write a batch of operations; True when one of them says stop."""
        appends: dict[str, list[str]] = {}
        saves: dict[str, dict[str, Any]] = {}
        notify: list[Callable[[], None]] = []
        stop = False
        for op in ops:
            kind = op[0]
            if kind == "append":
                appends.setdefault(op[1], []).append(log_line(op[2], op[3]))
            elif kind == "save":
                saves[op[1]] = op[2]
            elif kind == "delete":
                appends.pop(op[1], None)
                saves.pop(op[1], None)
                self._guarded("deleting", op[1], self._remove, op[1])
            elif kind == "notify":
                notify.append(op[1])
            elif kind == "stop":
                stop = True
        for exec_id, lines in appends.items():
            self._guarded("appending to the log of", exec_id, self._append_lines, exec_id, lines)
        for exec_id, record in saves.items():
            self._guarded("saving", exec_id, self._write_record, exec_id, record)
        for callback in notify:
            try:
                callback()
            except RuntimeError:  # the event loop is closed: nobody waits any more
                pass
        return stop

    def _guarded(self, doing: str, exec_id: str, func: Callable[..., None], *args: Any) -> None:
        """Run a write; log a failure once (until writing works again), never raise."""
        try:
            func(*args)
        except Exception as exc:
            if not self._failing:
                self.log.error(
                    "nbexec: %s execution %s in the store %s failed: %s "
                    "(further failures are logged at debug level until a write succeeds)",
                    doing, exec_id, self.path, exc,
                )
            else:
                self.log.debug("nbexec: %s execution %s failed: %s", doing, exec_id, exc)
            self._failing = True
        else:
            self._failing = False

    def _append_lines(self, exec_id: str, lines: list[str]) -> None:
        with open(self._log_path(exec_id), "a", encoding="utf-8") as f:
            f.write("".join(lines))

    def _write_record(self, exec_id: str, record: dict[str, Any]) -> None:
        write_atomically(self._record_path(exec_id), json.dumps(record), sync=True)

    def _remove(self, exec_id: str) -> None:
        for path in (self._record_path(exec_id), self._log_path(exec_id)):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    # -- replaying -------------------------------------------------------------------------------

    async def read_events(self, exec_id: str, start_seq: int) -> list[tuple[int, dict[str, Any]]]:
        """The next page of an execution's logged events from ``start_seq`` on (empty: the end)."""
        return await asyncio.to_thread(self._read_page, exec_id, start_seq)

    def _read_page(self, exec_id: str, start_seq: int) -> list[tuple[int, dict[str, Any]]]:
        page: list[tuple[int, dict[str, Any]]] = []
        size = 0
        with self._offsets_lock:
            offset = self._offsets.pop((exec_id, start_seq), 0)
        try:
            with open(self._log_path(exec_id), "rb") as f:
                f.seek(offset)
                while len(page) < PAGE_EVENTS and size < PAGE_BYTES:
                    line = f.readline()
                    if not line:
                        break
                    try:
                        entry = json.loads(line)
                        seq, event = entry["seq"], entry["event"]
                    except (ValueError, KeyError, TypeError):
                        continue
                    if seq >= start_seq:
                        page.append((seq, event))
                        size += len(line)
                if page:
                    with self._offsets_lock:
                        self._offsets[(exec_id, page[-1][0] + 1)] = f.tell()
                        while len(self._offsets) > 256:
                            self._offsets.popitem(last=False)
        except FileNotFoundError:
            return []
        return page
