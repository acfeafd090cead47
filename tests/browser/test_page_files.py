"""The page's files are found in a checkout and after `pip install` (no browser needed)."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from nbexec_hub import protocol
from nbexec_hub.service import page

REPO = Path(__file__).resolve().parents[2]


def test_templates_found_in_the_checkout_and_the_hub_page_html():
    assert str(REPO / "templates") in page.nbexec_template_dirs()
    hub_dirs = page.hub_template_dirs()
    assert hub_dirs and (Path(hub_dirs[0]) / "page.html").is_file()
    env = page.template_environment()
    # our page extends the hub's page.html, our home.html the hub's own home.html
    assert env.get_template("nbexec.html")
    assert "templates/home.html" in (REPO / "templates" / "home.html").read_text()


def test_templates_found_under_an_installed_prefix(tmp_path, monkeypatch):
    installed = tmp_path / "share" / "nbexec-hub" / "templates"
    installed.mkdir(parents=True)
    (installed / "nbexec.html").write_text("{% extends 'page.html' %}")
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    assert str(installed) in page.nbexec_template_dirs()


@pytest.mark.timeout(300)
def test_wheel_ships_templates_as_data_files_and_static_in_the_package(tmp_path):
    out = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = out.glob("nbexec_hub-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for template in ("nbexec.html", "home.html"):
        # pip installs <name>.data/data/X as <prefix>/X
        assert any(n.endswith(f".data/data/share/nbexec-hub/templates/{template}") for n in names)
    for static in (REPO / "nbexec_hub" / "static").rglob("*"):
        if static.is_file():
            assert static.relative_to(REPO).as_posix() in names


def test_the_page_mirrors_the_protocols_event_names():
    """static/js/api.js keeps its own copy of protocol.py's event names: the same ones."""
    text = (REPO / "nbexec_hub" / "static" / "js" / "api.js").read_text()
    block = re.search(r"export const EVENTS = Object\.freeze\(\{(.*?)\}\);", text, re.S)
    assert block, "api.js no longer defines EVENTS"
    events = dict(re.findall(r"(\w+): \"(\w+)\"", block.group(1)))
    names = ("NOTEBOOK_START", "CELL_START", "CELL_END", "OUTPUT", "NOTEBOOK_COMPLETE",
             "NOTEBOOK_ERROR")
    assert events == {name: getattr(protocol, name) for name in names}
    assert "nbexec_hub/protocol.py" in text
