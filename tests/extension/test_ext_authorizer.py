"""Issue 10, item 7: requests go through the server's ``Authorizer`` like its kernels API.

A deployment whose authorizer allows a user only ``read`` lets them list and watch
executions but not run, shut down or delete them (403 JSON); callers without credentials
still get 401 JSON before the authorizer is asked.
"""

from __future__ import annotations

import json

import pytest
from jupyter_server.auth import Authorizer

from nbexec_hub.extension.request import parse_run_request
from tests.support.ext_helpers import server_config, settle


class ReadOnlyAuthorizer(Authorizer):
    """Allows ``read`` only, and records every question it is asked."""

    asked: list[tuple[str, str]] = []

    def is_authorized(self, handler, user, action, resource):
        self.asked.append((action, resource))
        return action == "read"


@pytest.fixture
def jp_server_config():
    """The extension on a server whose authorizer allows only reading."""
    config = server_config()
    config["ServerApp"]["authorizer_class"] = ReadOnlyAuthorizer
    return config


@pytest.fixture
def asked():
    ReadOnlyAuthorizer.asked.clear()
    yield ReadOnlyAuthorizer.asked
    ReadOnlyAuthorizer.asked.clear()


@pytest.fixture
async def execution(manager):
    """An execution started without HTTP (the read-only caller cannot start one)."""
    ex = await manager.create(parse_run_request({"notebook": "simple.ipynb"}, from_form=True))
    yield ex
    await settle(manager)


async def fetch(jp_fetch, method, *parts, body=None, headers=None, params=None):
    response = await jp_fetch("api", "executions", *parts, method=method, body=body,
                              headers=headers or {}, params=params, raise_error=False,
                              follow_redirects=False)
    return response.code, response


async def test_read_only_users_may_look(jp_fetch, asked, execution):
    exec_id = execution.exec_id
    code, response = await fetch(jp_fetch, "GET")
    assert code == 200 and [m["exec_id"] for m in json.loads(response.body)["executions"]] == [
        exec_id
    ]
    code, _ = await fetch(jp_fetch, "GET", exec_id)
    assert code == 200
    code, _ = await fetch(jp_fetch, "GET", exec_id, "progress")
    assert code == 200
    code, response = await fetch(jp_fetch, "GET", "parameters", params={"notebook": "params.ipynb"})
    assert code == 200 and json.loads(response.body)["parameters"]
    code, _ = await fetch(jp_fetch, "GET", "no-such-id")
    assert code == 404
    assert set(asked) == {("read", "kernels")} and len(asked) == 5


@pytest.mark.parametrize(
    "method, parts, body, action",
    [
        ("POST", (), "notebook=simple.ipynb", "execute"),
        ("DELETE", (), None, "write"),
        ("POST", ("{id}",), "action=shutdown", "write"),
        ("DELETE", ("{id}",), None, "write"),
    ],
)
async def test_read_only_users_get_403_on_changes(
    jp_fetch, asked, manager, execution, jp_root_dir, method, parts, body, action
):
    parts = tuple(part.format(id=execution.exec_id) for part in parts)
    code, response = await fetch(jp_fetch, method, *parts, body=body)
    assert code == 403
    assert response.headers["Content-Type"].startswith("application/json")
    message = json.loads(response.body)["message"]
    assert action in message and "kernels" in message
    assert asked == [(action, "kernels")]
    assert [ex.exec_id for ex in manager.list()] == [execution.exec_id]  # nothing changed
    assert not list(jp_root_dir.glob("simple-Executed2*"))


async def test_anonymous_callers_still_get_401(jp_fetch, asked):
    code, response = await fetch(jp_fetch, "POST", body="notebook=simple.ipynb",
                                 headers={"Authorization": ""})
    assert code == 401 and json.loads(response.body)["reason"] == "Unauthorized"
    assert asked == []  # authentication comes first
