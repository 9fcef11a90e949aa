"""Issue 30's dashboard points in Debian's chromium (as ``test_browser.py``), on the real server
(``regsearch.dashboard.run.dashboard_command``):

- every page, opened at its own address, asks only the dashboard's host (chromium started with
  every other host unresolvable, so a request elsewhere would also fail) and gets no 4xx/5xx;
- the jobs table fits the layout at 1280 px (no horizontal scroll) with the id and created
  columns; screenshot ``test-artifacts/dashboard-jobs.png``;
- a running job's page refreshes section by section in place: refreshes are observed, nothing
  fades, no chart is ever blank or removed, the title and contents never rerun.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.dashboard.browsing import ROOT, chromium, serve, wait_until_drawn
from tests.dashboard.conftest import FilledDb

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("dashboard")]
# Any host but the dashboard's fails to resolve: nothing can leave the machine, and a try shows.
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
LAYOUT_WIDTH = 1280
SHOT = ROOT / "test-artifacts" / "dashboard-jobs.png"


@pytest.fixture(scope="module")
def served(filled_db: FilledDb, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real dashboard on the filled database for this module's tests."""
    yield from serve(filled_db.settings, tmp_path_factory.mktemp("dashboard-issue30") / "dashboard.log")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chromium(OFFLINE)


def _page(browser: Any, width: int = LAYOUT_WIDTH) -> Any:
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.set_default_timeout(90_000)
    return page


def _settled(page: Any) -> None:
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')")
    wait_until_drawn(page)
    page.wait_for_timeout(1500)  # late requests: the tab's icon, fonts, the charts' own


def test_no_request_leaves_the_machine_and_none_fails(browser: Any, filled_db: FilledDb, served: str) -> None:
    jobs = filled_db.jobs
    pages = {
        "Search jobs": "/",
        "digits-placements": f"/job?job={jobs['digits-placements']}",
        "digits-pareto": f"/job?job={jobs['digits-pareto']}",  # running: it refreshes itself
        f"Trial {filled_db.numbers['main/complete'][0]} · digits-placements":
            f"/trial?job={jobs['digits-placements']}&trial={filled_db.numbers['main/complete'][0]}",
        f"Trial {filled_db.numbers['pareto/running'][0]} · digits-pareto":
            f"/trial?job={jobs['digits-pareto']}&trial={filled_db.numbers['pareto/running'][0]}",
        "Compare jobs": f"/compare?jobs={jobs['digits-placements']},{jobs['digits-confirmed']}",
    }
    host = urlsplit(served).netloc
    for heading, path in pages.items():
        page = _page(browser)
        asked: list[str] = []
        answers: list[tuple[int, str]] = []
        failed: list[str] = []
        page.on("request", lambda request, asked=asked: asked.append(request.url))
        page.on("websocket", lambda ws, asked=asked: asked.append(ws.url))
        page.on("response", lambda response, answers=answers: answers.append((response.status, response.url)))
        page.on("requestfailed", lambda request, failed=failed: failed.append(f"{request.url}: {request.failure}"))
        page.goto(served + path)  # a fresh load at the page's own address, as a link or a reload opens it
        page.get_by_role("heading", name=heading).first.wait_for()
        _settled(page)
        assert asked, path
        elsewhere = [u for u in asked if urlsplit(u).scheme not in ("data", "blob") and urlsplit(u).netloc != host]
        assert not elsewhere, f"{path} asked another host: {elsewhere}"
        assert not [a for a in answers if a[0] >= 400], f"{path}: {[a for a in answers if a[0] >= 400]}"
        assert not failed, f"{path}: {failed}"
        assert not page.locator("[data-testid='stException']").count(), path
        page.close()


def test_jobs_table_fits_the_layout_with_id_and_created(browser: Any, filled_db: FilledDb, served: str) -> None:
    page = _page(browser)
    page.goto(served)
    page.get_by_role("heading", name="Search jobs").wait_for()
    table = page.locator("[data-testid='stDataFrame']").first
    table.wait_for()
    _settled(page)
    headers = table.locator("th").all_inner_texts()
    assert headers[:2] == ["id", "name"] and "created" in headers, headers
    scroller = table.locator(".dvn-scroller")
    scroll_width, client_width = scroller.evaluate("s => [s.scrollWidth, s.clientWidth]")
    assert scroll_width <= client_width, f"the jobs table is {scroll_width} px wide in {client_width} px"
    main = page.locator("[data-testid='stMainBlockContainer']").bounding_box()
    box = table.bounding_box()
    assert box["x"] + box["width"] <= main["x"] + main["width"] + 1  # within the layout's column
    cells = table.locator("td").all_inner_texts()
    for job_id in filled_db.jobs.values():
        assert f"job?job={job_id}" in cells  # the id column (a link, shown as the id)
    SHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOT))
    assert SHOT.stat().st_size > 20_000


# Collected in the page at every change of an element's stale mark (Streamlit marks what a run
# is redrawing) and every 100 ms: how many are stale, the lowest opacity on screen, the charts.
WATCH = """() => {
  const state = window.__watch = {samples: [], refreshes: 0, staleBefore: 0, headerStale: false};
  const sample = () => {
    const boxes = [...document.querySelectorAll('[data-testid=stElementContainer]')];
    const stale = boxes.filter(b => b.dataset.stale === 'true');
    if (stale.length && !state.staleBefore) state.refreshes += 1;
    state.staleBefore = stale.length;
    const plots = [...document.querySelectorAll('[data-testid=stPlotlyChart]')];
    const title = document.querySelector('h1');
    if (title && title.closest('[data-stale=true]')) state.headerStale = true;
    state.samples.push({
      stale: stale.length, boxes: boxes.length,
      opacity: Math.min(1, ...boxes.map(b => parseFloat(getComputedStyle(b).opacity))),
      charts: plots.length,
      blank: plots.filter(p => !p.querySelector('.js-plotly-plot .main-svg')).length,
    });
  };
  new MutationObserver(sample).observe(document.body,
    {subtree: true, attributes: true, attributeFilter: ['data-stale'], childList: true});
  setInterval(sample, 100);
}"""


def test_a_running_job_page_refreshes_in_place(browser: Any, filled_db: FilledDb, served: str) -> None:
    page = _page(browser)
    page.goto(f"{served}/job?job={filled_db.jobs['digits-pareto']}")
    page.get_by_role("heading", name="digits-pareto").wait_for()
    page.get_by_role("heading", name="All trials", exact=True).wait_for()
    _settled(page)
    charts = page.locator("[data-testid='stPlotlyChart']").count()
    assert charts >= 10
    page.evaluate(WATCH)
    page.wait_for_function("() => window.__watch.refreshes >= 3")  # every few seconds
    watch = page.evaluate("window.__watch")
    samples = watch["samples"]
    assert max(s["stale"] for s in samples) > 0  # refreshes were redrawing
    faded = [s for s in samples if s["opacity"] < 0.99]
    assert not faded, f"elements faded while a refresh redrew them: {faded[:3]}"
    assert all(s["blank"] == 0 and s["charts"] == charts for s in samples), \
        [s for s in samples if s["blank"] or s["charts"] != charts][:3]
    assert not watch["headerStale"]  # the title and contents are not rerun: the sections are
    assert not page.locator("[data-testid='stException']").count()
