"""The service's configuration and small pure parts, without a hub."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nbexec_hub import errors
from nbexec_hub.protocol import LineSplitter
from nbexec_hub.service.app import NbexecService, proxy_url_from_env, scrub_uri
from nbexec_hub.service.bounds import ByteBudgets
from nbexec_hub.service.forward import parse_start_wait, upstream_query
from nbexec_hub.service.hubclient import status_model
from nbexec_hub.service.paths import server_url, upstream_api_path


def test_proxy_url_comes_from_the_hub_environment() -> None:
    env = {"JUPYTERHUB_PUBLIC_HUB_URL": "https://hub.example.org/jh/hub/"}
    assert proxy_url_from_env(env) == "https://hub.example.org"
    assert proxy_url_from_env({"JUPYTERHUB_HOST": "https://h.example.org"}) == "https://h.example.org"
    assert proxy_url_from_env({}) == ""


def _service_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
    env.update(JUPYTERHUB_API_TOKEN="x", JUPYTERHUB_SERVICE_URL="http://127.0.0.1:1")
    env.update(extra)
    return env


def _run_service(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """Run ``python -m nbexec_hub.service`` to its end, as a hub would but without a hub."""
    return subprocess.run(
        [sys.executable, "-m", "nbexec_hub.service", *args],
        env=_service_env(), cwd=cwd, capture_output=True, text=True, timeout=60,
    )


def test_refuses_to_start_without_a_proxy_url(tmp_path: Path) -> None:
    proc = _run_service(tmp_path)
    assert proc.returncode != 0
    assert "c.JupyterHub.public_url" in proc.stderr
    assert "JUPYTERHUB_HOST" in proc.stderr


def test_generate_config(tmp_path: Path) -> None:
    proc = _run_service(tmp_path, "--generate-config")
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "nbexec_service_config.py").read_text()
    for trait in ("proxy_url", "readiness_cache_seconds", "keepalive_seconds", "max_streams"):
        assert f"c.NbexecService.{trait}" in text


def test_every_trait_is_documented_and_configurable() -> None:
    own = NbexecService.class_own_traits()
    assert own
    for name, trait in own.items():
        if name in ("log_level",):
            continue
        assert trait.help, name
        assert trait.metadata.get("config") is True, name


def test_cli_aliases_and_env_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:12345")
    monkeypatch.setenv("JUPYTERHUB_PUBLIC_HUB_URL", "http://10.0.0.1:8000/hub/")
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/services/nbexec/")
    app = NbexecService()
    app.parse_command_line(["--readiness-cache=1.5", "--max-wait=30"])
    assert app.port == 12345 and app.ip == "127.0.0.1"
    assert app.proxy_url == "http://10.0.0.1:8000"
    assert app.readiness_cache_seconds == 1.5 and app.max_wait == 30
    app.parse_command_line(["--proxy-url=http://proxy-public/"])
    assert app.proxy_url == "http://proxy-public/"


def test_scrub_uri_hides_tokens() -> None:
    assert scrub_uri("/a?token=abc&x=1&_xsrf=def") == "/a?token=[secret]&x=1&_xsrf=[secret]"
    assert "abc" not in scrub_uri("/a?x=1&TOKEN=abc")


def test_start_and_wait_parameters() -> None:
    assert parse_start_wait(None, None, 60, 600) == (False, None)
    assert parse_start_wait("1", None, 60, 600) == (True, 60)
    assert parse_start_wait("true", "5", 60, 600) == (True, 5)
    assert parse_start_wait(None, "9999", 60, 600) == (False, 600)
    with pytest.raises(errors.BadRequest):
        parse_start_wait(None, "soon", 60, 600)
    with pytest.raises(errors.BadRequest):
        parse_start_wait(None, "-1", 60, 600)


def test_upstream_query_drops_the_service_parameters() -> None:
    query = {"start": [b"1"], "wait": [b"5"], "token": [b"t"], "_xsrf": [b"x"], "k": [b"v"]}
    assert upstream_query(query) == "?k=v"
    assert upstream_query({"start": [b"1"]}) == ""
    url = server_url("http://proxy:8000/", "/user/alice/", "api/executions/abc")
    assert url == "http://proxy:8000/user/alice/api/executions/abc"


def test_status_model_states() -> None:
    prefix = "/services/nbexec/"
    assert status_model("a", "", None, prefix)["state"] == "stopped"
    server = {"ready": False, "pending": "spawn", "url": "/user/a/s/"}
    pending = status_model("a", "s", server, prefix)
    assert pending["state"] == "pending" and pending["pending"] == "spawn"
    assert pending["progress_url"] == "/services/nbexec/api/users/a/servers/s/progress"
    assert status_model("a", "", {"ready": True, "url": "/user/a/"}, prefix)["ready"] is True


def test_open_file_limit_is_raised() -> None:
    """In a child with a low soft limit, the service's helper raises it to the hard one."""
    code = (
        "import resource\n"
        "from nbexec_hub.service.app import raise_open_file_limit\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "got = raise_open_file_limit()\n"
        "assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == got > 256, got\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "rest",
    [
        "executions/..", "executions/.", "executions/a/../b", "executions/%2e%2e",
        "executions/%2E%2e/x", "contents/a//b", "contents/a%2fb", "contents/a%5Cb",
        "contents/%00", "contents/%252e%252e", "kernelspecs/%2525", "contents/a%0ab",
        "executions/%ff",
    ],
)
def test_upstream_paths_refuse_dot_segments_and_encodings(rest: str) -> None:
    with pytest.raises(errors.BadRequest):
        upstream_api_path(rest)


def test_upstream_paths_are_requoted_segment_by_segment() -> None:
    assert upstream_api_path("executions") == ("executions", "api/executions")
    assert upstream_api_path("executions/abc/progress") == (
        "executions", "api/executions/abc/progress"
    )
    assert upstream_api_path("contents/my%20dir/n%C3%BC.ipynb")[1] == (
        "api/contents/my%20dir/n%C3%BC.ipynb"
    )
    assert upstream_api_path("contents/a%3Fb%23c")[1] == "api/contents/a%3Fb%23c"
    assert upstream_api_path("contents/dir/")[1] == "api/contents/dir/"
    with pytest.raises(errors.NotFound):
        upstream_api_path("kernels/x")


def test_line_splitter_is_linear_and_bounded() -> None:
    splitter = LineSplitter(max_line=10)
    assert list(splitter.feed(b"ab")) == [] and splitter.pending == 2
    assert list(splitter.feed(b"c\nde")) == [b"abc"]
    assert list(splitter.feed(b"f" * 20)) == [] and splitter.skipped == 1
    assert list(splitter.feed(b"gg\nok\n")) == [b"ok"]  # the long line is dropped whole
    assert list(splitter.feed(b"part")) == [] and splitter.pending == 4
    splitter.skip_current()
    assert list(splitter.feed(b"rest\nnext\n")) == [b"next"]


def test_line_budgets_are_per_caller() -> None:
    budgets = ByteBudgets(limit=100)
    assert budgets.take("user bob", 60) and not budgets.take("user bob", 50)
    assert budgets.take("user alice", 100)  # bob's lines do not count against alice
    budgets.give_back("user bob", 60)
    assert budgets.take("user bob", 100)
