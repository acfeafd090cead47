"""The store's format number and the in-place upgrades from older layouts.

Format 1 (the first layout) kept every record in one index file, rewritten whole at each
change, which grows costly with a thousand executions::

    executions.json        {"format": 1, "executions": {<id>: {"model", "output_path"}}}
    logs/<id>.jsonl        one event per line, its "seq" inside the event

Format 2 (`nbexec_hub.extension.store`) gives each execution its own record file, so that
a change rewrites one small file, and keeps ``seq`` beside the event rather than inside it.

An upgrade writes the new layout next to the old one and removes the old files only
once ``format.json`` names the new format, so an upgrade cut short is simply redone at
the next start.
"""

from __future__ import annotations

import json
import logging
import os
import shutil

from .store import FORMAT, StoreUnavailable, log_line, read_json, write_atomically

FORMAT_FILE = "format.json"


def stored_format(path: str) -> int | None:
    """The format of the store at ``path``; None when there is none yet."""
    format_file = os.path.join(path, FORMAT_FILE)
    if os.path.exists(format_file):
        number = read_json(format_file).get("format")
        if not isinstance(number, int):
            raise ValueError(f"{FORMAT_FILE} names no format number")
        return number
    if os.path.exists(os.path.join(path, "executions.json")):
        return 1
    return None


def upgrade(path: str, log: logging.Logger) -> None:
    """Bring the store at ``path`` to the current format (creating it when new)."""
    number = stored_format(path)
    if number is not None and number > FORMAT:
        raise StoreUnavailable(
            f"a newer nbexec-hub wrote it (format {number}; this version knows up to {FORMAT})"
        )
    if number == 1:
        log.info("nbexec: upgrading the execution store %s from format 1 to %d", path, FORMAT)
        _upgrade_1_to_2(path)
    if number != FORMAT:
        write_atomically(os.path.join(path, FORMAT_FILE), json.dumps({"format": FORMAT}),
                         sync=True)
    if number == 1:
        os.unlink(os.path.join(path, "executions.json"))
        shutil.rmtree(os.path.join(path, "logs"), ignore_errors=True)


def _upgrade_1_to_2(path: str) -> None:
    index = read_json(os.path.join(path, "executions.json"))
    folder = os.path.join(path, "executions")
    os.makedirs(folder, exist_ok=True)
    for position, (exec_id, old) in enumerate(index.get("executions", {}).items()):
        lines, next_seq = [], 0
        try:
            with open(os.path.join(path, "logs", f"{exec_id}.jsonl"), encoding="utf-8") as f:
                for raw in f:
                    try:
                        event = json.loads(raw)
                        seq = event.pop("seq")
                    except (ValueError, KeyError, AttributeError):
                        continue
                    lines.append(log_line(seq, event))
                    next_seq = seq + 1
        except FileNotFoundError:
            pass
        write_atomically(os.path.join(folder, f"{exec_id}.log"), "".join(lines))
        record = {
            "model": old["model"],
            "output_path": old.get("output_path"),
            "next_seq": next_seq,
            "created": position,  # format 1 kept them in order of creation
        }
        write_atomically(os.path.join(folder, f"{exec_id}.json"), json.dumps(record))
