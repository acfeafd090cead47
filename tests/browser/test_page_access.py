"""The service page in Chromium: who sees what, admins' user picker, errors, keyboard, narrow."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.support.realhub import tiny_notebook

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

pytestmark = pytest.mark.timeout(300)


def run_via_api(realhub, user: str, notebook: str) -> str:
    """Start an execution as `user` through the service's API; its id."""
    token = realhub.create_token(user)
    r = requests.post(
        realhub.service_url(f"api/users/{user}/executions"),
        data={"notebook": notebook},
        headers={"Authorization": f"token {token}"},
        timeout=60,
    )
    assert r.status_code == 202, r.text
    return r.json()["execution"]["exec_id"]


def test_bob_cannot_see_alice_executions(realhub, alice_server, browser_user):
    realhub.put_notebook("alice", "secret.ipynb")
    exec_id = run_via_api(realhub, "alice", "secret.ipynb")
    realhub.start_server("bob")

    bob = browser_user("bob")
    page = bob.open_service_page()
    assert page.locator("#nbexec-server-title").inner_text() == "Server of bob"
    page.wait_for_selector("#nbexec-executions-body tr")
    page.locator("#nbexec-refresh").click()
    page.wait_for_timeout(500)
    assert page.locator(f"tr[data-exec-id='{exec_id}']").count() == 0
    assert "secret.ipynb" not in page.locator("#nbexec-executions").inner_text()
    assert page.locator("#nbexec-user-select").count() == 0  # no picker for plain users

    # bob's cookie cannot reach alice's executions, not even from his own page's script
    status = page.evaluate(
        """async ([url, xsrf]) => (await fetch(url, {headers: {"X-XSRFToken": xsrf}})).status""",
        [realhub.service_url("api/users/alice/executions"),
         page.evaluate("JSON.parse(document.getElementById('nbexec-config').textContent).xsrf_token")],
    )
    assert status == 403
    # and asking the page for alice's server shows a hub-style 403 page
    response = page.goto(realhub.service_url("?user=alice"))
    assert response.status == 403
    assert "403" in page.locator("h1").inner_text()
    assert "You may not use the server alice/" in page.locator(".error").inner_text()
    assert page.locator("#jupyterhub-logo").count() == 1
    bob.shot("bob-forbidden")


def test_admin_picks_another_user(realhub, alice_server, browser_user):
    realhub.put_notebook("alice", "for-admin.ipynb")
    exec_id = run_via_api(realhub, "alice", "for-admin.ipynb")

    admin = browser_user("admin")
    page = admin.open_service_page()
    choices = page.locator("#nbexec-user-select option").evaluate_all(
        "opts => opts.map(o => o.value)"
    )
    assert {"admin", "alice", "bob"} <= set(choices), choices
    page.select_option("#nbexec-user-select", "alice")
    with page.expect_navigation():
        page.click("#nbexec-user-switch")
    page.wait_for_selector("body[data-nbexec-loaded='true']")
    assert page.url.endswith("?user=alice")
    assert page.locator("#nbexec-server-title").inner_text() == "Server of alice"
    page.locator(f"tr[data-exec-id='{exec_id}']").wait_for()
    admin.shot("admin-acting-on-alice")


def test_api_errors_are_shown_in_the_page(realhub, alice_server, browser_user):
    realhub.put_notebook("alice", "errors/tiny.ipynb")
    alice = browser_user("alice")
    page = alice.open_service_page()
    page.locator(".nbexec-file[data-path='errors']").click()
    page.locator(".nbexec-file[data-path='errors/tiny.ipynb']").click()
    page.wait_for_selector("#nbexec-param-x")
    page.locator("#nbexec-options summary").click()
    # an output path that exists, without overwrite: the Execution API answers 400
    page.fill("#nbexec-output-path", "errors/tiny.ipynb")
    page.click("#nbexec-run-submit")
    error = page.locator("#nbexec-errors .nbexec-error").first
    error.wait_for()
    assert error.inner_text().startswith("Running errors/tiny.ipynb: 400:")
    assert "exists" in error.inner_text()
    alice.shot("api-error")
    error.locator(".btn-close").click()
    assert page.locator("#nbexec-errors .nbexec-error").count() == 0


def test_narrow_window_and_keyboard_only(realhub, alice_server, browser_user):
    realhub.put_notebook("alice", "keys/tiny notebook é.ipynb", tiny_notebook("print('hello', x)"))
    alice = browser_user("alice")
    page = alice.new_page(width=390, height=844)
    alice.open_service_page(page)
    page.wait_for_selector(".nbexec-file[data-path='keys']")
    # nothing sticks out sideways on a phone-sized window
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

    def tab_to(selector: str, limit: int = 60) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate("sel => document.activeElement.matches(sel)", selector):
                return
        raise AssertionError(f"{selector} cannot be reached with Tab")

    tab_to(".nbexec-file[data-path='keys']")
    page.keyboard.press("Enter")
    page.wait_for_selector(".nbexec-file[data-path='keys/tiny notebook é.ipynb']")
    tab_to(".nbexec-file[data-path='keys/tiny notebook é.ipynb']")
    page.keyboard.press("Enter")
    page.wait_for_selector("#nbexec-param-x")
    tab_to("#nbexec-param-x")
    page.keyboard.press("Control+A")
    page.keyboard.type("7")
    tab_to("#nbexec-run-submit")
    page.keyboard.press("Enter")
    title = page.locator("h3", has_text="keys/tiny notebook é.ipynb")
    card = page.locator("article.nbexec-live", has=title)
    card.locator(".badge", has_text="completed").wait_for()
    assert "hello 7" in card.locator(".nbexec-cells").inner_text()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    alice.shot("narrow-completed", page)

    # the delete confirmation is a modal dialog that Escape cancels
    row = page.locator("tr.nbexec-execution", has_text="keys/tiny notebook é.ipynb").first
    row.locator(".nbexec-delete").focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("#nbexec-confirm[open]")
    assert page.evaluate("document.activeElement.id") == "nbexec-confirm-cancel"
    page.keyboard.press("Escape")
    page.wait_for_function("!document.getElementById('nbexec-confirm').open")
    assert row.count() == 1
