"""What the API tells a person: /docs works offline, and a misspelt field gets "did you mean"."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from regsearch.config import Settings
from regsearch.domain.spec import SpecError, validate_spec
from regsearch.services.api.main import create_app
from regsearch.store.db import Database


@pytest.fixture
def api(sqlite_settings: Settings, sqlite_db: Database) -> Iterator[TestClient]:
    with TestClient(create_app(sqlite_settings, db=sqlite_db, broker_ping=lambda: None,
                               notify=lambda *_: None)) as client:
        yield client


def _references(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_load_nothing_from_another_host(api: TestClient, page: str) -> None:
    response = api.get(page)
    assert response.status_code == 200
    references = _references(response.text)
    assert any(r.endswith(".js") for r in references), references
    external = [r for r in references if urlsplit(r).netloc or r.startswith("//")]
    assert external == [], f"{page} loads {external} from another host (blank page offline)"
    assert "cdn." not in response.text and "fonts.googleapis" not in response.text
    for reference in references:
        asset = api.get(reference)
        assert asset.status_code == 200, reference
        assert len(asset.content) > 100, reference


def test_swagger_ui_assets_are_the_real_files(api: TestClient) -> None:
    html = api.get("/docs").text
    js = next(r for r in _references(html) if r.endswith(".js"))
    css = next(r for r in _references(html) if r.endswith(".css"))
    assert "SwaggerUIBundle" in api.get(js).text
    assert api.get(css).headers["content-type"].startswith("text/css")
    assert api.get("/docs/oauth2-redirect").status_code == 200


SPEC = {"name": "typo", "dataset": {"name": "digits"}}


@pytest.mark.parametrize(
    ("change", "field", "suggestion"),
    [
        ({"space": {"dropuot": 0.3}}, "space.dropuot", "dropout"),
        ({"trainig": {"epochs": 2}}, "trainig", "training"),
        ({"space": {"dropout": {"low": 0.0, "hihg": 0.5}}}, "space.dropout.hihg", "high"),
        ({"confirm": {"top_kk": 2}}, "confirm.top_kk", "top_k"),
    ],
)
def test_a_misspelt_field_is_answered_with_the_closest_name_by_api_and_cli(
    api: TestClient, change: dict[str, object], field: str, suggestion: str
) -> None:
    body = {**SPEC, **change}
    response = api.post("/jobs", json=body)
    assert response.status_code == 422
    first = response.json()["detail"][0]
    assert first == {"field": field, "message": f"unknown field; did you mean `{suggestion}`?"}
    with pytest.raises(SpecError) as info:
        validate_spec(body)
    assert (info.value.field, info.value.message) == (first["field"], first["message"]), "the CLI says the same"


def test_an_unknown_field_with_nothing_close_lists_the_valid_names(api: TestClient) -> None:
    detail = api.post("/jobs", json={**SPEC, "space": {"zzz": 1}}).json()["detail"][0]
    assert detail["field"] == "space.zzz"
    assert "valid fields:" in detail["message"] and "dropout" in detail["message"]
    assert "Extra inputs are not permitted" not in detail["message"]
