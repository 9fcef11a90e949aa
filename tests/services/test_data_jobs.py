"""The user's own data through the whole service: an image folder searched with augmentation,
the job's ``data``, and a dataset that cannot work ending its job at once."""

from __future__ import annotations

import httpx
import pytest

from tests.services.books import assert_books_agree
from tests.services.stack import Stack, small_spec
from tests.worker.test_images import write_images

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_an_image_folder_is_searched_end_to_end_with_augmentation(stack: Stack) -> None:
    write_images(stack.settings.data_dir / "shapes", classes=3, per_class=30, size=8)
    spec = small_spec("images", dataset={"name": "images", "path": "shapes", "size": [8, 8]},
                      training={"epochs": 3, "batch_size": 16, "augment": {"crop_padding": 1, "hflip": True}},
                      budget={"n_trials": 3, "parallelism": 2}, pruner="none")
    spec["model"] = {"family": "cnn", "channels": [4]}
    job = stack.client.submit(spec)
    done = stack.wait_job(job["id"])
    assert done["status"] == "completed" and done["counts"]["complete"] == 3, stack.logs()
    assert done["data"] == {"n_train": 54, "n_val": 18, "n_test": 18, "sample_shape": [1, 8, 8], "n_classes": 3}
    assert_books_agree(stack.db, stack.client, job["id"])
    (best,) = stack.client.best(job["id"], 1)
    assert best["recipe"]["input_shape"] == [1, 8, 8] and best["metrics"]["test_acc"] is not None


def test_a_dataset_that_cannot_be_read_ends_the_job_at_once(stack: Stack) -> None:
    # a zip's first bytes, so the embedded API's format check at submit lets it through to a worker
    (stack.settings.data_dir / "broken.npz").write_bytes(b"PK\x03\x04 this is not an npz archive")
    spec = small_spec("broken", dataset={"name": "npz", "path": "broken.npz"},
                      budget={"n_trials": 20, "parallelism": 2, "max_retries": 2})
    job = stack.client.submit(spec)
    done = stack.wait_job(job["id"], 90)
    assert done["status"] == "failed", done
    assert done["error"].startswith("dataset.path: broken.npz is not a readable .npz file"), done["error"]
    rows = assert_books_agree(stack.db, stack.client, job["id"])
    started = [r for r in rows if r.started_at is not None]
    assert 1 <= len(started) <= 4, "the job ended at the first dataset error, not after 20 trials"
    assert all(not r.retryable for r in rows)


def test_embedded_a_missing_dataset_file_is_a_422_at_submit(stack: Stack) -> None:
    if stack.settings.broker_url is not None:
        pytest.skip("only the embedded API sees the workers' data directory")
    before = stack.client.jobs()["count"]
    spec = small_spec("missing", dataset={"name": "npz", "path": "nowhere/x.npz"})
    response = httpx.post(f"{stack.settings.api_url}/jobs", json=spec, timeout=10)
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {"field": "dataset.path", "message": "nowhere/x.npz does not exist in the data directory"}]
    assert stack.client.jobs()["count"] == before

