"""Fixtures of the reliability tests (the hub comes from tests/realhub.py).

The route walks read docs/openapi.yaml through the OpenAPI tests' helpers, so that a route
added to the document is walked without touching these tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "openapi"))
