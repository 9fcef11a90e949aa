"""The dashboard's token: refused beyond loopback without one (exit 2, naming REGSEARCH_API_TOKEN),
and with one every page shows the token form, and nothing else, until the session holds it.
The real-browser check is ``test_browser_pages.py``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from regsearch.config import Settings, get_settings
from regsearch.dashboard import auth, data
from regsearch.dashboard.run import bind_refusal, run_dashboard
from tests.dashboard.conftest import APP, FilledDb, point_app_at

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.xdist_group("dashboard")]
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-dashboard-token-0123456789"
TIMEOUT_S = 120


@pytest.mark.parametrize("token", [None, "", "   "])
def test_beyond_loopback_without_a_token_it_refuses_to_start(empty_db: Settings, token: str | None,
                                                             capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def no_child(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the dashboard must not start")

    monkeypatch.setattr(subprocess, "Popen", no_child)
    settings = empty_db.model_copy(update={"api_token": token})
    assert run_dashboard(settings, port=8599, host="0.0.0.0") == 2
    assert "REGSEARCH_API_TOKEN" in capsys.readouterr().err


def test_a_token_or_loopback_lets_it_start(empty_db: Settings) -> None:
    assert bind_refusal(empty_db, "127.0.0.1") is None and bind_refusal(empty_db, "::1") is None
    assert bind_refusal(empty_db.model_copy(update={"api_token": TOKEN}), "0.0.0.0") is None
    assert "REGSEARCH_API_TOKEN" in (bind_refusal(empty_db, "0.0.0.0") or "")


def test_the_cli_exits_2_naming_the_variable(empty_db: Settings) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REGSEARCH_API_TOKEN"}
    result = subprocess.run([sys.executable, "-m", "regsearch", "dashboard", "--host", "0.0.0.0", "--port", "8598"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
                            env={**env, "REGSEARCH_DATA_DIR": str(empty_db.data_dir)})
    assert result.returncode == 2, result.stderr
    assert "REGSEARCH_API_TOKEN" in result.stderr and "Traceback" not in result.stderr


def test_the_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = auth.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    assert auth.token_matches(TOKEN, TOKEN) and not auth.token_matches("wrong", TOKEN)
    assert calls == [(TOKEN.encode(), TOKEN.encode()), (b"wrong", TOKEN.encode())]
    assert not auth.token_matches(None, TOKEN) and not auth.token_matches(123, TOKEN)
    assert auth.configured_token(Settings(api_token="  ")) is None


@pytest.fixture
def app_with_token(monkeypatch: pytest.MonkeyPatch, filled_db: FilledDb) -> Iterator[FilledDb]:
    point_app_at(monkeypatch, filled_db.settings)
    monkeypatch.setenv("REGSEARCH_API_TOKEN", TOKEN)
    get_settings.cache_clear()
    data.clear_caches()
    yield filled_db
    get_settings.cache_clear()


def shown(app: AppTest) -> str:
    """Every text the page rendered (titles, markdown, captions, tables' names, alerts)."""
    parts = [str(e.value) for kind in ("title", "header", "markdown", "caption", "info", "error", "warning", "success")
             for e in getattr(app, kind)]
    return "\n".join(parts + [str(d.value.to_dict()) for d in app.dataframe])


@pytest.mark.parametrize("page", [None, "app_pages/job.py", "app_pages/compare.py"])
def test_every_page_asks_for_the_token_first(app_with_token: FilledDb, page: str | None) -> None:
    job_id = app_with_token.jobs["digits-placements"]
    app = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    app.query_params.update({"job": job_id} if page == "app_pages/job.py" else {})
    app.run()
    if page:
        app.switch_page(page)
        app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert [t.value for t in app.title] == ["regsearch"]
    assert [t.label for t in app.text_input] == ["Token"] and app.text_input[0].proto.type == app.text_input[0].proto.PASSWORD
    assert not app.dataframe and not app.metric and "digits-placements" not in shown(app)

    app.text_input[0].input("not-the-token")
    app.button[0].click()
    app.run()
    assert [t.value for t in app.title] == ["regsearch"] and not app.dataframe
    assert [e.value for e in app.error] == ["That is not the dashboard's token."]
    assert "digits-placements" not in shown(app) and job_id not in shown(app)

    app.text_input[0].input(TOKEN)
    app.button[0].click()
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    expected = {None: "Search jobs", "app_pages/job.py": "digits-placements", "app_pages/compare.py": "Compare jobs"}
    assert [t.value for t in app.title] == [expected[page]]
    assert not app.text_input or "Token" not in [t.label for t in app.text_input]
