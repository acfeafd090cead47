"""Fixtures of the OpenAPI tests: a real `jupyter server` with the extension, the document.

The Execution API is checked on a plain ``jupyter server`` subprocess (the extension loads
because the package is installed); the hub service on the shared real hub (``realhub``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import nbformat
import pytest

from tests.support.openapi_helpers import load_spec
from tests.support.realhub import tiny_notebook
from tests.support.servers import JupyterServer
from tests.support.servers import jupyter_server as start_jupyter_server


@pytest.fixture(scope="module")
def jupyter_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    """A real Jupyter server with the extension, rooted in a folder holding ``nb.ipynb``."""
    root = tmp_path_factory.mktemp("root")
    nbformat.write(tiny_notebook("print(x)"), root / "nb.ipynb")
    with start_jupyter_server(root) as server:
        yield server


@pytest.fixture(scope="session")
def spec() -> dict[str, Any]:
    return load_spec()
