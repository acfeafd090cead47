"""Helpers of the extension's tests: waiting on an execution's events without sleeping."""

from __future__ import annotations

import asyncio

import nbformat


def server_config(**traits) -> dict:
    """A ``jp_server_config``: the extension enabled, four runs at once, these traits, each
    in the section of the class that owns it (the app, the manager, the history)."""
    from nbexec_hub.extension.app import MOVED_TRAITS

    config: dict = {
        "ServerApp": {"jpserver_extensions": {"nbexec_hub": True}},
        "ExecutionManager": {"max_concurrent_executions": 4},
    }
    for name, value in traits.items():
        config.setdefault(MOVED_TRAITS.get(name, "ExecutionExtensionApp"), {})[name] = value
    return config


async def wait_for_event(execution, name: str, predicate=lambda event: True, timeout=60.0):
    """Wait until the execution has emitted a matching event; return it."""

    async def _wait():
        seq = 0
        while True:
            changed = execution.changed()
            for seq_, event in execution.events_since(seq):
                seq = seq_ + 1
                if event["event"] == name and predicate(event):
                    return event
            await changed.wait()

    return await asyncio.wait_for(_wait(), timeout)


async def wait_done(execution, timeout=60.0):
    """Wait for the final event of an execution."""
    await asyncio.wait_for(execution.finished.wait(), timeout)
    if execution.task is not None:  # its kernel is released just after the final event
        await asyncio.wait_for(asyncio.shield(execution.task), timeout)
    return execution


async def settle(manager, timeout=60.0):
    """Wait until every execution's task (kernel release included) is over."""
    tasks = [ex.task for ex in manager.list() if ex.task is not None]
    if tasks:
        await asyncio.wait_for(asyncio.gather(*tasks), timeout)


def kernel_pid(serverapp, kernel_id: str) -> int:
    """The OS pid of a kernel of the server's kernel manager."""
    return serverapp.kernel_manager.get_kernel(kernel_id).provisioner.process.pid


def read_json(path) -> dict:
    """An output notebook, multi-line strings joined (as nbformat reads it)."""
    return nbformat.read(str(path), as_version=4)


def stream_text(cell: dict) -> str:
    """All stream output text of a cell."""
    return "".join(o.get("text", "") for o in cell["outputs"] if o["output_type"] == "stream")
