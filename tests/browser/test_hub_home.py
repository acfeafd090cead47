"""The hub's home page with nbexec's home.html (enabled by hub_config/jupyterhub_config.py).

A private hub whose spawner waits a few seconds before starting makes the "starting" state
last long enough to be seen; the page learns everything from the hub's own API.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(300)

SLOW_SPAWN = """
import asyncio

async def _slow_spawn(spawner):
    # keeps the server pending for a while, so the home page can show it starting
    await asyncio.sleep(6)

c.Spawner.pre_spawn_hook = _slow_spawn
"""


def state_of(page) -> str:
    return page.locator("#nbexec-home-state").inner_text()


def test_home_page_shows_server_state_and_start_progress(realhub_factory, browser_user):
    hub = realhub_factory(extra_config=SLOW_SPAWN)
    alice = browser_user("alice", hub=hub)
    page = alice.page
    page.goto(f"{hub.url}/hub/home")
    page.wait_for_selector("#nbexec-home-status[data-state='stopped']")
    assert "not running" in page.locator("#nbexec-home-message").inner_text()
    # the hub's own home page is still there around it
    assert page.locator("#start").count() == 1
    assert page.locator("#nbexec-home-link").get_attribute("href") == "/services/nbexec/"
    alice.shot("home-stopped")

    # a start from elsewhere (the hub API): the page notices it and follows the progress
    hub.start_server("alice", wait=False)
    page.wait_for_selector("#nbexec-home-status[data-state='starting']", timeout=30_000)
    page.wait_for_selector("#nbexec-home-progress:not(.d-none)")
    alice.shot("home-starting")
    # once ready, the page loads itself again so that the hub's own buttons match
    page.wait_for_selector("#nbexec-home-status[data-rendered-active='true'][data-state='ready']",
                           timeout=90_000)
    assert page.locator("#nbexec-home-message").inner_text() == (
        "Your server is running at /user/alice/"
    )
    assert page.locator("#nbexec-home-progress").is_hidden()
    assert page.locator("#stop").is_visible()
    alice.shot("home-ready")

    # and after a reload the state comes straight from the hub's user model
    page.reload()
    page.wait_for_selector("#nbexec-home-status[data-state='ready']")
    hub.stop_server("alice")
    page.wait_for_selector(
        "#nbexec-home-status[data-rendered-active='false'][data-state='stopped']",
        timeout=30_000,
    )
    assert page.locator("#stop").count() == 0
