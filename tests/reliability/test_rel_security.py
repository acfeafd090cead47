"""Security walks over every documented route (docs/openapi.yaml) on a real hub: nothing
answers without credentials, bob gets nothing of alice's, cookies need the XSRF token,
tokens never leak into answers or logs, and no CORS headers are ever sent."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.support.openapi_helpers import concrete, load_spec, operations
from tests.support.realhub import RealHub, tiny_notebook
from tests.support.service_calls import Service

SPEC = load_spec()
#: routes open to anyone on purpose: health probes, the page's static files, OAuth callback
OPEN = ("/api/health", "/static/{path}", "/oauth_callback")
SERVICE_OPS = [op for op in operations(SPEC, "hub-service") if not op[0].endswith(OPEN)]
EXTENSION_OPS = operations(SPEC, "execution-api")
SEEN: list[requests.Response] = []


def json_message(resp: requests.Response) -> str | None:
    """The ``message`` of a JSON error body, or None when the body is not one."""
    try:
        body = resp.json()
    except ValueError:
        return None
    return body.get("message") if isinstance(body, dict) else None


def call(method: str, url: str, **kw: Any) -> requests.Response:
    kw.setdefault("timeout", 60)
    kw.setdefault("allow_redirects", False)
    resp = requests.request(method, url, **kw)
    SEEN.append(resp)
    return resp


@pytest.fixture
def alice_exec(realhub: RealHub, alice_token: str, alice_server: Any) -> str:
    realhub.put_notebook("alice", "sec/nb.ipynb", tiny_notebook())
    return Service(realhub, alice_token).run("alice", "sec/nb.ipynb")["exec_id"]


def service_urls(hub: RealHub, exec_id: str) -> Iterator[tuple[str, str, str]]:
    """(method, path template, URL) of every protected service operation, on alice's things."""
    for path, method in SERVICE_OPS:
        yield method, path, hub.url + concrete(path, exec_id=exec_id, server_name="s1")


def extension_urls(hub: RealHub, exec_id: str) -> Iterator[tuple[str, str, str]]:
    """Every Execution API operation on alice's server, through the proxy."""
    for path, method in EXTENSION_OPS:
        yield method, path, f"{hub.url}/user/alice" + concrete(path, exec_id=exec_id)


@pytest.mark.parametrize("token", [None, "not-a-token", "0" * 32])
def test_no_route_answers_without_valid_credentials(
    realhub: RealHub, alice_exec: str, token: str | None
) -> None:
    headers = {"Authorization": f"token {token}"} if token else {}
    alice = Service(realhub, realhub.create_token("alice"))
    before = len(alice.request("GET", "api/users/alice/executions").json()["executions"])
    bad = []
    for method, path, url in service_urls(realhub, alice_exec):
        resp = call(method, url, headers=headers, data={"notebook": "sec/nb.ipynb"})
        if path == "/services/nbexec/":  # the page: off to the hub's login
            ok = resp.status_code in (302, 401) and "/hub/" in resp.headers.get("Location", "/hub/")
        else:
            ok = resp.status_code == 401 and json_message(resp)
        if not ok:
            bad.append(f"{method} {path}: {resp.status_code} {resp.text[:120]}")
    for method, path, url in extension_urls(realhub, alice_exec):
        resp = call(method, url, headers=headers, data={"notebook": "sec/nb.ipynb"})
        if resp.status_code not in (401, 403) and not (
            resp.status_code == 302 and "/hub/" in resp.headers.get("Location", "")
        ):
            bad.append(f"direct {method} {path}: {resp.status_code} {resp.text[:120]}")
    assert not bad, "\n".join(bad)
    after = alice.request("GET", "api/users/alice/executions").json()["executions"]
    assert len(after) == before, "an execution was started without credentials"


def test_bob_gets_nothing_of_alice(
    realhub: RealHub, alice_exec: str, bob_token: str
) -> None:
    headers = {"Authorization": f"token {bob_token}"}
    bad = []
    for method, path, url in service_urls(realhub, alice_exec):
        if path.endswith("/api/executions"):
            continue  # the fan-out: checked below
        if path == "/services/nbexec/":
            url += "?user=alice"
        resp = call(method, url, headers=headers, data={"notebook": "sec/nb.ipynb"})
        page = path == "/services/nbexec/"  # a page may say no in HTML
        if resp.status_code != 403 or not (page or json_message(resp)):
            bad.append(f"{method} {path}: {resp.status_code} {resp.text[:120]}")
    for method, path, url in extension_urls(realhub, alice_exec):
        resp = call(method, url, headers=headers, data={"notebook": "sec/nb.ipynb"})
        if resp.status_code not in (401, 403):
            bad.append(f"direct {method} {path}: {resp.status_code} {resp.text[:120]}")
    assert not bad, "\n".join(bad)
    fanout = call("GET", realhub.service_url("api/executions"), headers=headers).json()
    assert all(e["user"] == "bob" for e in fanout["executions"]), fanout


def test_cookie_requests_without_xsrf_are_refused(realhub: RealHub, alice_exec: str) -> None:
    session = realhub.login("alice")
    bad = []
    for method, path, url in service_urls(realhub, alice_exec):
        if method == "GET":
            continue
        resp = session.request(method, url, data={"notebook": "sec/nb.ipynb"}, timeout=60,
                               allow_redirects=False)
        SEEN.append(resp)
        if resp.status_code != 403:
            bad.append(f"{method} {path}: {resp.status_code} {resp.text[:120]}")
    assert not bad, "\n".join(bad)


def _cors(resp: requests.Response) -> dict[str, str]:
    return {k: v for k, v in resp.headers.items() if k.lower().startswith("access-control-")}


def test_no_cors_headers(realhub: RealHub, alice_exec: str, alice_token: str) -> None:
    """The service never opens CORS, for preflights or authenticated calls; the extension
    answers preflights without CORS headers.

    (A user's server itself follows jupyter_server's rule: a request that carries a valid
    *token* may come from any origin, since a browser never sends that token on its own;
    cookie-authenticated calls stay same-origin. That is jupyter_server's policy, set with
    ``c.ServerApp.allow_origin``, not something the extension adds.)
    """
    origin = "https://evil.example"
    bad = []
    for method, path, url in service_urls(realhub, alice_exec):
        for resp in (
            call("OPTIONS", url, headers={
                "Origin": origin, "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": "authorization"}),
            call(method, url, headers={"Origin": origin,
                                       "Authorization": f"token {alice_token}"},
                 data={"action": "none"} if method == "POST" else None),
        ):
            if _cors(resp):
                bad.append(f"{resp.request.method} {path}: {_cors(resp)}")
    for method, path, url in extension_urls(realhub, alice_exec):
        resp = call("OPTIONS", url, headers={
            "Origin": origin, "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization"})
        if _cors(resp):
            bad.append(f"direct OPTIONS {path}: {_cors(resp)}")
    assert not bad, "\n".join(bad)


def test_query_tokens_are_not_logged(realhub: RealHub, alice_exec: str) -> None:
    token = realhub.create_token("alice")
    for method, path, url in [*service_urls(realhub, alice_exec),
                              *extension_urls(realhub, alice_exec)]:
        if method == "GET" and not path.endswith("progress"):
            call("GET", f"{url}{'&' if '?' in url else '?'}token={token}")
    call("GET", realhub.service_url(f"api/users/alice/executions/{uuid.uuid4()}")
         + f"?token={token}&_xsrf={token}")
    log = realhub.log_text()
    assert token not in log, [line for line in log.splitlines() if token in line][:3]


def test_the_service_token_never_reaches_a_caller(
    realhub: RealHub, alice_exec: str, alice_token: str
) -> None:
    """Over alice's GETs of every route, errors included, and every answer the walks above
    received when they ran first."""
    secret = realhub.service_token
    headers = {"Authorization": f"token {alice_token}"}
    for method, _path, url in [*service_urls(realhub, alice_exec),
                               *extension_urls(realhub, alice_exec)]:
        if method == "GET":
            call("GET", url, headers=headers)
            call("GET", url.replace(alice_exec, "nope"), headers=headers)
    for resp in SEEN:
        assert secret not in resp.text
        assert all(secret not in v for v in resp.headers.values())
    assert secret not in realhub.log_text()
