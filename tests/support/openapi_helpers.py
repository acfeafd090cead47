"""Helpers of the OpenAPI tests: the document, documented operations, concrete sample paths."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
OPENAPI = REPO / "docs" / "openapi.yaml"
SERVICE_PREFIX = "/services/nbexec/"
METHODS = ("get", "post", "put", "patch", "delete")


def load_spec() -> dict[str, Any]:
    """docs/openapi.yaml as a dict (YAML anchors and merge keys resolved)."""
    return yaml.safe_load(OPENAPI.read_text())


def operations(spec: dict[str, Any], tag: str | None = None) -> list[tuple[str, str]]:
    """Every documented (path, METHOD), optionally only those with a tag."""
    found = []
    for path, item in spec["paths"].items():
        for method in METHODS:
            op = item.get(method)
            if op is not None and (tag is None or tag in op.get("tags", [])):
                found.append((path, method.upper()))
    return found


def concrete(template: str, **values: str) -> str:
    """A documented path template with its ``{params}`` filled in."""
    samples = {"exec_id": "0b7a4e8e-5f2e-4a57-9d3c-3f1c2f1e9a11", "user": "alice",
               "server_name": "s1", "path": "nb.ipynb", **values}
    return re.sub(r"\{(\w+)\}", lambda m: samples[m.group(1)], template)
