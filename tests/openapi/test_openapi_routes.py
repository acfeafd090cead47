"""docs/openapi.yaml against the code: a valid document, every route documented, every
documented operation answering on a real server and a real hub.

The implemented routes are read from the modules that register them: the extension's
``default_handlers`` and the service application's router (`NbexecService.make_app`).
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import pytest
import requests
from openapi_spec_validator import validate
from tornado import web

from tests.support.openapi_helpers import SERVICE_PREFIX, concrete, load_spec, operations
from tests.support.realhub import tiny_notebook
from tests.support.servers import JupyterServer

SPEC = load_spec()
EXTENSION_OPS = operations(SPEC, "execution-api")
SERVICE_OPS = operations(SPEC, "hub-service")


def implemented_methods(handler: type) -> set[str]:
    """The HTTP methods a tornado handler class answers itself (others get 405)."""
    return {
        m.upper() for m in ("get", "post", "put", "patch", "delete")
        if getattr(handler, m) is not getattr(web.RequestHandler, m)
    }


def extension_routes() -> list[tuple[str, type]]:
    from nbexec_hub.extension.handlers import default_handlers

    return [(pattern, handler) for pattern, handler, *_ in default_handlers]


async def service_routes() -> list[tuple[str, type]]:
    from nbexec_hub.service.app import NbexecService

    service = NbexecService(
        api_token="not-a-real-token", hub_api_url="http://127.0.0.1:9/hub/api",
        proxy_url="http://127.0.0.1:9", service_prefix=SERVICE_PREFIX,
    )
    app = service.make_app()
    return [(rule.matcher.regex.pattern, rule.target) for rule in app.wildcard_router.rules]


def documented(path_regex: str, method: str, ops: list[tuple[str, str]]) -> bool:
    regex = re.compile(path_regex)
    return any(m == method and regex.fullmatch(concrete(p)) for p, m in ops)


def test_document_is_valid_openapi_3_1() -> None:
    validate(SPEC)
    assert SPEC["openapi"].startswith("3.1")
    ids = [op.get("operationId") for item in SPEC["paths"].values()
           for m, op in item.items() if m in ("get", "post", "put", "patch", "delete")]
    assert all(ids) and len(ids) == len(set(ids)), "every operation has a unique operationId"


def test_every_extension_route_is_documented() -> None:
    routes = extension_routes()
    assert routes, "the extension registers no routes"
    missing = [
        f"{method} {pattern}"
        for pattern, handler in routes
        for method in sorted(implemented_methods(handler))
        if not documented(pattern, method, EXTENSION_OPS)
    ]
    assert not missing, f"extension routes missing from docs/openapi.yaml: {missing}"


async def test_every_service_route_is_documented() -> None:
    routes = await service_routes()
    ext = extension_routes()
    missing = []
    for pattern, handler in routes:
        methods = implemented_methods(handler)
        if handler.__name__ == "ForwardHandler":
            # a transparent forwarder: only what the upstream extension answers counts
            methods = set()
            for ext_pattern, ext_handler in ext:
                for method in implemented_methods(ext_handler):
                    fwd = concrete(SERVICE_PREFIX + "api/users/{user}" + ext_pattern.rstrip("/?"))
                    if re.fullmatch(pattern, fwd):
                        methods.add(method)
            methods.add("GET")  # contents and kernelspecs (read-only)
        for method in sorted(methods):
            if not documented(pattern, method, SERVICE_OPS):
                missing.append(f"{method} {pattern} ({handler.__name__})")
    assert not missing, f"service routes missing from docs/openapi.yaml: {missing}"


async def test_every_documented_operation_is_routed() -> None:
    """Statically: each documented operation matches a route whose handler has the method."""
    routes = [(p, h) for p, h in extension_routes()] + await service_routes()
    unrouted = []
    for path, method in EXTENSION_OPS + SERVICE_OPS:
        url = concrete(path)
        if not any(re.fullmatch(p, url) and (method in implemented_methods(h)) for p, h in routes):
            unrouted.append(f"{method} {path}")
    assert not unrouted, f"documented but not implemented: {unrouted}"


# -- live: each documented operation, called with real resources, answers as documented


def _tail(path: str) -> str:
    """The Execution API part of a documented path (``/api/executions…``), else the path."""
    m = re.search(r"/(executions.*|contents.*|kernelspecs)$", path)
    if path.startswith("/api/"):
        return path
    return "/api/" + m.group(1) if m and "/api/users/" in path else path


#: how to call each Execution API operation successfully: (request kwargs, expected status)
EXECUTION_CALLS: dict[tuple[str, str], tuple[dict[str, Any], int]] = {
    ("/api/executions", "GET"): ({}, 200),
    ("/api/executions", "POST"): ({"data": {"notebook": "nb.ipynb"}}, 202),
    ("/api/executions", "DELETE"): ({}, 202),
    ("/api/executions/parameters", "GET"): ({"params": {"notebook": "nb.ipynb"}}, 200),
    ("/api/executions/{exec_id}", "GET"): ({}, 200),
    ("/api/executions/{exec_id}", "POST"): ({"data": {"action": "shutdown"}}, 202),
    ("/api/executions/{exec_id}", "DELETE"): ({}, 202),
    ("/api/executions/{exec_id}/progress", "GET"): ({}, 200),
    ("/api/contents", "GET"): ({}, 200),
    ("/api/contents/{path}", "GET"): ({}, 200),
    ("/api/kernelspecs", "GET"): ({}, 200),
}


def _finished_execution(base: str, headers: dict[str, str]) -> str:
    """Run nb.ipynb to completion on a server (its API base URL) and return the exec_id."""
    resp = requests.post(f"{base}/api/executions", data={"notebook": "nb.ipynb"},
                         headers=headers, timeout=60)
    assert resp.status_code == 202, resp.text
    exec_id = resp.json()["execution"]["exec_id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        model = requests.get(f"{base}/api/executions/{exec_id}", headers=headers,
                             timeout=30).json()["execution"]
        if model["completed_at"] is not None:
            return exec_id
        time.sleep(0.2)
    raise TimeoutError(f"execution {exec_id} did not finish")


def _call(
    url: str, method: str, headers: dict[str, str], kwargs: dict[str, Any]
) -> requests.Response:
    resp = requests.request(method, url, headers=headers, timeout=60, stream=True, **kwargs)
    resp.content  # noqa: B018  (read streams to their end)
    return resp


def _documented_statuses(path: str, method: str) -> set[int]:
    return {int(code) for code in SPEC["paths"][path][method.lower()]["responses"]}


def test_every_documented_extension_operation_answers(jupyter_server: JupyterServer) -> None:
    bad = []
    for path, method in sorted(EXTENSION_OPS, key=lambda op: op[0] == "/api/executions"):
        kwargs, expected = EXECUTION_CALLS[(path, method)]
        values = {}
        if "{exec_id}" in path:
            values["exec_id"] = _finished_execution(jupyter_server.url, jupyter_server.headers)
        url = jupyter_server.url + concrete(path, **values)
        resp = _call(url, method, jupyter_server.headers, kwargs)
        if resp.status_code != expected or expected not in _documented_statuses(path, method):
            bad.append(f"{method} {path}: {resp.status_code} {resp.text[:200]}")
    assert not bad, "\n".join(bad)


@pytest.fixture
def alice_named_server(realhub: Any) -> Any:
    realhub.start_server("alice", "s1")
    yield "s1"
    realhub.stop_server("alice", "s1", wait=False)


def test_every_documented_service_operation_answers(
    realhub: Any, alice_token: str, alice_server: Any, alice_named_server: str
) -> None:
    realhub.put_notebook("alice", "nb.ipynb", tiny_notebook("print(x)"))
    headers = {"Authorization": f"token {alice_token}"}
    bad = []
    for path, method in SERVICE_OPS:
        values: dict[str, str] = {}
        kwargs: dict[str, Any] = {}
        expected = {200}
        if "{exec_id}" in path:
            server = "/user/alice/s1" if "{server_name}" in path else "/user/alice"
            values["exec_id"] = _finished_execution(realhub.url + server, headers)
        if "/static/" in path:
            values["path"] = "nbexec.css"
        tail = _tail(path)
        if (tail, method) in EXECUTION_CALLS:
            kwargs, status = EXECUTION_CALLS[(tail, method)]
            expected = {status}
        elif path.endswith("/server") or path.endswith("{server_name}"):
            expected = {200} if method == "GET" else {202}
        elif path.endswith("oauth_callback"):
            expected = {400}  # no OAuth code: refused, but routed
        elif path.endswith("/metrics"):
            expected = {403}  # alice's scopes do not include read:metrics
        url = realhub.url + concrete(path, **values)
        resp = _call(url, method, headers, kwargs)
        documented_ok = resp.status_code in _documented_statuses(path, method)
        if resp.status_code not in expected or not documented_ok:
            bad.append(f"{method} {path}: {resp.status_code} {resp.text[:200]}")
    assert not bad, "\n".join(bad)


def test_unknown_route_is_not_mistaken_for_a_documented_one(jupyter_server: JupyterServer) -> None:
    """The live checks above mean something: an undocumented path does get 404."""
    url = f"{jupyter_server.url}/api/executions/{uuid.uuid4()}/no-such-thing"
    assert requests.get(url, headers=jupyter_server.headers, timeout=30).status_code == 404
