"""Bodies over the service's limit and unknown API routes: JSON answers, never a dropped
connection or an HTML page."""

from __future__ import annotations

from tests.support.service_calls import Service, executions_path


def test_body_over_the_limit_is_413_json(realhub_factory) -> None:  # type: ignore[no-untyped-def]
    hub = realhub_factory(service_args=("--max-body-size=100000",))
    alice = Service(hub, hub.create_token("alice"))
    path = executions_path("alice")
    r = alice.post(path, data={"notebook": "x.ipynb", "big": "x" * 200_000})
    assert r.status_code == 413, r.text
    assert "100000" in r.json()["message"]
    # the connection stays usable, and a body under the limit goes through to the (stopped) server
    r = alice.post(path, data={"notebook": "x.ipynb", "small": "x" * 1000})
    assert r.status_code == 409, r.text
    # an unauthenticated oversized body gets its 401 (at once; the body is dropped)
    r = Service(hub, None).post(path, data={"big": "x" * 200_000})
    assert r.status_code == 401, r.text


def test_unknown_api_routes_are_json_404(alice: Service) -> None:
    for path in ("api/nope", "api/users/alice/", "api/users", "api/users/alice/servers/"):
        r = alice.get(path)
        assert r.status_code == 404, (path, r.text)
        assert r.json()["message"]
