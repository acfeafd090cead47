"""An attacker with an ordinary account (bob) against a real hub (issue 10, CONTRACT B.1/B.4).

Every attack that once worked is replayed here and must fail: encoded traversal through
the forwarder (every encoding, every method), the service's own token reaching a user's
server (bob's server records every credential it is sent, and the hub is asked what each
one grants), a user's server answering HTML, a narrow token used beyond its scopes, a GET
that starts a server, kernel connection files in users' folders, and bodies the Execution
API must refuse. Bob's server is hostile for the whole module (tests/support/hostile_server.py).
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
import requests

from tests.support.hostile_server import hostile_hub, seen_tokens
from tests.support.realhub import RealHub, tiny_notebook
from tests.support.service_calls import Service, executions_path, ndjson_events

PREFIX = "/services/nbexec/api/users"
#: path tails that once left the user's server, or could (raw, as sent on the wire)
TRAVERSALS = [
    "..%2f..%2f..%2f..%2fhub%2fapi%2fusers",
    "..%2F..%2F..%2Falice%2Fapi%2Fcontents%2Fpwn.ipynb",
    "%2e%2e%2f%2e%2e%2f%2e%2e%2falice%2fapi%2fexecutions",
    "%2E%2e%2F%2e%2E%2fcarol%2Fapi%2Fkernels",
    "..%5c..%5c..%5calice%5capi%5cterminals",
    "%252e%252e%252f%252e%252e%252falice",
    "%25252e%25252e%25252f",
    "x%00y",
    "a//b",
    "a%2f%2fb",
    "abc%2fprogress",
    "%2fetc%2fpasswd",
]
#: dot segments: the proxy resolves these (``%2e`` included) before the service sees them,
#: so they arrive as another path of the same user; the service refuses them itself too
#: (tests/hub/test_hub_service_app.py::test_upstream_paths_refuse_dot_segments)
DOT_SEGMENTS = ["./a", "%2e/a", "..", "%2e%2e", "../../..", "a/../../b"]
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


@pytest.fixture(scope="module")
def hub() -> Iterator[RealHub]:
    """A private hub on which bob's server is hostile from its first start."""
    with hostile_hub(
        "realhub-attacks-", service_args=("--NbexecService.server_token_min_renew_seconds=2",)
    ) as hub:
        yield hub


@pytest.fixture(scope="module")
def bob(hub: RealHub) -> Service:
    return Service(hub, hub.create_token("bob"))


@pytest.fixture(scope="module")
def alice(hub: RealHub) -> Service:
    return Service(hub, hub.create_token("alice"))


@pytest.fixture(scope="module")
def admin(hub: RealHub) -> Service:
    return Service(hub, hub.create_token("admin"))


@pytest.fixture(scope="module")
def servers(hub: RealHub) -> None:
    hub.start_server("alice")
    hub.start_server("bob")


def raw_request(
    hub: RealHub, method: str, path: str, token: str | None, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    """A request whose path goes on the wire byte for byte (no client normalizes it)."""
    url = urlparse(hub.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    headers = {"Authorization": f"token {token}"} if token else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_encoded_traversal_never_leaves_the_resource(
    hub: RealHub, bob: Service, servers: None
) -> None:
    wrong = []
    for resource in ("executions", "contents", "kernelspecs"):
        for tail in TRAVERSALS:
            for method in METHODS:
                path = f"{PREFIX}/bob/{resource}/{tail}"
                body = b"{}" if method in ("POST", "PUT", "PATCH") else None
                status, headers, text = raw_request(hub, method, path, bob.token, body)
                if status != 400 or "application/json" not in headers.get("content-type", ""):
                    wrong.append((method, path, status, text[:200]))
        for tail in DOT_SEGMENTS:
            status, _, text = raw_request(hub, "GET", f"{PREFIX}/bob/{resource}/{tail}", bob.token)
            if status not in (400, 404, 405):
                wrong.append(("GET", tail, status, text[:200]))
    assert not wrong, "\n".join(map(str, wrong))
    # and nothing of the kind was forwarded anywhere
    assert "Forwarding" not in "\n".join(
        line for line in hub.log_text().splitlines() if "%2f" in line.lower()
    )


@pytest.mark.parametrize(
    "user_part",
    ["bob%2f..%2falice", "bob%2F..%2F..%2Fhub", "bob%5c..%5calice", "bob%00"],
)
def test_encoded_user_and_server_names_are_400(
    hub: RealHub, bob: Service, servers: None, user_part: str
) -> None:
    for path in (
        f"{PREFIX}/{user_part}/executions",
        f"{PREFIX}/bob/servers/{user_part}/executions",
        f"{PREFIX}/{user_part}/server",
    ):
        status, _, text = raw_request(hub, "GET", path, bob.token)
        assert status in (400, 404), (path, status, text)
        assert b"alice" not in text.split(b'"message"')[0]


def test_no_credential_sent_to_a_server_is_worth_more_than_that_server(
    hub: RealHub, bob: Service, admin: Service, servers: None
) -> None:
    """Bob's server records every Authorization header it gets while bob, and an admin,
    use it through the service in every way there is; the hub then says what each grants."""
    hub.put_notebook("bob", "nb.ipynb", tiny_notebook())
    execs = executions_path("bob")
    exec_id = bob.run("bob", "nb.ipynb")["exec_id"]
    bob.wait_done("bob", exec_id)
    with bob.get(f"{execs}/{exec_id}/progress", stream=True) as r:
        assert [e["event"] for e in ndjson_events(r)][-1] == "notebook_complete"
    assert bob.get(execs).status_code == 200
    assert bob.get("api/users/bob/contents").status_code == 200
    assert bob.get("api/users/bob/kernelspecs").status_code == 200
    assert bob.get("api/executions").json()["servers"][0]["ok"] is True
    assert admin.get(execs).status_code == 200
    assert admin.get("api/executions").status_code == 200

    seen = seen_tokens(hub.home("bob"))
    assert seen, "the hostile server recorded no credential at all"
    assert hub.service_token not in seen
    assert not seen & {bob.token, admin.token}
    for token in seen:
        me = hub.api("GET", "/user", token=token)
        assert me.status_code == 200, me.text
        model = me.json()
        assert model["name"] == "bob" and model["kind"] == "user"
        # the hub lets every token of bob read bob's own name and groups; nothing else
        identity = {"read:users:name!user=bob", "read:users:groups!user=bob"}
        assert set(model["scopes"]) - identity == {"access:servers!server=bob/"}, model["scopes"]
        # and with it: nothing of the hub's API, nothing of alice's server
        assert hub.api("GET", "/users", token=token).status_code == 403
        r = requests.get(
            f"{hub.url}/user/alice/api/contents",
            headers={"Authorization": f"token {token}"},
            allow_redirects=False,
            timeout=30,
        )
        assert r.status_code in (302, 403), r.status_code
        assert Service(hub, token).get(execs).status_code == 403


def test_a_server_answering_html_is_a_502(hub: RealHub, bob: Service, servers: None) -> None:
    r = bob.get(executions_path("bob") + "?evil=html")
    assert r.status_code == 502, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "text/html" in r.json()["message"]
    assert "<script>" not in r.text
    # an error status with an HTML body: the status, with a JSON body of the service's
    r = bob.get(executions_path("bob") + "?evil=html&code=404")
    assert r.status_code == 404
    assert r.headers["Content-Type"].startswith("application/json")
    assert "<script>" not in r.text
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    # labelled JSON, but not JSON: a 502 too (an error status keeps its code, our body)
    r = bob.get(executions_path("bob") + "?evil=notjson")
    assert r.status_code == 502 and "not JSON" in r.json()["message"], r.text
    r = bob.get(executions_path("bob") + "?evil=notjson&code=400")
    assert r.status_code == 400 and "<script>" not in r.text
    assert r.headers["Content-Type"].startswith("application/json")


def test_a_narrow_token_covers_nothing_beyond_its_scopes(
    hub: RealHub, servers: None
) -> None:
    """A token bob made with only access to the service may not use his own servers."""
    narrow = Service(hub, hub.create_token("bob", scopes=["access:services!service=nbexec"]))
    hub.put_notebook("bob", "nb.ipynb", tiny_notebook())
    r = narrow.post(executions_path("bob"), data={"notebook": "nb.ipynb"})
    assert r.status_code == 403, r.text
    assert narrow.post("api/users/bob/servers/extra?start=1").status_code == 403
    assert narrow.post("api/users/bob/servers/extra").status_code == 403
    assert hub.server_model("bob", "extra") is None
    listing = narrow.get("api/executions").json()
    assert listing["executions"] == [] and listing["servers"] == []
    # access to the default server, but not to start servers
    scoped = Service(
        hub,
        hub.create_token(
            "bob", scopes=["access:services!service=nbexec", "access:servers!server=bob/"]
        ),
    )
    assert scoped.get(executions_path("bob")).status_code == 200
    assert scoped.post("api/users/bob/servers/extra").status_code == 403
    assert scoped.get(executions_path("bob", "extra")).status_code == 403


def test_get_never_starts_a_server(hub: RealHub, alice: Service) -> None:
    hub.stop_server("alice", "side")
    for query in ("?start=1", "?start=1&wait=5", "?start=true"):
        r = alice.get(executions_path("alice", "side") + query)
        assert r.status_code == 409, r.text
        assert r.json()["state"] == "stopped"
    r = alice.get("api/users/alice/servers/side/progress?start=1")
    assert r.status_code == 409
    time.sleep(1)
    assert hub.server_model("alice", "side") is None


def test_no_kernel_connection_file_in_a_users_folder(
    hub: RealHub, alice: Service, servers: None
) -> None:
    hub.put_notebook("alice", "sub/nb.ipynb", tiny_notebook())
    for _ in range(3):
        exec_id = alice.run("alice", "sub/nb.ipynb")["exec_id"]
        assert alice.wait_done("alice", exec_id)["status"] == "completed"
    # the Jupyter runtime folder (~/.local/share/jupyter/runtime here) is where they belong
    runtime = hub.home("alice") / ".local" / "share" / "jupyter" / "runtime"
    strays = [p for p in hub.home("alice").rglob("kernel-*.json") if runtime not in p.parents]
    assert not strays


@pytest.mark.parametrize(
    ("body", "form"),
    [
        (None, {"notebook": "nb.ipynb", "output_path": ".jupyter/evil.py"}),
        (None, {"notebook": "nb.ipynb", "output_path": "plain.txt", "overwrite": "true"}),
        (None, {"notebook": "nb.ipynb", "output_path": "sub/.hidden/x.ipynb"}),
        (b'{"notebook": "nb.ipynb", "x": NaN}', None),
        (b'{"notebook": "nb.ipynb", "x": Infinity}', None),
        (b'{"notebook": "nb.ipynb", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}", None),
        (b'{"notebook": "nb.ipynb", "x": 1e999}', None),
        (b'\xff\xfe{"notebook"', None),
    ],
)
def test_the_extension_refuses_what_it_must(
    hub: RealHub, alice: Service, servers: None, body: bytes | None, form: dict | None
) -> None:
    hub.put_notebook("alice", "nb.ipynb", tiny_notebook())
    if body is not None:
        r = alice.post(
            executions_path("alice"), data=body, headers={"Content-Type": "application/json"}
        )
    else:
        r = alice.post(executions_path("alice"), data=form)
    assert r.status_code == 400, r.text
    assert r.json()["message"]
    assert not (hub.home("alice") / ".jupyter" / "evil.py").exists()
    assert not (hub.home("alice") / "plain.txt").exists()


def test_the_page_may_be_framed_only_by_the_hub(hub: RealHub) -> None:
    session = hub.login("alice")
    r = session.get(hub.service_url(""), timeout=30)
    assert r.status_code == 200
    assert r.headers["Content-Security-Policy"] == "frame-ancestors 'self'"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    api = session.get(hub.service_url("api/users/alice/server"), timeout=30)
    assert "frame-ancestors 'none'" in api.headers["Content-Security-Policy"]
    assert json.loads(api.text)["user"] == "alice"


def test_a_refused_server_token_is_replaced_and_revoked(hub: RealHub, bob: Service) -> None:
    """Bob's server refuses the first token it sees (as after a user revoked it): the
    service mints another, the request succeeds, and the refused one is revoked."""
    hub.stop_server("bob", "refuser")
    hub.start_server("bob", "refuser")
    assert bob.get(executions_path("bob", "refuser")).status_code == 200
    time.sleep(2.5)  # older than the service's min_renew_seconds (2 s on this hub)
    r = bob.get(executions_path("bob", "refuser") + "?evil=refuse-first")
    assert r.status_code == 200, r.text
    refused = (hub.home("bob") / "refused-token.txt").read_text().partition(" ")[2]
    assert refused
    deadline = time.monotonic() + 10
    while hub.api("GET", "/user", token=refused).status_code != 403:
        assert time.monotonic() < deadline, "the refused token was not revoked"
        time.sleep(0.3)


def test_a_server_refusing_every_token_does_not_make_the_service_mint_per_request(
    hub: RealHub, bob: Service
) -> None:
    hub.start_server("bob", "refuse-all")
    before = hub.log_text().count("requested API token for bob")
    started = time.monotonic()
    for _ in range(15):
        assert bob.get(executions_path("bob", "refuse-all") + "?evil=refuse-all").status_code == 403
    minted = hub.log_text().count("requested API token for bob") - before
    # one token, and at most one more per min_renew_seconds (2 s here) that passed
    assert minted <= 2 + (time.monotonic() - started) / 2, minted


@pytest.mark.parametrize(
    ("body", "code", "ctype"),
    [
        (b'{"executions": [{"exec_id": "x", "v": NaN}]}', 200, "application/json"),
        (b'{"executions": ' + b"[" * 50000 + b"]" * 50000 + b"}", 200, "application/json"),
        (b"<script>document.title = 'owned'</script>", 205, "text/html"),
        (b'{"message": "odd"}', 999, "application/json"),
    ],
)
def test_odd_answers_never_reach_a_caller_as_they_are(
    hub: RealHub, bob: Service, admin: Service, servers: None, body: bytes, code: int,
    ctype: str,
) -> None:
    """NaN, JSON nested too deep, a no-content status with a page, a status outside HTTP's:
    502s or empty answers, never a 500, and the admin's fan-out survives them. (tornado
    itself will not send a 204 with a body, so bob's server cannot either.)"""
    (hub.home("bob") / "answer.bin").write_bytes(body)
    query = f"?evil=answer&code={code}&type={ctype}"
    r = bob.get(executions_path("bob") + query)
    assert r.status_code in (204, 205, 502), (r.status_code, r.text[:200])
    assert b"<script>" not in r.content and b"NaN" not in r.content
    assert "text/html" not in r.headers.get("Content-Type", "")
    always = hub.home("bob") / "answer-always.json"
    always.write_text(json.dumps({"code": code, "type": ctype}))
    try:
        listing = admin.get("api/executions")
    finally:
        always.unlink()
    assert listing.status_code == 200, listing.text[:300]
    assert b"NaN" not in listing.content and b"<script>" not in listing.content
    reports = [s for s in listing.json()["servers"] if s["user"] == "bob"]
    assert reports and not any(s["ok"] for s in reports), reports


def test_a_caller_leaving_while_its_server_starts_is_never_forwarded(
    hub: RealHub, bob: Service
) -> None:
    """Requests whose callers hung up while the server was starting are not sent on when
    it is ready, and give their slots back (the caller limit cannot be dodged that way)."""
    hub.stop_server("bob", "late")
    hub.start_server("bob", "late", wait=False)
    url = urlparse(hub.service_url(executions_path("bob", "late") + "/abc/progress?wait=60"))
    for _ in range(30):
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
        conn.putrequest("GET", url.path + "?" + url.query)
        conn.putheader("Authorization", f"token {bob.token}")
        conn.putheader("Accept", "text/event-stream")
        conn.endheaders()
        time.sleep(0.02)
        conn.close()
    hub.wait_ready("bob", "late")
    time.sleep(3)
    forwarded = [
        line for line in hub.log_text().splitlines()
        if "/user/bob/late/api/executions/abc/progress" in line and "ServerApp" in line
    ]
    assert len(forwarded) == 0, forwarded[:3]
    assert "not forwarding" in hub.log_text()


def test_nothing_above_made_the_service_log_an_uncaught_exception(hub: RealHub) -> None:
    """Refusing a hostile answer closes the upstream connection; it never raises inside
    tornado's callbacks (which would log an uncaught exception)."""
    errors = hub.uncaught_errors()
    assert not errors, "\n---\n".join(errors)
