"""A client's handshake with a kernel: both channels proven connected by kernel_info.

Used for forked kernels, when a run connects to one, and for a spare kernel, which waits
with its client connected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from queue import Empty
from typing import Any

from jupyter_core.utils import ensure_async


async def connect_client(kc: Any, timeout: float, alive: Callable[[], Any]) -> dict[str, Any]:
    """Start a client's channels and return the kernel's kernel_info reply once both the
    shell and the IOPub channel are proven connected (the reply, and its idle status).

    jupyter_client's ``wait_for_ready`` drains IOPub for a fixed fifth of a second
    instead; here the kernel's own idle status says when IOPub is there.

    No heartbeat channel: it is a thread with a ZMQ context of its own per client, which
    nothing reads (``alive``, such as the kernel manager's ``is_alive``, tells whether the
    kernel runs), and a client stopped just after it started (a kernel dead at birth)
    raced its thread, which then died on "Too many open files" creating its socket in the
    destroyed context.
    """
    kc.start_channels(hb=False)
    kc.allow_stdin = False
    return await kernel_info(kc, timeout, alive)


async def kernel_info(kc: Any, timeout: float, alive: Callable[[], Any]) -> dict[str, Any]:
    """The kernel_info reply on a connected client, once its IOPub idle status came too:
    the kernel runs and answers on both channels (a kernel that died raises)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if not await ensure_async(alive()):
            raise RuntimeError("the kernel died before replying to kernel_info")
        msg_id = kc.kernel_info()
        reply = await _reply_to(kc, msg_id, min(5.0, max(0.0, deadline - loop.time())))
        if reply is not None and await _iopub_idle(kc, msg_id, 0.5):
            return reply
    raise RuntimeError(f"the kernel did not answer kernel_info within {timeout:g} s")


async def _first_match(
    get_msg: Callable[..., Any], matches: Callable[[dict[str, Any]], bool], timeout: float
) -> dict[str, Any] | None:
    """The first message from a channel that ``matches`` (others skipped), or None on timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (left := deadline - loop.time()) > 0:
        try:
            msg = await get_msg(timeout=left)
        except Empty:
            return None
        if matches(msg):
            return msg
    return None


async def _reply_to(kc: Any, msg_id: str, timeout: float) -> dict[str, Any] | None:
    """The shell reply to ``msg_id`` (older replies skipped), or None on timeout."""
    return await _first_match(
        kc.get_shell_msg, lambda msg: msg["parent_header"].get("msg_id") == msg_id, timeout
    )


async def _iopub_idle(kc: Any, msg_id: str, timeout: float) -> bool:
    """Whether IOPub reports the request idle within ``timeout`` seconds."""
    idle = await _first_match(
        kc.get_iopub_msg,
        lambda msg: msg["parent_header"].get("msg_id") == msg_id
        and msg["msg_type"] == "status"
        and msg["content"].get("execution_state") == "idle",
        timeout,
    )
    return idle is not None
