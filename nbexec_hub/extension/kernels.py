"""Where executions get their kernels: the server's own kernel manager.

Kernels started here share the server's port cache, show in JupyterLab's list of
running kernels, and their activity counts for the server's ``last_activity``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from queue import Empty
from typing import Any, Callable

from jupyter_core.utils import ensure_async
from jupyter_server._tz import utcnow
from traitlets.utils.importstring import import_item


def give_new_kernels_a_last_activity(multi_kernel_manager: Any) -> None:
    """Let kernels have a ``last_activity`` from the moment they exist.

    jupyter_server puts a new kernel in its table one event-loop turn before it sets the
    kernel's ``last_activity``; a ``GET /api/kernels`` or ``/api/status`` landing in that
    turn fails with a 500. Executions start kernels often enough to hit that window, so
    the kernel class gets a default (the time of the first read) for that one turn.
    """
    cls = multi_kernel_manager.kernel_manager_class
    cls = import_item(cls) if isinstance(cls, str) else cls
    if "last_activity" in cls.class_trait_names() and "_last_activity_default" not in vars(cls):
        cls._last_activity_default = lambda self: utcnow()


@dataclass
class KernelLease:
    """A kernel handed to one execution, which must give it back with ``discard``."""

    kernel_id: str
    manager: Any  # the kernel's own KernelManager, as nbclient wants it
    warm: bool = False
    #: silent code to run before the first cell (a warm kernel's move to the notebook)
    prepare: str | None = None
    #: a client already connected to the kernel (a warm one's), and its kernel_info reply
    client: Any = None
    kernel_info: dict[str, Any] | None = None


async def connect_client(km: Any, kc: Any, timeout: float) -> dict[str, Any]:
    """Start a client's channels and return the kernel's kernel_info reply once both the
    shell and the IOPub channel are proven connected (the reply, and its idle status).

    jupyter_client's ``wait_for_ready`` drains IOPub for a fixed fifth of a second
    instead; here the kernel's own idle status says when IOPub is there.
    """
    kc.start_channels()
    kc.allow_stdin = False
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if not await ensure_async(km.is_alive()):
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


class ServerKernels:
    """Fresh kernels from the server's MappingKernelManager, one per execution."""

    def __init__(self, multi_kernel_manager: Any, log: logging.Logger) -> None:
        self.mkm = multi_kernel_manager
        self.log = log
        give_new_kernels_a_last_activity(multi_kernel_manager)

    async def start(self, kernel_name: str, notebook_api_path: str) -> KernelLease:
        """Start a kernel whose working directory is the notebook's folder."""
        kernel_id = await ensure_async(
            self.mkm.start_kernel(kernel_name=kernel_name, path=notebook_api_path)
        )
        return KernelLease(kernel_id, self.mkm.get_kernel(kernel_id))

    async def discard(self, kernel_id: str) -> None:
        """Shut a kernel down now, whatever state it is in."""
        if kernel_id not in self.mkm:
            return
        try:
            await ensure_async(self.mkm.shutdown_kernel(kernel_id, now=True))
        except Exception as exc:  # a kernel that is already gone must not fail the run
            self.log.warning("nbexec: shutting kernel %s down failed: %s", kernel_id, exc)
            if kernel_id in self.mkm:
                self.mkm.remove_kernel(kernel_id)

    async def close(self) -> None:
        """Nothing is pooled here; the server shuts its kernels down itself."""
