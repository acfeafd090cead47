"""What a server-side runner adds to a kernel's launch (contract A.3).

- IPython history in memory (``--HistoryManager.hist_file=:memory:``, as nbclient launches
  kernels): concurrent kernels writing the user's ``history.sqlite`` contend for its lock,
  and on NFS homes SQLite's locks can hang a kernel at start-up.
- ``JPY_SESSION_NAME``: the notebook's path, so that ``__session__`` works in the kernel.
  It is the absolute path jupyter_server gives the kernels of its own sessions.
"""

from __future__ import annotations

import os
from typing import Any

from jupyter_core.utils import ensure_async

HISTORY_IN_MEMORY = "--HistoryManager.hist_file=:memory:"


def session_name(root_dir: str, notebook_api_path: str) -> str:
    """The notebook's absolute path: the value of ``JPY_SESSION_NAME`` and ``__session__``."""
    return os.path.join(os.path.abspath(root_dir), *notebook_api_path.split("/"))


def runs_ipython(spec: Any) -> bool:
    """Whether a kernelspec starts ipykernel (which takes IPython's options)."""
    return any("ipykernel" in str(arg) for arg in (getattr(spec, "argv", None) or []))


async def launch_kwargs(
    multi_kernel_manager: Any, kernel_name: str, notebook_api_path: str | None = None
) -> dict[str, Any]:
    """Extra keyword arguments of ``start_kernel`` for a kernel that runs executions."""
    kwargs: dict[str, Any] = {}
    try:
        spec = await ensure_async(
            multi_kernel_manager.kernel_spec_manager.get_kernel_spec(kernel_name)
        )
    except Exception:  # start_kernel reports an unknown kernel itself
        spec = None
    if spec is not None and runs_ipython(spec):
        kwargs["extra_arguments"] = [HISTORY_IN_MEMORY]
    if notebook_api_path:
        name = session_name(multi_kernel_manager.root_dir, notebook_api_path)
        kwargs["env"] = {**os.environ, "JPY_SESSION_NAME": name}
    return kwargs
