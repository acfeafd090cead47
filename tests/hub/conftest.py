"""Fixtures of the hub-service tests (the hub itself comes from tests/support/realhub.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.realhub import RealHub, slow_notebook
from tests.support.service_calls import Service


@pytest.fixture
def alice(realhub: RealHub, alice_token: str) -> Service:
    return Service(realhub, alice_token)


@pytest.fixture
def bob(realhub: RealHub, bob_token: str) -> Service:
    return Service(realhub, bob_token)


@pytest.fixture
def admin(realhub: RealHub, admin_token: str) -> Service:
    return Service(realhub, admin_token)


@pytest.fixture
def alice_stopped(realhub: RealHub) -> Iterator[None]:
    """Alice's default server is stopped (and stopped again afterwards)."""
    realhub.stop_server("alice")
    yield
    realhub.stop_server("alice")


@pytest.fixture
def notebooks(realhub: RealHub) -> dict[str, str]:
    """Notebooks in alice's folder: ``tiny`` (instant) and ``slow`` (4 cells of 0.7 s)."""
    realhub.put_notebook("alice", "tiny.ipynb")
    realhub.put_notebook("alice", "slow.ipynb", slow_notebook())
    return {"tiny": "tiny.ipynb", "slow": "slow.ipynb"}
