"""Live output: a running cell's outputs as ``output`` progress events (contract A.5).

nbclient builds a cell's outputs from the kernel's IOPub messages and hands the cell over
only when it ends. `LiveNotebookClient` also tells a hook about each output message as
nbclient processes it; `OutputEvents` turns those messages into ``output`` events. Stream
text is coalesced: at most one event per stream every ``OUTPUT_INTERVAL`` seconds, and
nothing waits longer than that to be sent, so a cell printing 20,000 lines in a burst
sends a few dozen events and a cell printing a line a second shows each line at once.

The kinds of ``output`` sent: the nbformat output as it will stand in the notebook
(``stream`` with the text since the previous event of that stream, ``display_data``,
``execute_result``, ``error``), ``{"output_type": "clear_output"}``, and
``{"output_type": "update_display_data", "data", "metadata"}`` for updates of an earlier
display. Outputs made or updated through a display id name it in the event's
``display_id``, so that a reader can apply later updates.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nbclient import NotebookClient
from nbformat import NotebookNode
from traitlets import Callable as CallableTrait

#: the longest an output waits to be sent, and the shortest time between two sends
OUTPUT_INTERVAL = 0.1

#: message types that nbclient turns into an output of the cell
OUTPUT_MESSAGES = ("stream", "display_data", "execute_result", "error")

SendOutput = Callable[[dict[str, Any], "str | None"], None]


def display_id_of(msg: dict[str, Any]) -> str | None:
    """The display id an IOPub message carries (``transient`` may be null)."""
    transient = msg["content"].get("transient")
    return transient.get("display_id") if transient else None


class LiveNotebookClient(NotebookClient):
    """nbclient's client that also calls ``on_output`` for each output message of a cell."""

    on_output = CallableTrait(
        default_value=None,
        allow_none=True,
        help=(
            "Called with (msg, output) for each IOPub message of the running cell that "
            "nbclient processed: output is the nbformat output it appended, or None "
            "(clear_output, update_display_data, messages that make no output)."
        ),
    ).tag(config=True)

    on_message = CallableTrait(
        default_value=None,
        allow_none=True,
        help="Called with each IOPub message of the running cell before nbclient processes it.",
    ).tag(config=True)

    def process_message(
        self, msg: dict[str, Any], cell: NotebookNode, cell_index: int
    ) -> NotebookNode | None:
        """``on_message``, nbclient's processing (which raises at the end of the cell), then
        ``on_output``."""
        if self.on_message is not None:
            try:
                self.on_message(msg)
            except Exception:  # bookkeeping must never break the run
                self.log.exception("nbexec: recording a kernel message failed")
        out = super().process_message(msg, cell, cell_index)
        # an ipywidgets Output widget capturing this cell's messages takes them away from it
        captured = self.output_hook_stack.get(msg["parent_header"].get("msg_id"))
        if self.on_output is not None and not captured:
            try:
                self.on_output(msg, out)
            except Exception:  # a live view must never break the run
                self.log.exception("nbexec: sending a live output failed")
        return out


@dataclass
class _Pending:
    """An output waiting to be sent; a stream's text is kept in pieces until then."""

    output: dict[str, Any]
    display_id: str | None = None
    texts: list[str] = field(default_factory=list)


class OutputEvents:
    """One running cell's outputs, sent through ``send(output, display_id)`` as they come.

    Everything goes out at most ``interval`` seconds after it arrived, and one send never
    follows another by less than ``interval``: what arrives in between waits, the text of
    one stream joined into one output. A clear drops the outputs not yet sent.
    """

    def __init__(self, send: SendOutput, *, interval: float = OUTPUT_INTERVAL) -> None:
        self._send = send
        self.interval = interval
        self._pending: list[_Pending] = []
        #: a clear to send before the pending outputs
        self._clear = False
        #: clear_output(wait=True) seen: clear when the next output arrives (as nbclient does)
        self._clear_on_next = False
        #: outputs readers have been sent since the last clear
        self._shown = 0
        self._last_send = float("-inf")
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    # -- what arrives ---------------------------------------------------------------------

    def message(self, msg: dict[str, Any], out: NotebookNode | None) -> None:
        """One IOPub message of the cell and the output nbclient made of it (if any)."""
        msg_type = msg["msg_type"]
        if msg_type == "clear_output":
            if msg["content"].get("wait"):
                self._clear_on_next = True
            else:
                self._clear_now()
            self._schedule()
        elif msg_type == "update_display_data":
            display_id = display_id_of(msg)
            if display_id:
                self.update(display_id, msg["content"])
        elif msg_type in OUTPUT_MESSAGES and out is not None:
            self.output(out, display_id_of(msg))

    def output(self, out: dict[str, Any], display_id: str | None = None) -> None:
        """A new output of the cell."""
        if self._closed:
            return
        if self._clear_on_next:
            self._clear_now()
        if out["output_type"] == "stream":
            self._stream(out["name"], out["text"])
        else:
            self._pending.append(_Pending(copy.deepcopy(dict(out)), display_id))
        self._schedule()

    def update(self, display_id: str, content: dict[str, Any]) -> None:
        """New data for the outputs shown with ``display_id``."""
        if self._closed:
            return
        new = {"data": content.get("data", {}), "metadata": content.get("metadata", {})}
        # outputs not sent yet go out updated; one update event reaches those already sent
        updating = False
        for pending in self._pending:
            if pending.display_id == display_id:
                pending.output.update(copy.deepcopy(new))
                updating = updating or pending.output["output_type"] == "update_display_data"
        if not updating:
            output = {"output_type": "update_display_data", **copy.deepcopy(new)}
            self._pending.append(_Pending(output, display_id))
        self._schedule()

    def _stream(self, name: str, text: str) -> None:
        # join with the latest pending text of that stream unless another kind came since
        for pending in reversed(self._pending):
            if pending.output["output_type"] != "stream":
                break
            if pending.output["name"] == name:
                pending.texts.append(text)
                return
        self._pending.append(_Pending({"output_type": "stream", "name": name}, texts=[text]))

    def _clear_now(self) -> None:
        self._clear_on_next = False
        # updates may be for displays of earlier cells: they stay
        self._pending = [
            p for p in self._pending if p.output["output_type"] == "update_display_data"
        ]
        if self._shown:
            self._clear = True

    # -- what is sent ---------------------------------------------------------------------

    def _schedule(self) -> None:
        if self._timer is not None or self._closed or not (self._pending or self._clear):
            return
        delay = max(0.0, self._last_send + self.interval - time.monotonic())
        self._timer = asyncio.get_running_loop().call_later(delay, self.flush)

    def flush(self) -> None:
        """Send everything waiting now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not (self._pending or self._clear):
            return
        if self._clear:
            self._clear, self._shown = False, 0
            self._send({"output_type": "clear_output"}, None)
        pending, self._pending = self._pending, []
        for item in pending:
            output = item.output
            if output["output_type"] == "stream":
                output = {**output, "text": "".join(item.texts)}
            if output["output_type"] != "update_display_data":
                self._shown += 1
            self._send(output, item.display_id)
        self._last_send = time.monotonic()

    def close(self) -> None:
        """The cell ended: send what waits, then nothing more."""
        self.flush()
        self._closed = True
