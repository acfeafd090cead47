"""nbexec-hub: run Jupyter notebooks with parameters over REST, on JupyterHub.

This package is also the Jupyter Server extension that adds ``/api/executions``.
"""

from __future__ import annotations

from typing import Any

from ._version import __version__


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .extension.app import ExecutionExtensionApp

    return [{"module": "nbexec_hub", "app": ExecutionExtensionApp}]


__all__ = ["__version__"]
