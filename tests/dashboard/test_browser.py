"""The real dashboard in a real browser: ``streamlit run`` (as ``regsearch dashboard`` starts it) on
a finished job, driven by Debian's chromium through Playwright; saves a full-page screenshot to
``test-artifacts/dashboard-job.png``; with REGSEARCH_UPDATE_SCREENSHOT=1 also to
``docs/images/dashboard-job.png`` (the README's picture), so a test run leaves the tree clean.

In CI (``CI=true``) a missing chromium or Playwright is a failure; elsewhere the test skips.
Playwright's own browser download is not used: ``executable_path`` points at /usr/bin/chromium.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dashboard.browsing import (
    CHROMIUM,
    CHROMIUM_ARGS,
    ROOT,
    WIDTH,
    missing,
    serve,
    wait_until_drawn,
)
from tests.dashboard.conftest import FilledDb

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("dashboard")]

SHOTS = [ROOT / "test-artifacts" / "dashboard-job.png"]
if os.environ.get("REGSEARCH_UPDATE_SCREENSHOT") == "1":
    SHOTS.append(ROOT / "docs" / "images" / "dashboard-job.png")


@pytest.fixture
def dashboard_url(filled_db: FilledDb, tmp_path: Path) -> Iterator[str]:
    """The real dashboard on a free port, started with the command ``run_dashboard`` uses."""
    yield from serve(filled_db.settings, tmp_path / "dashboard.log")


def test_job_page_in_chromium(filled_db: FilledDb, dashboard_url: str) -> None:
    if not CHROMIUM.exists():
        missing(f"{CHROMIUM} is not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("the python playwright package is not installed")

    job_id = filled_db.jobs["digits-placements"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": 1000})
            page.set_default_timeout(90_000)
            page.goto(f"{dashboard_url}/job?job={job_id}")
            page.get_by_role("heading", name="digits-placements").wait_for()
            for section in ("Evidence", "Generalization", "Convergence", "Placement comparison", "Search space",
                            "Best configurations"):
                page.get_by_role("heading", name=section, exact=True).wait_for()
            # the recipes' code blocks; the Evidence tabs hold more, hidden until their tab is picked
            page.locator("[data-testid='stCode'] >> visible=true").first.wait_for()
            wait_until_drawn(page)
            assert page.locator(".js-plotly-plot").count() >= 10
            assert not page.locator("[data-testid='stException']").count()

            # Streamlit scrolls inside its main container: grow the window to the page's height
            # so that the screenshot holds all of it, and let the charts redraw at that size.
            height = page.evaluate(
                "() => Math.max(...['stMain', 'stAppViewContainer', 'stMainBlockContainer'].map("
                "id => document.querySelector(`[data-testid=${id}]`)?.scrollHeight || 0))"
            )
            page.set_viewport_size({"width": WIDTH, "height": int(height) + 80})
            page.wait_for_timeout(1500)
            wait_until_drawn(page)
            SHOTS[0].parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS[0]), full_page=True)
        finally:
            browser.close()
    for shot in SHOTS[1:]:
        shot.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SHOTS[0], shot)
    assert SHOTS[0].stat().st_size > 50_000
