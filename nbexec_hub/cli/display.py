"""How the `nbexec` command shows an execution's progress: a tqdm bar, plain lines, or JSON.

The bar (cells done of total, the cell now running) is for a terminal; when stderr is not
one, each cell becomes one plain line, so logs of cron jobs and CI stay readable. With
``--json`` every event goes to stdout as one JSON line and nothing else is printed there.
With ``--log-output`` the cells' outputs are shown as they arrive: printed text goes to
stdout or stderr as the kernel sent it, any other output is one line saying what it is.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from tqdm import tqdm

from ..client import Event
from ..protocol import FINAL_EVENTS, NOTEBOOK_START, OUTPUT

#: the bar: running cell, percentage, bar, cells done of total, time spent
BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} cells [{elapsed}]"
DESC_WIDTH = 32


def first_line(source: str | list[str] | None, width: int = 60) -> str:
    """The first non-blank line of a cell's source, shortened to ``width``."""
    if isinstance(source, list):
        source = "".join(source)
    for line in (source or "").splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= width else line[: width - 1] + "…"
    return ""


def parse_progress(value: str | None) -> tuple[int, int] | None:
    """``"3/10"`` as ``(3, 10)``; None when absent or malformed."""
    try:
        current, total = (value or "").split("/")
        return int(current), int(total)
    except ValueError:
        return None


def output_line(output: dict[str, Any]) -> str:
    """One line saying what a (non-stream) output is, e.g. ``[display_data: image/png]``."""
    kind = output.get("output_type", "output")
    if kind == "error":
        return f"[error: {output.get('ename')}: {output.get('evalue')}]"
    data = output.get("data")
    if isinstance(data, dict) and data:
        return f"[{kind}: {', '.join(data)}]"
    return f"[{kind}]"


def print_json(obj: Any, out: TextIO | None = None) -> None:
    """One JSON document on one line, flushed (for ``--json`` readers)."""
    out = out or sys.stdout
    out.write(json.dumps(obj) + "\n")
    out.flush()


def print_answer(as_json: bool, model: Any, text: str) -> None:
    """A command's answer: ``model`` as JSON with ``--json``, else ``text`` for people."""
    if as_json:
        print_json(model)
    else:
        print(text)


class ProgressView:
    """Receives every progress event (an `EventCallback`) and renders it."""

    def __init__(
        self,
        mode: str,
        err: TextIO | None = None,
        out: TextIO | None = None,
        *,
        log_output: bool = False,
    ) -> None:
        if mode not in ("bar", "lines", "json"):
            raise ValueError(f"unknown progress mode {mode!r}")
        self.mode = mode
        self.err = err or sys.stderr
        self.out = out or sys.stdout
        #: show the ``output`` events (``--log-output``)
        self.log_output = log_output
        #: the files whose last write did not end its line
        self._open_lines: set[int] = set()
        self.exec_id: str | None = None
        self.final: Event | None = None
        self._bar: tqdm | None = None

    @classmethod
    def for_terminal(cls, as_json: bool, *, log_output: bool = False) -> ProgressView:
        """JSON when asked, a bar when stderr is a terminal, plain lines otherwise."""
        if as_json:
            return cls("json")
        return cls("bar" if sys.stderr.isatty() else "lines", log_output=log_output)

    def __call__(self, event: Event) -> None:
        execution = event.get("execution") or {}
        if self.exec_id is None and execution.get("exec_id"):
            self.exec_id = execution["exec_id"]
        name = event.get("event")
        if name in FINAL_EVENTS:
            self.final = event
        if self.mode == "json":
            print_json(event, self.out)
            return
        if name == NOTEBOOK_START:
            self._say(f"started {execution.get('exec_id')}: {execution.get('path')}")
        elif name in ("start", "end"):
            self._cell(name, event)
        elif name == OUTPUT and self.log_output:
            self._output(event.get("output") or {})
        elif name in FINAL_EVENTS:
            self.close()

    def _cell(self, name: str, event: Event) -> None:
        progress = parse_progress(event.get("progress"))
        text = first_line((event.get("cell") or {}).get("source"))
        if self.mode == "lines":
            if name == "start":
                label = f"[{progress[0]}/{progress[1]}]" if progress else "[?]"
                self._say(f"{label} {text}")
            return
        if progress is None:
            return
        current, total = progress
        if self._bar is None:
            self._bar = tqdm(total=total, file=self.err, dynamic_ncols=True, leave=True,
                             bar_format=BAR_FORMAT)
        if self._bar.total != total:
            self._bar.total = total
        # a started cell is running, an ended one is done
        self._bar.n = current if name == "end" else current - 1
        # a fixed width keeps the bar from jumping as cells change
        self._bar.set_description_str(first_line(text, DESC_WIDTH).ljust(DESC_WIDTH),
                                      refresh=False)
        self._bar.refresh()

    def _output(self, output: dict[str, Any]) -> None:
        if output.get("output_type") == "stream":
            text = output.get("text")
            if isinstance(text, list):
                text = "".join(text)
            if text:  # as the kernel sent it, going on with a line it left open
                self._write(self.err if output.get("name") == "stderr" else self.out, text)
        else:
            target = self.err if output.get("output_type") == "error" else self.out
            self._write(target, output_line(output) + "\n", own_line=True)

    def _say(self, line: str) -> None:
        self._write(self.err, line + "\n", own_line=True)

    def _write(self, file: TextIO, text: str, own_line: bool = False) -> None:
        """Write and flush (a pipe passes it on at once) without breaking the bar; text
        that needs its ``own_line`` starts a new one when a printed line was left open."""
        if own_line and id(file) in self._open_lines:
            text = "\n" + text
        if self._bar is not None:
            with tqdm.external_write_mode(file=self.err):
                file.write(text)
                file.flush()
        else:
            file.write(text)
            file.flush()
        if text.endswith("\n"):
            self._open_lines.discard(id(file))
        else:
            self._open_lines.add(id(file))

    def close(self) -> None:
        """End the bar (if any) and any line printed text left open, so that later output
        starts on a fresh line."""
        for file in (self.out, self.err):
            if id(file) in self._open_lines:
                self._write(file, "\n")
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def describe(model: dict[str, Any]) -> str:
    """An execution model as aligned ``key: value`` lines."""
    width = max((len(k) for k in model), default=0)
    lines = []
    for key, value in model.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value)
        lines.append(f"{key.ljust(width)}  {value}")
    return "\n".join(lines)


def table(rows: list[list[str]], header: list[str]) -> str:
    """Rows as a left-aligned text table under ``header``."""
    cells = [header] + rows
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in cells
    )
