"""The service page in Chromium: start the server, run notebooks, follow them live, shut down."""

from __future__ import annotations

import base64
import json
import re
import struct
import zlib
from pathlib import Path

import nbformat
import pytest
import requests

from tests.support.realhub import tiny_notebook

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

pytestmark = pytest.mark.timeout(300)


def png_b64(width: int = 48, height: int = 24) -> str:
    """A valid red PNG of that size, base64-encoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return base64.b64encode(png).decode()


def live_card(page, path: str):
    """The live view card of the (newest) execution of `path`."""
    return page.locator("article.nbexec-live", has=page.locator("h3", has_text=path)).first


def choose_notebook(page, path: str) -> None:
    """Walk the file browser (from the home folder) to `path`, pick it, wait for its fields."""
    parts = path.split("/")
    for i in range(1, len(parts)):
        page.locator(f".nbexec-file[data-path='{'/'.join(parts[:i])}']").click()
    page.locator(f".nbexec-file[data-path='{path}']").click()
    page.wait_for_selector(
        "#nbexec-params-fields .nbexec-param, #nbexec-params-fields .nbexec-no-params"
    )


def start_run(page, path: str, params: dict[str, str] | None = None) -> None:
    choose_notebook(page, path)
    for name, value in (params or {}).items():
        field = page.locator(f"#nbexec-param-{name}")
        if field.evaluate("el => el.tagName") == "SELECT":
            field.select_option(value)
        else:
            field.fill(value)
    page.click("#nbexec-run-submit")
    live_card(page, path).wait_for()


def test_start_server_run_parameterized_and_open_output(realhub, browser_user):
    realhub.stop_server("alice")
    realhub.put_notebook(
        "alice", "page-demo/parameters_demo.ipynb", EXAMPLES / "parameters_demo.ipynb"
    )
    alice = browser_user("alice")
    page = alice.open_service_page()

    state = page.locator("#nbexec-server-state")
    assert state.inner_text() == "stopped"
    assert page.locator("#nbexec-run-disabled").is_visible()
    alice.shot("01-server-stopped")

    page.click("#nbexec-server-start")
    page.wait_for_selector("#nbexec-server-progress:not(.d-none)")
    alice.shot("02-server-starting")
    page.wait_for_function(
        "document.getElementById('nbexec-server-state').textContent === 'ready'", timeout=90_000
    )
    assert page.locator("#nbexec-server-open").get_attribute("href") == "/user/alice/"
    # the spawn progress relay drove the bar to its end before the card turned ready
    assert page.locator("#nbexec-server-progress").get_attribute("aria-valuenow") == "100"

    choose_notebook(page, "page-demo/parameters_demo.ipynb")
    # declared parameters become typed inputs showing their defaults
    assert page.locator("#nbexec-param-rows").get_attribute("type") == "number"
    assert page.locator("#nbexec-param-rows").input_value() == "5"
    assert page.locator("#nbexec-param-scale").get_attribute("step") == "any"
    assert page.locator("#nbexec-param-shout").evaluate("el => el.tagName") == "SELECT"
    assert page.locator("#nbexec-param-shout").input_value() == "false"
    assert page.locator("#nbexec-param-name").input_value() == "world"
    assert "who to greet" in page.locator("#nbexec-param-name-help").inner_text()
    kernels = page.locator("#nbexec-kernel option").evaluate_all("opts => opts.map(o => o.value)")
    assert "python3" in kernels, kernels
    alice.shot("03-run-form")

    page.fill("#nbexec-param-rows", "3")
    page.fill("#nbexec-param-name", "browser")
    page.select_option("#nbexec-param-shout", "true")
    page.click("#nbexec-run-submit")
    card = live_card(page, "page-demo/parameters_demo.ipynb")
    card.locator(".badge", has_text="completed").wait_for()
    bar = card.locator(".progress")
    assert bar.get_attribute("aria-valuenow") == "100"
    assert card.locator(".progress-bar").inner_text() == "100%"
    outputs = card.locator(".nbexec-cell").all_inner_texts()
    assert any("HELLO, BROWSER!" in text for text in outputs), outputs
    assert any("'rows': 3" in text for text in outputs), outputs
    assert re.search(r"took \d", card.locator(".nbexec-live-elapsed").inner_text())
    page.wait_for_timeout(800)  # let the bar's CSS transition finish before the picture
    alice.shot("04-run-completed")

    row = page.locator("tr.nbexec-execution").first
    row.locator(".badge", has_text="completed").wait_for()
    params_text = row.locator("td").nth(1).inner_text()
    assert "rows=3" in params_text and "name=browser" in params_text and "shout=true" in params_text
    link = row.locator("a.nbexec-output-link")
    output_path = link.inner_text()
    assert output_path == "page-demo/parameters_demo-Executed1.ipynb"
    assert link.get_attribute("href") == f"/user/alice/lab/tree/{output_path}"
    written = nbformat.read(realhub.home("alice") / output_path, as_version=4)
    injected = [c for c in written.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "rows = 3" in injected[0].source

    # the output link opens the notebook in the user's JupyterLab
    with page.context.expect_page() as new_tab:
        link.click()
    lab = new_tab.value
    lab.set_default_timeout(90_000)
    lab.wait_for_load_state()
    assert lab.url.endswith(f"/user/alice/lab/tree/{output_path}"), lab.url
    lab.locator(".jp-Notebook .jp-OutputArea-output", has_text="HELLO, BROWSER!").first.wait_for()
    alice.shot("05-output-in-jupyterlab", lab)
    lab.close()


def test_failing_notebook_shows_its_error_and_images_show(realhub, alice_server, browser_user):
    realhub.put_notebook("alice", "fails_on_purpose.ipynb", EXAMPLES / "fails_on_purpose.ipynb")
    nb = tiny_notebook(
        "import base64\nfrom IPython.display import Image\n"
        f"Image(data=base64.b64decode({png_b64()!r}), format='png')"
    )
    realhub.put_notebook("alice", "picture.ipynb", nb)
    alice = browser_user("alice")
    page = alice.open_service_page()
    page.wait_for_selector(".nbexec-file[data-path='fails_on_purpose.ipynb']")

    start_run(page, "picture.ipynb")
    card = live_card(page, "picture.ipynb")
    card.locator(".badge", has_text="completed").wait_for()
    image = card.locator("img.nbexec-output-image")
    assert image.get_attribute("src").startswith("data:image/png;base64,")
    assert image.evaluate("img => img.complete && img.naturalWidth") == 48

    start_run(page, "fails_on_purpose.ipynb")
    card = live_card(page, "fails_on_purpose.ipynb")
    card.locator(".badge", has_text="error").wait_for()
    error = card.locator(".nbexec-live-error")
    assert error.is_visible()
    assert "ZeroDivisionError" in error.inner_text()
    assert "result = [n / divisor for n in numbers]" in error.inner_text()
    assert "ZeroDivisionError" in card.locator(".nbexec-output-error").inner_text()
    assert card.locator(".progress-bar.bg-danger").count() == 1
    row = page.locator("tr.nbexec-execution", has_text="fails_on_purpose.ipynb").first
    row.locator(".badge", has_text="error").wait_for()
    assert "ZeroDivisionError" in row.locator(".nbexec-status-text").inner_text()
    alice.shot("error")
    # the hub's dark mode toggle sets this attribute; the page follows the hub's colours
    page.evaluate("document.documentElement.setAttribute('data-bs-theme', 'dark')")
    alice.shot("error-dark")


def start_slow_run(realhub, browser_user, steps: int):
    """As alice on the page: run examples/slow_progress.ipynb (0.5 s a step) until its
    sleeping cell runs; (alice, page, live card)."""
    realhub.put_notebook("alice", "slow_progress.ipynb", EXAMPLES / "slow_progress.ipynb")
    alice = browser_user("alice")
    page = alice.open_service_page()
    start_run(page, "slow_progress.ipynb", {"steps": str(steps), "delay": "0.5"})
    card = live_card(page, "slow_progress.ipynb")
    card.locator(".nbexec-live-current", has_text="time.sleep(delay)").wait_for()
    return alice, page, card


def test_shut_down_a_slow_run_with_confirmation(realhub, alice_server, browser_user):
    alice, page, card = start_slow_run(realhub, browser_user, steps=120)
    row = page.locator("tr.nbexec-execution", has_text="slow_progress.ipynb").first
    row.locator(".nbexec-shutdown").wait_for()
    alice.shot("slow-running")

    # cancelling the confirmation leaves it running
    row.locator(".nbexec-shutdown").click()
    page.wait_for_selector("#nbexec-confirm[open]")
    alice.shot("shutdown-confirm")
    page.click("#nbexec-confirm-cancel")
    assert card.locator(".badge", has_text="executing").count() == 1

    row.locator(".nbexec-shutdown").click()
    page.click("#nbexec-confirm-ok")
    card.locator(".badge", has_text="error").wait_for(timeout=30_000)
    assert card.locator(".nbexec-live-error").is_visible()
    row = page.locator("tr.nbexec-execution", has_text="slow_progress.ipynb").first
    row.locator(".badge", has_text="error").wait_for()
    assert row.locator(".nbexec-shutdown").count() == 0
    alice.shot("slow-shut-down")

    # delete, also behind a confirmation
    exec_id = row.get_attribute("data-exec-id")
    row.locator(".nbexec-delete").click()
    page.click("#nbexec-confirm-ok")
    page.locator(f"tr[data-exec-id='{exec_id}']").wait_for(state="detached")
    token = realhub.create_token("alice")
    r = requests.get(
        realhub.service_url("api/users/alice/executions"),
        headers={"Authorization": f"token {token}"},
        timeout=30,
    )
    assert exec_id not in json.dumps(r.json())


def test_reload_and_second_tab_keep_following(realhub, alice_server, browser_user):
    alice, page, card = start_slow_run(realhub, browser_user, steps=12)
    exec_id = card.get_attribute("data-exec-id")

    page.reload()
    page.wait_for_selector("body[data-nbexec-loaded='true']")
    card = page.locator(f"article.nbexec-live[data-exec-id='{exec_id}']")
    card.wait_for()
    # the replayed stream shows the cells finished before the reload (parameters, injected
    # parameters, import) and the cell that is running
    card.locator(".nbexec-cell").nth(2).wait_for()
    card.locator(".nbexec-live-current", has_text="time.sleep(delay)").wait_for()
    alice.shot("reloaded-mid-run")

    second = alice.open_service_page(alice.new_page())
    other = second.locator(f"article.nbexec-live[data-exec-id='{exec_id}']")
    other.wait_for()
    for view in (card, other):
        view.locator(".badge", has_text="completed").wait_for(timeout=60_000)
        assert view.locator(".progress").get_attribute("aria-valuenow") == "100"
        assert "step 12/12" in view.locator(".nbexec-cells").inner_text()
    alice.shot("second-tab-completed", second)


def test_named_server_from_the_page(realhub, browser_user):
    realhub.put_notebook("alice", "page-named.ipynb", tiny_notebook("print('named', x)"))
    alice = browser_user("alice")
    page = alice.open_service_page(query="?server=second")
    assert page.locator("#nbexec-server-title").inner_text() == "Server of alice (second)"
    try:
        page.locator("#nbexec-server-state", has_text="stopped").wait_for()
        page.click("#nbexec-server-start")
        page.locator("#nbexec-server-state", has_text="ready").wait_for(timeout=90_000)
        assert page.locator("#nbexec-server-open").get_attribute("href") == "/user/alice/second/"
        start_run(page, "page-named.ipynb", {"x": "42"})
        card = live_card(page, "page-named.ipynb")
        card.locator(".badge", has_text="completed").wait_for()
        assert "named 42" in card.locator(".nbexec-cells").inner_text()
        link = page.locator("tr.nbexec-execution a.nbexec-output-link").first
        href = "/user/alice/second/lab/tree/page-named-Executed1.ipynb"
        assert link.get_attribute("href") == href
    finally:
        realhub.stop_server("alice", "second")
