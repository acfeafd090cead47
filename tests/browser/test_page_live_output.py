"""The page shows the running cell's output as it grows, and a reload replays it (issue 14)."""

from __future__ import annotations

import pytest
from test_page_run import live_card, png_b64, start_run

from tests.support.realhub import tiny_notebook

pytestmark = pytest.mark.timeout(300)


def growing_notebook(lines: int = 12) -> object:
    """A cell that prints and clears, shows an image, then prints a line every 0.4 s."""
    return tiny_notebook(
        "import base64, time\nfrom IPython.display import Image, clear_output, display\n"
        "print('before clear', flush=True)\ntime.sleep(0.3)\nclear_output()\n"
        f"display(Image(data=base64.b64decode({png_b64()!r}), format='png'))\n"
        f"for i in range({lines}):\n    print('tick', i, flush=True)\n    time.sleep(0.4)"
    )


def test_running_output_shows_while_the_bar_runs_and_replays(
    realhub, alice_server, browser_user
):
    realhub.put_notebook("alice", "growing.ipynb", growing_notebook())
    alice = browser_user("alice")
    page = alice.open_service_page()
    start_run(page, "growing.ipynb")
    card = live_card(page, "growing.ipynb")
    running = card.locator(".nbexec-running-output")
    running.locator("pre", has_text="tick 1").wait_for()
    # the lines are there while the cell still runs: the bar has not reached its end
    assert card.locator(".badge", has_text="executing").count() == 1
    assert card.locator(".progress").get_attribute("aria-valuenow") == "50"  # cell 2 of 2
    assert "cell 2 of 2 running" in card.locator(".nbexec-live-counter").inner_text()
    image = running.locator("img.nbexec-output-image")
    assert image.evaluate("img => img.complete && img.naturalWidth") == 48
    assert "before clear" not in running.inner_text()  # clear_output cleared it
    alice.shot("live-output-running")

    # a reload replays the stream: the lines so far come back while it still runs
    exec_id = card.get_attribute("data-exec-id")
    page.reload()
    page.wait_for_selector("body[data-nbexec-loaded='true']")
    card = page.locator(f"article.nbexec-live[data-exec-id='{exec_id}']")
    running = card.locator(".nbexec-running-output")
    running.locator("pre", has_text="tick 3").wait_for()
    text = running.locator("pre").inner_text()
    assert text.startswith("tick 0\ntick 1\ntick 2\n"), text
    assert running.locator("img.nbexec-output-image").count() == 1
    assert "before clear" not in running.inner_text()
    assert card.locator(".badge", has_text="executing").count() == 1
    alice.shot("live-output-reloaded")

    card.locator(".badge", has_text="completed").wait_for()
    assert "tick 11" in card.locator(".nbexec-cells").inner_text()


def test_scroll_back_keeps_the_last_lines(realhub, alice_server, browser_user):
    realhub.put_notebook("alice", "many-lines.ipynb", tiny_notebook(
        "import time\nfor i in range(3000):\n    print('line', i)\ntime.sleep(3)"
    ))
    alice = browser_user("alice")
    page = alice.open_service_page()
    start_run(page, "many-lines.ipynb")
    card = live_card(page, "many-lines.ipynb")
    text = card.locator(".nbexec-running-output pre", has_text="line 2999")
    text.wait_for()
    lines = text.inner_text().splitlines()
    assert len(lines) == 1000 and lines[0] == "line 2000" and lines[-1] == "line 2999"
    assert "nbexec-output-trimmed" in text.get_attribute("class")
    card.locator(".badge", has_text="completed").wait_for()
