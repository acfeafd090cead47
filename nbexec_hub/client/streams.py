"""Reading the Execution API's event streams as they arrive, and resuming dropped ones.

A stream is NDJSON or Server-Sent Events (by its Content-Type). A progress stream that
drops before its final event is opened again with ``Last-Event-ID`` set to the last
``seq`` seen; a run stream (the chunked ``POST``) that drops goes on as a progress stream.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import requests

from ..protocol import FINAL_EVENTS, LineSplitter, SSEDecoder, wants_event_stream
from .errors import NbexecAPIError, StreamInterrupted

log = logging.getLogger(__name__)

Event = dict[str, Any]
EventCallback = Callable[[Event], None]



def iter_stream_events(response: requests.Response) -> Iterator[Event]:
    """Decode a streamed body as it arrives: NDJSON, or Server-Sent Events by Content-Type."""
    sse = SSEDecoder() if wants_event_stream(response.headers.get("Content-Type")) else None
    for line in _iter_lines(response.iter_content(chunk_size=None)):
        if sse is None:
            if line.strip():
                yield json.loads(line)
            continue
        event = sse.line(line)
        if event is not None:
            yield event


def _iter_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Split byte chunks into text lines, yielding each as soon as its newline arrives."""
    splitter = LineSplitter()
    for chunk in chunks:
        for raw in splitter.feed(chunk):
            yield raw.rstrip(b"\r").decode("utf-8")
    rest = splitter.rest()
    if rest.strip():
        yield rest.decode("utf-8")


def drain_events(events: Iterable[Event], on_event: EventCallback | None) -> dict[str, Any]:
    """Pass every event to ``on_event``; the model of the final one."""
    final: Event = {}
    for final in events:
        if on_event is not None:
            on_event(final)
    return final["execution"]


def resumed_progress(
    open_stream: Callable[[int | None], requests.Response],
    exec_id: str,
    after_seq: int | None = None,
    *,
    max_attempts: int = 5,
    delay: float = 1.0,
) -> Iterator[Event]:
    """Every event of ``exec_id`` after ``after_seq``, live, until its final event.

    ``open_stream(last_seq)`` opens the progress stream after ``last_seq``; it is called
    again (up to ``max_attempts`` times in a row, waiting longer each time) whenever the
    stream drops. An HTTP error answer is raised at once.
    """
    last = after_seq
    attempts = 0
    while True:
        try:
            with open_stream(last) as response:
                for event in iter_stream_events(response):
                    seq = event.get("seq")
                    if seq is not None and last is not None and seq <= last:
                        continue  # already seen (a server that ignores Last-Event-ID)
                    if seq is not None:
                        last = seq
                    attempts = 0
                    yield event
                    if event.get("event") in FINAL_EVENTS:
                        return
            raise StreamInterrupted("progress stream ended before the final event")
        except (StreamInterrupted, requests.RequestException, NbexecAPIError, ValueError) as e:
            # ValueError: a line cut in the middle when the connection closed
            if isinstance(e, NbexecAPIError) and e.status is not None:
                raise
            attempts += 1
            if attempts > max_attempts:
                raise NbexecAPIError(
                    f"progress stream of {exec_id} lost after {attempts - 1} retries: {e}"
                ) from e
            log.info("progress stream of %s dropped (%s); resuming after seq %s",
                     exec_id, e, last)
            time.sleep(delay * attempts)


def follow_run_stream(
    response: requests.Response,
    on_event: EventCallback | None,
    resume: Callable[[str, int | None], Iterable[Event]],
) -> dict[str, Any]:
    """Read a chunked run stream to its final model; if it drops, go on with
    ``resume(exec_id, last_seq)`` (the progress stream after the last event seen)."""
    count = 0
    last_seq: int | None = None
    exec_id: str | None = None
    try:
        with response:
            for event in iter_stream_events(response):
                # a POST stream may omit seq: its events are the execution's from 0 on
                last_seq = event.get("seq", count)
                count += 1
                if exec_id is None and "execution" in event:
                    exec_id = event["execution"]["exec_id"]
                if on_event is not None:
                    on_event(event)
                if event.get("event") in FINAL_EVENTS:
                    return event["execution"]
    except (requests.RequestException, ValueError) as e:
        log.info("run stream dropped: %s", e)
    if exec_id is None:
        raise NbexecAPIError("the run stream ended before the execution started")
    log.info("resuming %s after seq %s", exec_id, last_seq)
    return drain_events(resume(exec_id, last_seq), on_event)
