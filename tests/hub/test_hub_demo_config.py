"""`make demo`'s config: the admin config plus the demo overlay, loaded as JupyterHub would."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from traitlets.config.loader import PyFileConfigLoader

REPO = Path(__file__).resolve().parents[2]


def _load(path: Path):  # type: ignore[no-untyped-def]
    return PyFileConfigLoader(path.name, path=str(path.parent)).load_config()


def test_admin_config_has_every_piece() -> None:
    c = _load(REPO / "hub_config" / "jupyterhub_config.py")
    (service,) = c.JupyterHub.services
    assert service["name"] == "nbexec" and service["oauth_no_confirm"] is True
    assert service["command"][1:] == ["-m", "nbexec_hub.service"]
    assert "access:servers" in service["oauth_client_allowed_scopes"]
    roles = {role["name"]: role for role in c.JupyterHub.load_roles}
    # the least that works, and never access:servers (CONTRACT B.1)
    assert set(roles["nbexec-service"]["scopes"]) == {
        "read:users", "list:users", "read:servers", "servers", "tokens"
    }
    assert "access:services!service=nbexec" in roles["user"]["scopes"]
    assert c.JupyterHub.public_url and c.JupyterHub.allow_named_servers is True


def test_demo_overlay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("nbexec_demo", REPO / "hub_config" / "demo.py")
    demo = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(demo)  # type: ignore[union-attr]
    monkeypatch.setattr(demo, "STATE", tmp_path)
    notebooks = demo.copy_examples()
    assert notebooks and all((tmp_path / "home" / u / notebooks[0]).exists() for u in demo.USERS)
    c = _load(demo.write_config("helper-token"))
    assert c.JupyterHub.port == 8000 and c.JupyterHub.public_url == "http://127.0.0.1:8000/"
    assert c.JupyterHub.authenticator_class == "dummy"
    assert c.Authenticator.admin_users == {"admin"}
    assert [s["name"] for s in c.JupyterHub.services] == ["nbexec", "demo-helper"]
    assert str(tmp_path) in c.JupyterHub.db_url
