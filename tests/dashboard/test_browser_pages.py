"""More of the real dashboard in Debian's chromium (as ``test_browser.py``): the token form, the
"Compare jobs" page, and the job page's table of contents and parallel coordinates.

Screenshots go to ``test-artifacts/`` (``dashboard-compare.png``, ``dashboard-job-toc.png``); with
REGSEARCH_UPDATE_SCREENSHOT=1 also to ``docs/images/``, so a test run leaves the tree clean.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.browsing import ROOT, WIDTH, chromium, serve, wait_until_drawn
from tests.dashboard.conftest import FilledDb

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("dashboard")]
TOKEN = "browser-token-7f3a9c1e5b"
ARTIFACTS = ROOT / "test-artifacts"
DOCS = ROOT / "docs" / "images"


def _save(shot: Path) -> None:
    assert shot.stat().st_size > 20_000
    if os.environ.get("REGSEARCH_UPDATE_SCREENSHOT") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS / shot.name)


@pytest.fixture
def browser() -> Iterator[Any]:
    yield from chromium()


@pytest.fixture
def open_dashboard(filled_db: FilledDb, tmp_path: Path) -> Iterator[str]:
    yield from serve(filled_db.settings, tmp_path / "dashboard.log")


@pytest.fixture
def guarded_dashboard(filled_db: FilledDb, tmp_path: Path) -> Iterator[str]:
    """The dashboard started with REGSEARCH_API_TOKEN set (as ``regsearch dashboard`` passes it)."""
    yield from serve(filled_db.settings.model_copy(update={"api_token": TOKEN}), tmp_path / "guarded.log")


def _page(browser: Any, height: int = 1000) -> Any:
    page = browser.new_page(viewport={"width": WIDTH, "height": height})
    page.set_default_timeout(90_000)
    return page


def _settled(page: Any) -> None:
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')")
    page.wait_for_timeout(500)


def _sign_in(page: Any, token: str) -> None:
    field = page.get_by_label("Token")
    field.fill(token)
    field.press("Enter")
    page.wait_for_timeout(300)
    _settled(page)


def test_the_token_form_shows_nothing_until_the_right_token(browser: Any, filled_db: FilledDb,
                                                            guarded_dashboard: str) -> None:
    job_id = filled_db.jobs["digits-placements"]
    page = _page(browser)
    page.goto(f"{guarded_dashboard}/job?job={job_id}")
    page.get_by_role("heading", name="regsearch").wait_for()
    assert page.get_by_label("Token").get_attribute("type") == "password"
    _settled(page)
    body = page.inner_text("body")
    assert "digits-placements" not in body and job_id not in body
    assert not page.locator("[data-testid='stSidebarNav']").count()  # no navigation either

    _sign_in(page, "not-the-token")
    page.get_by_text("That is not the dashboard's token.").wait_for()
    body = page.inner_text("body")
    assert "digits-placements" not in body and job_id not in body
    assert not page.locator("[data-testid='stDataFrame'], .js-plotly-plot").count()

    # a fresh session on the jobs page: the right token opens it
    page = _page(browser)
    page.goto(guarded_dashboard)
    page.get_by_role("heading", name="regsearch").wait_for()
    _sign_in(page, TOKEN)
    page.get_by_role("heading", name="Search jobs").wait_for()
    page.locator("[data-testid='stDataFrame']").first.wait_for()
    assert not page.get_by_label("Token").count()
    assert not page.locator("[data-testid='stException']").count()
    # the session keeps it: another page opens without asking again
    page.get_by_role("link", name="Compare jobs").click()
    page.get_by_role("heading", name="Compare jobs").wait_for()
    assert not page.get_by_label("Token").count()


def test_compare_page_in_chromium(browser: Any, filled_db: FilledDb, open_dashboard: str) -> None:
    ids = [filled_db.jobs["digits-placements"], filled_db.jobs["digits-confirmed"]]
    page = _page(browser)
    page.goto(f"{open_dashboard}/compare?jobs={','.join(ids)}")
    page.get_by_role("heading", name="Compare jobs").wait_for()
    for section in ("Placement comparison", "Leaders"):
        page.get_by_role("heading", name=section, exact=True).wait_for()
    page.locator(".js-plotly-plot").first.wait_for()
    wait_until_drawn(page)
    legend = page.locator(".js-plotly-plot .legend").first.text_content() or ""
    assert "digits-placements" in legend and "digits-confirmed" in legend
    assert page.locator("[data-testid='stDataFrame']").count() == 2
    assert not page.locator("[data-testid='stException']").count()
    height = page.evaluate(
        "() => Math.max(...['stMain', 'stAppViewContainer', 'stMainBlockContainer'].map("
        "id => document.querySelector(`[data-testid=${id}]`)?.scrollHeight || 0))"
    )
    page.set_viewport_size({"width": WIDTH, "height": int(height) + 80})
    page.wait_for_timeout(1500)
    wait_until_drawn(page)
    shot = ARTIFACTS / "dashboard-compare.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    _save(shot)


def test_job_page_table_of_contents_and_parallel_coordinates(browser: Any, filled_db: FilledDb,
                                                            open_dashboard: str, tmp_path: Path) -> None:
    from PIL import Image

    page = _page(browser)
    page.goto(f"{open_dashboard}/job?job={filled_db.jobs['digits-placements']}")
    page.get_by_role("heading", name="digits-placements").wait_for()
    page.get_by_role("heading", name="Best configurations", exact=True).wait_for()
    wait_until_drawn(page)
    toc = page.locator("[data-testid='stMarkdownContainer']", has_text="On this page:")
    links = toc.locator("a")
    targets = [links.nth(i).get_attribute("href") for i in range(links.count())]
    assert len(targets) == 8 and all(t.startswith("#") for t in targets)
    for target in targets:  # every entry has its section on the page
        assert page.locator(f"[id='{target[1:]}']").count() == 1, target
    top = tmp_path / "top.png"
    page.screenshot(path=str(top))
    contents_end = page.get_by_role("heading", name="Evidence", exact=True).bounding_box()["y"] - 10

    # The entry scrolls the page to its section, where the parallel coordinates are drawn.
    section = page.locator("[id='parallel-coordinates']")
    toc.get_by_role("link", name="Parallel coordinates").click()
    page.wait_for_function("() => { const r = document.getElementById('parallel-coordinates').getBoundingClientRect();"
                           " return r.top >= 0 && r.top < window.innerHeight / 2; }")
    chart = page.locator("[data-testid='stPlotlyChart']", has=page.locator(".parcoords")).first
    chart.wait_for()
    assert chart.locator(".parcoords .axis-title").count() >= 4  # placement, dropout, bn_momentum, val_acc
    drawn = chart.evaluate("c => [...c.querySelectorAll('canvas')].some(x => x.width > 0 && x.height > 0)")
    assert drawn, "the lines' canvas is not drawn"
    page.wait_for_timeout(800)
    box = section.bounding_box()
    left = int(page.locator("[data-testid='stSidebar']").bounding_box()["width"])
    below = tmp_path / "parallel.png"
    page.screenshot(path=str(below), clip={"x": left, "y": max(0, box["y"] - 20), "width": WIDTH - left,
                                           "height": 590})

    # One picture: the top of the page with its contents, then the section the entry leads to
    # (the sidebar once, beside both).
    first, second = Image.open(top), Image.open(below)
    first = first.crop((0, 0, first.width, int(contents_end)))
    joined = Image.new("RGB", (WIDTH, first.height + second.height), "white")
    sidebar = Image.open(top).convert("RGB")
    joined.paste(sidebar.getpixel((5, sidebar.height - 5)), (0, 0, left, joined.height))  # its background
    joined.paste(sidebar.crop((0, 0, left, min(sidebar.height, joined.height))), (0, 0))
    joined.paste(first.crop((left, 0, first.width, first.height)), (left, 0))
    joined.paste(second, (left, first.height))
    shot = ARTIFACTS / "dashboard-job-toc.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    joined.save(shot)
    _save(shot)
