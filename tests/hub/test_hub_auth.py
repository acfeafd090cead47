"""Who may do what (B.1): tokens, scopes, cookies with XSRF, on a real hub."""

from __future__ import annotations

import pytest
import requests

from tests.support.realhub import RealHub
from tests.support.service_calls import Service, executions_path


def test_no_token_is_401_json(realhub: RealHub) -> None:
    for path in ("api/users/alice/server", "api/users/alice/executions", "api/executions"):
        r = requests.get(realhub.service_url(path), timeout=30, allow_redirects=False)
        assert r.status_code == 401, path
        assert r.headers["Content-Type"].startswith("application/json")
        assert r.json()["message"]


def test_invalid_token_is_401(realhub: RealHub) -> None:
    r = Service(realhub, "not-a-token").get("api/users/alice/server")
    assert r.status_code == 401


def test_page_without_login_redirects_to_hub_login(realhub: RealHub) -> None:
    r = requests.get(realhub.service_url(""), timeout=30, allow_redirects=False)
    assert r.status_code == 302
    assert "/hub/api/oauth2/authorize" in r.headers["Location"]


def test_bob_may_not_use_alice_server(bob: Service) -> None:
    for method, path in [
        ("GET", "api/users/alice/server"),
        ("POST", "api/users/alice/server"),
        ("GET", "api/users/alice/server/progress"),
        ("GET", "api/users/alice/executions"),
        ("POST", "api/users/alice/executions?start=1"),
        ("GET", "api/users/alice/servers/x/executions"),
        ("GET", "api/users/alice/contents"),
    ]:
        r = bob.request(method, path)
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["message"]


def test_admin_may_use_alice_server(admin: Service, alice_server: dict) -> None:
    assert admin.get("api/users/alice/server").json()["state"] == "ready"
    r = admin.get(executions_path("alice"))
    assert r.status_code == 200, r.text
    assert "executions" in r.json()


def test_token_scoped_to_alice_servers(realhub: RealHub, alice_server: dict) -> None:
    token = realhub.create_token(
        "admin", scopes=["access:servers!user=alice", "access:services!service=nbexec"]
    )
    scoped = Service(realhub, token)
    assert scoped.get("api/users/alice/server").status_code == 200
    assert scoped.get(executions_path("alice")).status_code == 200
    # nothing beyond alice
    assert scoped.get("api/users/bob/server").status_code == 403
    # reaching a server is not starting one
    assert scoped.post("api/users/alice/servers/other").status_code == 403


def test_token_without_service_access_is_refused(realhub: RealHub) -> None:
    token = realhub.create_token("alice", scopes=["read:users!user=alice"])
    r = Service(realhub, token).get("api/users/alice/server")
    assert r.status_code == 403
    assert "access:services" in r.json()["message"]


@pytest.fixture
def alice_browser(realhub: RealHub) -> requests.Session:
    return realhub.login("alice")


def test_cookie_get_works_and_post_needs_xsrf(
    realhub: RealHub, alice_browser: requests.Session, alice_server: dict
) -> None:
    url = realhub.service_url("api/users/alice/server")
    assert alice_browser.get(url, timeout=30).json()["state"] == "ready"
    target = realhub.service_url("api/users/alice/executions")
    r = alice_browser.post(target, data={"notebook": "nope.ipynb"}, timeout=30)
    assert r.status_code == 403
    assert "XSRF" in r.json()["message"]
    # with the token: authenticated, forwarded (the server says the notebook is missing)
    assert alice_browser.xsrf  # type: ignore[attr-defined]
    r = alice_browser.post(
        target,
        data={"notebook": "nope.ipynb"},
        headers={"X-XSRFToken": alice_browser.xsrf},  # type: ignore[attr-defined]
        timeout=30,
    )
    assert r.status_code == 404, r.text
    # ?_xsrf= works too (EventSource cannot send headers)
    r = alice_browser.post(
        target + "?_xsrf=" + alice_browser.xsrf,  # type: ignore[attr-defined]
        data={"notebook": "nope.ipynb"},
        timeout=30,
    )
    assert r.status_code == 404, r.text


def test_cookie_fetch_get_needs_xsrf(realhub: RealHub, alice_browser: requests.Session) -> None:
    """A script's fetch() (Sec-Fetch-Mode: cors) is not a page navigation."""
    url = realhub.service_url("api/users/alice/server")
    r = alice_browser.get(url, headers={"Sec-Fetch-Mode": "cors"}, timeout=30)
    assert r.status_code == 403
    r = alice_browser.get(
        url + "?_xsrf=" + alice_browser.xsrf,  # type: ignore[attr-defined]
        headers={"Sec-Fetch-Mode": "cors"},
        timeout=30,
    )
    assert r.status_code == 200
