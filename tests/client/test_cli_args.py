"""The `nbexec` command without a server: help texts, argument errors, settings, exit codes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest
import requests

from nbexec_hub.cli import main
from nbexec_hub.cli.parser import (
    EXIT_HTTP_ERROR,
    EXIT_NOT_READY,
    EXIT_USAGE,
    UsageError,
    build_parser,
    load_params,
    make_client,
)
from nbexec_hub.client import iter_stream_events
from tests.support.servers import free_port

SUBCOMMANDS = ["run", "list", "show", "progress", "shutdown", "delete", "status", "parameters"]


@pytest.mark.parametrize("command", [[]] + [[c] for c in SUBCOMMANDS])
def test_help_of_every_subcommand_documents_exit_codes(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main(command + ["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: nbexec" + (" " + command[0] if command else ""))
    for code in ("0 ", "1 ", "2 ", "3 ", "4 "):
        assert f"\n  {code}" in out
    assert "JUPYTERHUB_API_TOKEN" in out


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "nbexec"
    result = subprocess.run([str(script), "run", "--help"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0
    for option in ("-p NAME VALUE", "--params-file", "--output", "--overwrite", "--kernel",
                   "--cell-timeout", "--start", "--no-wait", "--user", "--server", "--json"):
        assert option in result.stdout


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["run"],
        ["show"],
        ["delete"],
        ["delete", "abc", "--all"],
        ["run", "a.ipynb", "--cell-timeout", "0"],
        ["run", "a.ipynb", "-p", "only-a-name"],
    ],
)
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == EXIT_USAGE
    assert "usage: nbexec" in capsys.readouterr().err


def parse(*argv: str) -> Namespace:
    return build_parser().parse_args(list(argv))


def test_hub_settings_from_a_single_user_environment():
    env = {
        "JUPYTERHUB_API_URL": "http://10.0.0.1:8081/prefix/hub/api",
        "JUPYTERHUB_API_TOKEN": "secret",
        "JUPYTERHUB_USER": "alice",
        "JUPYTERHUB_SERVER_NAME": "gpu",
    }
    client = make_client(parse("list"), env)
    assert client.target.kind == "hub"
    assert client.target.api_url == (
        "http://10.0.0.1:8081/prefix/services/nbexec/api/users/alice/servers/gpu/"
    )
    assert client.session.headers["Authorization"] == "token secret"
    # the public URL goes through the proxy, so it wins over the hub's API address
    env["JUPYTERHUB_PUBLIC_HUB_URL"] = "https://hub.example.org/prefix/hub/"
    client = make_client(parse("list", "--user", "bob"), env)
    # another user: their default server, not ours
    assert client.target.api_url == "https://hub.example.org/prefix/services/nbexec/api/users/bob/"
    assert client.target.server_url == (
        "https://hub.example.org/prefix/services/nbexec/api/users/bob/server"
    )


def test_flags_win_over_environment():
    env = {"NBEXEC_HUB_URL": "http://env/", "JUPYTERHUB_API_TOKEN": "env", "JUPYTERHUB_USER": "a"}
    args = parse("status", "--hub-url", "http://flag/", "--token", "t", "--user", "u b",
                 "--server", "x/y")
    client = make_client(args, env)
    assert client.target.server_url == "http://flag/services/nbexec/api/users/u%20b/servers/x%2Fy"
    assert client.session.headers["Authorization"] == "token t"


def test_direct_server_mode():
    env = {"JUPYTER_SERVER_URL": "http://127.0.0.1:9999/base", "JUPYTER_TOKEN": "tok"}
    client = make_client(parse("list"), env)
    assert client.target.kind == "server"
    assert client.target.api_url == "http://127.0.0.1:9999/base/api/"
    assert client.session.headers["Authorization"] == "token tok"
    with pytest.raises(UsageError, match="one server"):
        make_client(parse("list", "--user", "bob"), env)


@pytest.mark.parametrize(
    "env, message",
    [
        ({}, "no hub URL"),
        ({"NBEXEC_HUB_URL": "http://h/"}, "no token"),
        ({"NBEXEC_HUB_URL": "http://h/", "JUPYTERHUB_API_TOKEN": "t"}, "no user"),
    ],
)
def test_missing_settings_are_usage_errors(env, message, monkeypatch, capsys):
    for name in ["NBEXEC_HUB_URL", "JUPYTER_SERVER_URL", "JUPYTERHUB_API_URL",
                 "JUPYTERHUB_PUBLIC_HUB_URL", "JUPYTERHUB_API_TOKEN", "JUPYTERHUB_USER"]:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["list"]) == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_params_file_yaml_is_typed_and_p_wins(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("name: Ada\ntimes: 3\nloud: true\nday: 2026-11-21\nitems: [1, 2]\n")
    params = load_params(parse("run", "nb.ipynb", "--params-file", str(f), "-p", "times", "5"))
    assert params == {"name": "Ada", "times": "5", "loud": True, "day": "2026-11-21",
                      "items": [1, 2]}


def test_params_file_json_and_errors(tmp_path):
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"ratio": 0.5, "tags": {"a": 1}}))
    assert load_params(parse("run", "nb", "--params-file", str(f))) == {
        "ratio": 0.5, "tags": {"a": 1}}
    f.write_text("[1, 2]")
    with pytest.raises(UsageError, match="mapping"):
        load_params(parse("run", "nb", "--params-file", str(f)))
    with pytest.raises(UsageError, match="cannot read"):
        load_params(parse("run", "nb", "--params-file", str(tmp_path / "missing.yaml")))


def test_unreachable_server_is_exit_4_and_status_3(capsys):
    url = f"http://127.0.0.1:{free_port()}/"
    assert main(["list", "--server-url", url, "--token", "t"]) == EXIT_HTTP_ERROR
    assert "cannot reach" in capsys.readouterr().err
    assert main(["status", "--server-url", url, "--token", "t"]) == EXIT_NOT_READY
    assert capsys.readouterr().out.strip() == "stopped"


def _response(body: bytes, content_type: str) -> requests.Response:
    response = requests.Response()
    response.status_code = 200
    response.headers["Content-Type"] = content_type
    response.raw = io.BytesIO(body)
    return response


def test_stream_decoding_of_sse_and_ndjson():
    sse = (b": keepalive\n\nid: 0\ndata: {\"event\": \"notebook_start\"}\n\n"
           b"id: 1\r\ndata: {\"event\": \"start\",\r\ndata:  \"seq\": 1}\r\n\r\n")
    events = list(iter_stream_events(_response(sse, "text/event-stream; charset=UTF-8")))
    assert events == [{"event": "notebook_start", "seq": 0}, {"event": "start", "seq": 1}]
    nd = b'{"event": "a", "seq": 0}\n\n{"event": "b", "seq": 1}'
    events = list(iter_stream_events(_response(nd, "application/x-ndjson")))
    assert [e["event"] for e in events] == ["a", "b"]


@pytest.mark.parametrize("argv", [["run", "nb.ipynb", "--start"], ["list", "--all-servers"]])
def test_hub_only_options_with_a_direct_server_are_usage_errors(argv, capsys):
    url = f"http://127.0.0.1:{free_port()}/"
    assert main([*argv, "--server-url", url, "--token", "t"]) == EXIT_USAGE
    assert "needs the hub service" in capsys.readouterr().err


def test_reserved_names_are_not_parameters(capsys):
    url = f"http://127.0.0.1:{free_port()}/"
    argv = ["run", "nb.ipynb", "-p", "output_path", "x.ipynb", "--server-url", url]
    assert main(argv) == EXIT_USAGE
    assert "output_path: reserved" in capsys.readouterr().err
