"""Warm kernels: a small pool of pre-started kernels, each serving exactly one execution.

Pooled kernels live in a kernel manager of their own (same class and configuration as
the server's), so that while they wait they neither show in the user's running-kernels
list nor count as activity for the idle culler. A kernel taken from the pool moves into
the server's own table (it then shows and counts like a fresh kernel), is shut down
after its execution exactly like a fresh one, and before its first cell it is moved to
the notebook's folder, so it is in the state a fresh kernel would have. Only Python
kernels are pooled (that move is Python code); other kernels always start fresh.

Each pooled kernel waits with a client already connected (its kernel_info answered on
both channels), so that taking it costs no round trip but the preparation.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jupyter_core.utils import ensure_async
from traitlets import Dict, Float, Integer, Unicode
from traitlets.config import LoggingConfigurable

from ..private_apis import adopt_kernel
from .client_handshake import connect_client
from .kernels import KernelActivity, KernelLease, ServerKernels, shutdown_now
from .launch import launch_kwargs, session_name


@dataclass
class _Pooled:
    kernel_id: str
    started: float = field(default_factory=time.monotonic)
    #: the server's environment when the kernel was started (the kernel inherited it)
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    #: a client with both channels connected, and the kernel_info reply it got
    client: Any = None
    kernel_info: dict[str, Any] | None = None

    def disconnect(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            client.stop_channels()


def prepare_source(
    folder: str, pool_cwd: str, set_env: dict[str, str], unset_env: list[str]
) -> str:
    """Silent code bringing a pooled kernel to a fresh kernel's state, leaving no name.

    The working directory becomes the notebook's folder (with ``sys.path`` entries and
    IPython's ``_dh`` to match) and the environment catches up with the server's
    (``JPY_SESSION_NAME`` and ``__session__`` naming the notebook, as for a fresh kernel).
    """
    return (
        "def __nbexec_prepare(folder, old, set_env, unset_env):\n"
        "    import os, sys, pathlib\n"
        "    os.chdir(folder)\n"
        "    sys.path[:] = [folder if p == old else p for p in sys.path]\n"
        "    os.environ.update(set_env)\n"
        "    for name in unset_env:\n"
        "        os.environ.pop(name, None)\n"
        "    if 'JPY_SESSION_NAME' in set_env:\n"
        "        globals()['__session__'] = set_env['JPY_SESSION_NAME']\n"
        "    dh = globals().get('_dh')\n"
        "    if isinstance(dh, list):\n"
        "        dh[:] = [pathlib.Path(folder)]\n"
        f"__nbexec_prepare({folder!r}, {pool_cwd!r}, {set_env!r}, {unset_env!r})\n"
        "del __nbexec_prepare\n"
    )


class WarmKernelPool(LoggingConfigurable):
    """Pre-started kernels per kernel name, with fresh kernels as the fallback.

    Configured as ``c.WarmKernelPool.…``; the extension app builds it with ``parent=`` and
    uses it only when ``sizes`` keeps some kernel name.
    """

    warm_kernels = Dict(
        key_trait=Unicode(),
        value_trait=Integer(),
        default_value=None,
        allow_none=True,
        help=(
            "How many pre-started (warm) kernels to keep per kernel name, e.g. "
            "{'python3': 2}. None (the default): none when kernels are forked "
            "(ExecutionExtensionApp.fork_kernels), else one for the server's default "
            "kernel; {} disables the pool. Only Python kernels are pooled; each warm kernel "
            "serves exactly one execution and is shut down after it."
        ),
    ).tag(config=True)

    warm_kernels_max_total = Integer(
        4,
        help="At most this many warm kernels in all, whatever warm_kernels asks (memory).",
    ).tag(config=True)

    warm_kernel_max_idle = Float(
        3600.0,
        help=(
            "Seconds an unused warm kernel may wait. After that it is shut down and the pool "
            "of its name stays empty until executions come back, so an idle server holds none."
        ),
    ).tag(config=True)

    warm_kernel_check_interval = Float(
        5.0,
        help="Seconds between checks that replace warm kernels that died while waiting.",
    ).tag(config=True)

    warm_kernel_start_delay = Float(
        2.0,
        help="Seconds after server start before the pool starts its kernels (start-up first).",
    ).tag(config=True)

    warm_kernel_refill_delay = Float(
        1.0,
        help=(
            "A warm kernel taken by an execution is replaced when that execution ends, or "
            "after this many seconds if it runs longer (so that starting the replacement "
            "does not slow the execution down)."
        ),
    ).tag(config=True)

    def __init__(self, *, fresh: ServerKernels, forked: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fresh = fresh
        server_mkm = fresh.mkm
        # same class and configuration as the server's manager, but a table of its own;
        # connection files (they hold the kernel's HMAC key) go where the server's go, the
        # runtime folder: without it they land in the server's working directory, which
        # under a hub is the user's home
        self.mkm = type(server_mkm)(
            parent=server_mkm.parent,
            log=self.log,
            kernel_spec_manager=server_mkm.kernel_spec_manager,
            root_dir=server_mkm.root_dir,
            connection_dir=server_mkm.connection_dir,
        )
        self.root_dir = server_mkm.root_dir
        self.sizes = self._capped(self._python_sizes(forked), self.warm_kernels_max_total)
        self._ready: dict[str, deque[_Pooled]] = {name: deque() for name in self.sizes}
        self._filling: dict[str, int] = dict.fromkeys(self.sizes, 0)
        #: names whose kernels expired unused: refilled only once executions come back
        self._cold: set[str] = set()
        #: kernels handed out and not yet discarded: id -> kernel name
        self._taken: dict[str, str] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._closed = False
        self._changed = asyncio.Event()

    def _python_sizes(self, forked: bool) -> dict[str, int]:
        """The pool sizes asked for, keeping only installed Python kernels."""
        asked = self.warm_kernels
        if asked is None:  # forked kernels beat the pool unless runs come with pauses
            asked = {} if forked else {self.fresh.mkm.default_kernel_name: 1}
        sizes = {}
        for name, size in asked.items():
            if size <= 0:
                continue
            try:
                spec = self.fresh.mkm.kernel_spec_manager.get_kernel_spec(name)
            except Exception as exc:
                self.log.warning("nbexec: no warm kernels for %r: %s", name, exc)
                continue
            language = getattr(spec, "language", "")
            if not isinstance(language, str) or language.lower() != "python":
                self.log.warning("nbexec: only Python kernels are kept warm, not %r", name)
                continue
            sizes[name] = size
        return sizes

    @staticmethod
    def _capped(sizes: dict[str, int], max_total: int) -> dict[str, int]:
        capped, room = {}, max(0, max_total)
        for name, size in sizes.items():
            take = min(max(0, int(size)), room)
            if take:
                capped[name] = take
                room -= take
        return capped

    # -- life cycle --------------------------------------------------------------------------

    def start_filling(self) -> None:
        """Begin filling in the background (never waits for a kernel)."""
        if self._closed:
            return
        for name in self.sizes:
            self._fill(name)
        if self._watcher is None:
            self._watcher = asyncio.ensure_future(self._watch())

    async def close(self) -> None:
        """Shut every pooled kernel down; no more refills."""
        self._closed = True
        if self._watcher is not None:
            self._watcher.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for queue in self._ready.values():
            for pooled in queue:
                pooled.disconnect()
            queue.clear()
        for kernel_id in list(self.mkm.list_kernel_ids()):
            await self._shutdown(kernel_id)

    def ready_count(self, kernel_name: str) -> int:
        """How many kernels of this name wait in the pool."""
        return len(self._ready.get(kernel_name, ()))

    async def wait_ready(self, kernel_name: str, count: int = 1, timeout: float = 60) -> None:
        """Wait until ``count`` kernels of this name are ready (for tests and benchmarks)."""

        async def _wait() -> None:
            while self.ready_count(kernel_name) < count:
                changed = self._changed
                await changed.wait()

        await asyncio.wait_for(_wait(), timeout)

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # -- filling -----------------------------------------------------------------------------

    def _fill(self, kernel_name: str) -> None:
        """Start as many kernels as the pool of this name lacks."""
        if self._closed or kernel_name in self._cold:
            return
        ready, filling = len(self._ready[kernel_name]), self._filling[kernel_name]
        missing = self.sizes[kernel_name] - ready - filling
        for _ in range(max(0, missing)):
            self._filling[kernel_name] += 1
            task = asyncio.ensure_future(self._start_one(kernel_name))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _start_one(self, kernel_name: str) -> None:
        kernel_id = None
        pooled = _Pooled("", environ=dict(os.environ))
        try:
            extra = await launch_kwargs(self.mkm, kernel_name)  # the notebook comes later
            kernel_id = pooled.kernel_id = await ensure_async(
                self.mkm.start_kernel(kernel_name=kernel_name, path="", **extra)
            )
            km = self.mkm.get_kernel(kernel_id)
            pooled.client = km.client()
            pooled.kernel_info = await connect_client(pooled.client, 60, km.is_alive)
        except asyncio.CancelledError:
            pooled.disconnect()
            if kernel_id is not None:
                await self._shutdown(kernel_id)
            raise
        except Exception as exc:
            self.log.warning("nbexec: warm %s kernel failed to start: %s", kernel_name, exc)
            pooled.disconnect()
            if kernel_id is not None:
                await self._shutdown(kernel_id)
            self._filling[kernel_name] -= 1
            # do not spin on a broken kernelspec
            await asyncio.sleep(self.warm_kernel_check_interval)
            self._fill(kernel_name)
            return
        self._filling[kernel_name] -= 1
        if self._closed:
            pooled.disconnect()
            await self._shutdown(kernel_id)
            return
        pooled.started = time.monotonic()
        self._ready[kernel_name].append(pooled)
        self._notify()

    async def _watch(self) -> None:
        """Replace pooled kernels that died; let those unused for too long go."""
        while not self._closed:
            await asyncio.sleep(self.warm_kernel_check_interval)
            for name, queue in self._ready.items():
                for pooled in list(queue):
                    expired = time.monotonic() - pooled.started > self.warm_kernel_max_idle
                    alive = await self._is_alive(pooled.kernel_id)
                    if expired or not alive:
                        if pooled in queue:
                            queue.remove(pooled)
                        pooled.disconnect()
                        await self._shutdown(pooled.kernel_id)
                        if expired:
                            self.log.info("nbexec: warm %s kernel unused for long, shut down", name)
                            self._cold.add(name)
                        else:
                            self.log.warning("nbexec: warm %s kernel died, replacing it", name)
                        self._notify()
                self._fill(name)

    async def _is_alive(self, kernel_id: str) -> bool:
        if kernel_id not in self.mkm:
            return False
        try:
            return bool(await ensure_async(self.mkm.get_kernel(kernel_id).is_alive()))
        except Exception:
            return False

    async def _shutdown(self, kernel_id: str) -> None:
        await shutdown_now(self.mkm, kernel_id, self.log)

    # -- the kernel source interface of the runner -------------------------------------------

    async def start(self, kernel_name: str, notebook_api_path: str) -> KernelLease:
        """A warm kernel when one is ready (and alive), else a fresh one."""
        queue = self._ready.get(kernel_name)
        if queue is not None and not self._closed:
            self._cold.discard(kernel_name)
            while queue:
                pooled = queue.popleft()
                try:
                    alive = await self._is_alive(pooled.kernel_id)
                except asyncio.CancelledError:
                    # taken off the pool but not handed out: it must not be left running
                    pooled.disconnect()
                    task = asyncio.ensure_future(self._shutdown(pooled.kernel_id))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                    raise
                if alive:
                    self._refill_later(kernel_name, pooled.kernel_id)
                    self._notify()
                    return self._lease(pooled, notebook_api_path)
                pooled.disconnect()
                await self._shutdown(pooled.kernel_id)
            self._fill(kernel_name)
        return await self.fresh.start(kernel_name, notebook_api_path)

    def _hand_over(self, kernel_id: str) -> Any:
        """Move a taken kernel from the pool's table into the server's; its manager.

        From here on it is one of the user's kernels like a fresh one: listed by
        ``GET /api/kernels`` (JupyterLab's running kernels), its activity counting for the
        server's, shut down through the server's manager. jupyter_server has no public call
        for adopting a running kernel, so this sets what its ``start_kernel`` would have set.
        """
        return adopt_kernel(self.mkm, self.fresh.mkm, kernel_id)

    def _lease(self, pooled: _Pooled, notebook_api_path: str) -> KernelLease:
        km = self._hand_over(pooled.kernel_id)
        # variables the kernelspec sets itself are not the server's to change
        own = set((getattr(km.kernel_spec, "env", None) or {}).keys())
        now = os.environ
        set_env = {k: v for k, v in now.items() if pooled.environ.get(k) != v and k not in own}
        unset_env = [k for k in pooled.environ if k not in now and k not in own]
        set_env["JPY_SESSION_NAME"] = session_name(self.root_dir, notebook_api_path)
        folder = self.fresh.mkm.cwd_for_path(notebook_api_path)
        client, pooled.client = pooled.client, None
        return KernelLease(
            pooled.kernel_id,
            km,
            warm=True,
            prepare=prepare_source(folder, self.root_dir, set_env, unset_env),
            client=client,
            kernel_info=pooled.kernel_info,
        )

    def _refill_later(self, kernel_name: str, kernel_id: str) -> None:
        """Refill once the execution that took ``kernel_id`` has ended, or after
        ``warm_kernel_refill_delay`` seconds if it runs longer.

        Starting a kernel costs a few tenths of a CPU second: started at the moment of the
        take, the refill would compete with the very execution it was taken for (on two
        cores that slowed a 0.1 s run by a fifth). A long execution still gets its pool
        refilled shortly, so concurrent requests keep finding warm kernels.
        """
        self._taken[kernel_id] = kernel_name
        loop = asyncio.get_running_loop()
        loop.call_later(self.warm_kernel_refill_delay, self._fill, kernel_name)

    def take_over_activity(
        self, kernel_id: str, on_restart: Callable[[], None] | None = None
    ) -> KernelActivity:
        """As `ServerKernels.take_over_activity`: a leased kernel is in the server's table."""
        return self.fresh.take_over_activity(kernel_id, on_restart)

    async def discard(self, kernel_id: str) -> None:
        """Shut a kernel down after its one execution, wherever it came from."""
        kernel_name = self._taken.pop(kernel_id, None)
        if kernel_name is not None:
            self._fill(kernel_name)
        if kernel_id in self.mkm:
            await self._shutdown(kernel_id)
        else:
            await self.fresh.discard(kernel_id)
