"""``regsearch.Client`` against a real API process: construction, submit's three kinds of spec,
wait (with and without a progress bar, and its timeout), best as a list, download's errors."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from regsearch import ApiError, Client, JobSpec
from regsearch.config import Settings
from regsearch.domain.spec import SpecError
from regsearch.domain.states import JobState
from regsearch.store.jobs import set_job_status
from tests.services.stack import Stack, running_stack, small_spec

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Only the API (no coordinator, no worker): jobs stay queued unless a test ends them."""
    data = tmp_path_factory.mktemp("data")
    settings = Settings(data_dir=data, database_url=None, broker_url=None, api_token=None)
    with running_stack(settings, tmp_path_factory.mktemp("logs"), start=False) as stack:
        stack.start("api")
        yield stack


def test_every_construction_reaches_the_api(api: Stack) -> None:
    for client in (Client(api.settings.api_url), Client(api.settings.api_url, token=None),
                   Client.from_settings(api.settings), Client(api.settings)):
        with client:
            assert client.ready() and client.jobs()["count"] >= 0


def test_submit_takes_a_path_a_dict_or_a_jobspec(api: Stack, tmp_path: Path) -> None:
    spec = small_spec("client")
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    with Client(api.settings.api_url) as client:
        jobs = [client.submit(path), client.submit(str(path)), client.submit(spec),
                client.submit(JobSpec.model_validate(spec))]
        assert [job["status"] for job in jobs] == ["queued"] * 4 and len({job["id"] for job in jobs}) == 4
        stored = [client.job(job)["spec"] for job in jobs]  # a job document or its id, alike
        assert all(s == stored[0] for s in stored)
        assert client.job(jobs[0]["id"])["id"] == jobs[0]["id"]

        bad = tmp_path / "bad.yaml"
        bad.write_text(yaml.safe_dump({**spec, "space": {"dropuot": 0.1}}))
        with pytest.raises(SpecError, match="dropout"):
            client.submit(bad)
        with pytest.raises(ApiError) as refused:
            client.submit({**spec, "budget": {"n_trials": 0}})
        assert refused.value.status == 422 and "budget.n_trials" in json.dumps(refused.value.detail)


def test_wait_returns_the_finished_job_and_draws_progress(api: Stack) -> None:
    with Client(api.settings.api_url) as client:
        job = client.submit(small_spec("waiting"))
        with pytest.raises(TimeoutError, match="still queued"):
            client.wait(job, poll_s=0.05, timeout_s=0.3)
        set_job_status(api.db, job_id=job["id"], status=JobState.CANCELLED)
        screen = io.StringIO()
        done = client.wait(job, progress=Console(file=screen, width=120), poll_s=0.05)
        assert done["status"] == "cancelled" and done["id"] == job["id"]
        assert "waiting" in screen.getvalue() and "0/6" in screen.getvalue()
        assert client.wait(job["id"])["status"] == "cancelled"  # no bar, by id


def test_best_is_the_list_of_items_and_download_names_why(api: Stack, tmp_path: Path) -> None:
    with Client(api.settings.api_url) as client:
        job = client.submit(small_spec("nothing-yet"))
        assert client.best(job, k=3) == []
        with pytest.raises(ApiError) as missing:
            client.download(job, 0, tmp_path / "x")
        assert missing.value.status == 404 and "trial 0" in missing.value.message
        with pytest.raises(ApiError) as unknown_job:
            client.weights("nosuchjob", 0)
        assert unknown_job.value.status == 404
        assert not (tmp_path / "x").exists()
