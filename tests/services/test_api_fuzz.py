"""Fuzzing the API: schemathesis from /openapi.json, and hypothesis-crafted hostile bodies.

The property is the same everywhere: no request, valid or not, gets a 5xx. The app runs on a
real SQLite database seeded with a job whose trials include diverged (non-finite) metrics;
half of the generated path parameters point at that job so the happy paths are fuzzed too.
Runs are derandomized (fixed seeds) so a failure reproduces.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sqlalchemy import text

from regsearch.config import Settings
from regsearch.domain.metrics import EpochMetrics
from regsearch.domain.spec import validate_spec
from regsearch.services.api.main import create_app
from regsearch.store import trials as store_trials
from regsearch.store.db import Database
from regsearch.store.jobs import create_job
from regsearch.store.migrate import upgrade
from tests.services.test_api import row_counts

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

EXAMPLES_PER_OPERATION = (
    100  # 9 operations, positive + negative, plus the coverage phase: > 1,000 calls
)
MIN_REQUESTS = 1000
REQUESTS: dict[str, int] = {"schemathesis": 0}
VALID_SPEC: dict[str, Any] = {
    "name": "fuzz",
    "dataset": {"name": "digits"},
    "model": {"family": "mlp", "hidden": [8, 8]},
    "space": {"placement": ["bn-act-drop", "act"], "dropout": {"low": 0.0, "high": 0.5}},
    "training": {"epochs": 3, "batch_size": 16, "lr": 0.01},
    "budget": {"n_trials": 4, "parallelism": 1},
}
HOSTILE_TOKENS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" + "0" * 5000]


def _seed(db: Database) -> str:
    """A job with a complete trial (NaN/inf metrics), a pruned one and a queued one."""
    job = create_job(db, spec=validate_spec(VALID_SPEC)).job
    for number, state in enumerate(["complete", "pruned", "queued"]):
        trial_id = store_trials.add_trial(
            db, job_id=job.id, number=number, optuna_trial_id=number, params={"placement": "act"}
        )
        if state == "queued":
            continue
        claim = store_trials.claim(db, trial_id=trial_id, worker="fuzz", device="cpu")
        assert claim is not None
        epoch = EpochMetrics(
            epoch=1, train_loss=math.nan, train_acc=0.5, val_loss=math.inf, val_acc=0.4, seconds=0.1
        )
        store_trials.record_epochs(db, trial_id=trial_id, lease=claim.lease, epochs=[epoch])
        store_trials.finish(
            db,
            trial_id=trial_id,
            lease=claim.lease,
            state=state,
            metrics={"val_acc": math.nan, "gap": math.inf, "test_acc": 0.4},
        )
    if db.url.startswith("sqlite"):
        # A NaN token written around the JSON serializer, as an older or foreign writer might.
        with db.engine.begin() as conn:
            conn.execute(
                text("UPDATE regsearch_trials SET recipe = '{\"x\": NaN}' WHERE number = 0")
            )
    return job.id


SEEDED: dict[str, str] = {}
STATS: dict[str, int] = {}


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastAPI, Database, str]]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    app_settings = Settings(
        data_dir=data_dir, database_url=None, broker_url=None, api_token=None, max_body_bytes=64_000
    )
    app_settings.ensure_dirs()
    upgrade(app_settings.sqlalchemy_url)
    db = Database(app_settings.sqlalchemy_url)
    SEEDED["job_id"] = _seed(db)
    yield create_app(app_settings, db=db, broker_ping=lambda: None), db, SEEDED["job_id"]
    db.dispose()


# The schema is read at collection time from an app that never touches its (in-memory)
# database; the cases are sent to the module's real app (``case.call(app=...)``).
SCHEMA = schemathesis.openapi.from_asgi(
    "/openapi.json",
    create_app(
        Settings(database_url="sqlite:///:memory:", api_token=None), broker_ping=lambda: None
    ),
)
SCHEMA.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
    max_examples=EXAMPLES_PER_OPERATION,
    deterministic=True,
)
SCHEMA.config.seed = 20240601


@SCHEMA.hook("flatmap_path_parameters")
def often_the_seeded_job(_context: Any, path_parameters: dict[str, Any]) -> Any:
    """Half the job ids (and small trial numbers) name the seeded job, so happy paths get fuzzed."""
    if not isinstance(path_parameters, dict) or "job_id" not in path_parameters:
        return st.just(path_parameters)
    numbers = st.integers(0, 4) if "number" in path_parameters else st.none()

    def known(number: int | None) -> dict[str, Any]:
        extra = {} if number is None else {"number": number}
        return {**path_parameters, "job_id": SEEDED["job_id"], **extra}

    return st.one_of(st.just(path_parameters), numbers.map(known))


@pytest.fixture(scope="module")
def fuzz_volume() -> Iterator[None]:
    """After the schemathesis run (one test item, so one process even under xdist): it made at
    least 1,000 requests."""
    yield
    print(f"\nschemathesis requests: {REQUESTS['schemathesis']}")
    print("\n".join(f"  {key}: {n}" for key, n in sorted(STATS.items()) if not key.endswith("405")))
    assert REQUESTS["schemathesis"] >= MIN_REQUESTS, f"only {REQUESTS['schemathesis']} requests were generated"


@SCHEMA.parametrize()
@settings(
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
def test_no_server_errors(case: schemathesis.Case, fuzz_app: tuple[FastAPI, Database, str], fuzz_volume: None) -> None:
    # Every other built-in check applies (schema conformance of responses, status codes, Allow,
    # negative data rejected). Not "positive data accepted": the spec's cross-field rules (a csv
    # dataset needs a path, low <= high, ...) are beyond JSON Schema, so schema-valid specs may 422.
    response = case.call_and_validate(app=fuzz_app[0], excluded_checks=[positive_data_acceptance])
    REQUESTS["schemathesis"] += 1
    key = f"{case.method} {case.path} -> {response.status_code}"
    STATS[key] = STATS.get(key, 0) + 1
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
    )


# -- hand-crafted hostile bodies ----------------------------------------------------------------

json_leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
SPEC_PATHS = [
    ("space", "dropout", "low"),
    ("space", "dropout", "high"),
    ("space", "dropout"),
    ("space", "bn_momentum"),
    ("training", "lr"),
    ("training", "epochs"),
    ("training", "weight_decay"),
    ("budget", "timeout_s"),
    ("budget", "n_trials"),
    ("dataset", "noise"),
    ("dataset", "val_fraction"),
    ("name",),
    ("model", "hidden"),
]


def _insert(spec: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    doc = json.loads(json.dumps(spec))
    node = doc
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value
    return doc


@pytest.fixture(scope="module")
def client(fuzz_app: tuple[FastAPI, Database, str]) -> Iterator[TestClient]:
    with TestClient(fuzz_app[0]) as test_client:  # raises on any unhandled exception (a 500)
        yield test_client


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    path=st.sampled_from(SPEC_PATHS), token=st.sampled_from(HOSTILE_TOKENS), wrap=st.integers(0, 2)
)
def test_non_finite_literals_in_a_valid_spec_are_422(
    client: TestClient,
    fuzz_app: tuple[FastAPI, Database, str],
    path: tuple[str, ...],
    token: str,
    wrap: int,
) -> None:
    placeholder = "__HOSTILE__"
    value: Any = (
        [placeholder]
        if wrap == 1
        else {"low": placeholder, "high": 0.5}
        if wrap == 2
        else placeholder
    )
    body = json.dumps(_insert(VALID_SPEC, path, value)).replace(f'"{placeholder}"', token)
    before = row_counts(fuzz_app[1])
    response = client.post("/jobs", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert errors and all(set(e) == {"field", "message"} for e in errors)
    assert row_counts(fuzz_app[1]) == before


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(value=json_values)
def test_arbitrary_json_with_nan_and_inf_never_500(client: TestClient, value: Any) -> None:
    body = json.dumps(value, allow_nan=True)  # writes NaN / Infinity tokens for non-finite floats
    response = client.post("/jobs", content=body, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["detail"]
