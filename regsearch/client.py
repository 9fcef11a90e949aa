"""The REST client for users' own code and the CLI: the API is the only way in.

    from regsearch import Client, load_model
    client = Client("http://127.0.0.1:8000", token=None)
    job = client.submit("my-job.yaml")            # a path, a dict or a JobSpec
    client.wait(job, progress=True)               # returns the finished job
    top = client.best(job, k=3)                    # the /best items
    client.download(job, top[0]["number"], "best/")   # recipe.json + weights.safetensors
    model = load_model("best/")                    # the trained torch module, eval mode

Every method that takes a ``job`` accepts the job's id or a job document (what ``submit``,
``job`` and ``wait`` return). Torch-free: ``load_model`` lives with the worker.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from typing_extensions import Self

from regsearch.config import Settings
from regsearch.domain.progress import document_progress, progress_detail
from regsearch.domain.states import FINAL_JOB_STATES

if TYPE_CHECKING:
    from rich.console import Console

    from regsearch.domain.spec import JobSpec

DEFAULT_API_URL = "http://127.0.0.1:8000"
RECIPE_FILE, WEIGHTS_FILE = "recipe.json", "weights.safetensors"  # what load_model reads
JobRef = str | Mapping[str, Any]  # a job id, or a job document with its "id"


def job_id_of(job: JobRef) -> str:
    return job if isinstance(job, str) else str(job["id"])


class ApiError(RuntimeError):
    """The API answered with an error; ``status`` is the HTTP status (0: not reachable)."""

    def __init__(self, status: int, detail: Any) -> None:
        self.status = status
        self.detail = detail
        super().__init__(self.message)

    @property
    def message(self) -> str:
        detail = self.detail
        if isinstance(detail, list):
            parts = []
            for item in detail:
                if isinstance(item, dict):
                    parts.append(f"{item.get('field', '?')}: {item.get('message', item)}")
                else:
                    parts.append(str(item))
            return "; ".join(parts)
        return str(detail)

    @property
    def is_bad_input(self) -> bool:
        return self.status in (400, 404, 409, 413, 422)


class Client:
    """Speaks to the API at ``url``, with ``Authorization: Bearer <token>`` when a token is given.

    ``Client.from_settings(settings)`` takes both from ``REGSEARCH_API_URL``/``REGSEARCH_API_TOKEN``
    (what the CLI does); ``Client(settings)`` still works the same way.
    """

    def __init__(self, url: str | Settings = DEFAULT_API_URL, token: str | None = None, *,
                 timeout_s: float = 30.0) -> None:
        if isinstance(url, Settings):
            url, token = url.api_url, token or url.api_token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url
        self._http = httpx.Client(base_url=url, headers=headers, timeout=timeout_s)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, *, timeout_s: float = 30.0) -> Client:
        """A client for ``settings.api_url`` with ``settings.api_token`` (default: the environment's)."""
        from regsearch.config import get_settings

        settings = settings or get_settings()
        return cls(settings.api_url, settings.api_token, timeout_s=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, *, raw: bool = False, **kwargs: Any) -> Any:
        """The answer's JSON (``raw``: its bytes); :class:`ApiError` for an error or no answer."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(0, f"cannot reach the API at {self._http.base_url}: {exc}") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ApiError(response.status_code, detail)
        return response.content if raw else response.json()

    def submit(self, spec: str | os.PathLike[str] | Mapping[str, Any] | JobSpec,
               idempotency_key: str | None = None) -> dict[str, Any]:
        """Submit a job: a spec file's path (YAML or JSON), a dict or a ``JobSpec``; the job document.

        A path is read and checked here (``SpecError`` naming the field), against what the
        service's workers publish (its families, networks and trainers, asked from the API); a
        dict is checked by the API (``ApiError`` 422 naming the field)."""
        from regsearch.domain.spec import JobSpec, load_spec

        if isinstance(spec, (str, os.PathLike)):
            spec = load_spec(Path(spec), self.catalog())
        document = spec.model_dump(mode="json", exclude_none=True) if isinstance(spec, JobSpec) else dict(spec)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._request("POST", "/jobs", json=document, headers=headers)

    def jobs(self) -> dict[str, Any]:
        return self._request("GET", "/jobs")

    def families(self) -> list[dict[str, Any]]:
        """The model families on offer: ``[{name, knobs (JSON schema), slots_doc, source}]``.

        The ``auto`` entry also carries ``networks: [{name, entry_point, error}]`` (the installed
        ``regsearch.networks`` entry points; ``error`` is why one does not load, None when it does)
        once a live worker has published them; without such a worker the key is absent."""
        return list(self._request("GET", "/families")["items"])

    def trainers(self) -> list[dict[str, Any]]:
        """The trainers on offer: ``[{name, options (JSON schema), doc, source}]`` (``builtin`` first)."""
        return list(self._request("GET", "/trainers")["items"])

    def catalog(self) -> Any:
        """What the service's live workers publish (``regsearch.service_catalog.ServiceCatalog``),
        to check a spec against as ``POST /jobs`` will; ``ApiError`` (status 0) when unreachable."""
        from regsearch.service_catalog import service_catalog

        return service_catalog(self)

    def job(self, job: JobRef) -> dict[str, Any]:
        return self._request("GET", f"/jobs/{job_id_of(job)}")

    def wait(self, job: JobRef, *, progress: bool | Console = False, poll_s: float = 1.0,
             timeout_s: float | None = None) -> dict[str, Any]:
        """Poll until the job is completed, failed or cancelled; the finished job document.

        ``progress=True`` draws a progress bar (rich) on the terminal, ``progress=console`` on that
        rich Console. ``timeout_s``: give up with ``TimeoutError`` (the job goes on)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        document = self.job(job)
        if not progress:
            while document["status"] not in FINAL_JOB_STATES:
                _sleep_until(deadline, poll_s, document)
                document = self.job(job)
            return document
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        console = progress if isinstance(progress, Console) else None
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task(document["name"], total=document_progress(document).planned, detail="")
            while True:
                done, total = document_progress(document)
                bar.update(task, completed=done, total=total, detail=progress_detail(document))
                if document["status"] in FINAL_JOB_STATES:
                    return document
                _sleep_until(deadline, poll_s, document)
                document = self.job(job)

    def trials(self, job: JobRef, state: str | None = None, limit: int = 1000, offset: int = 0) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if state:
            params["state"] = state
        return self._request("GET", f"/jobs/{job_id_of(job)}/trials", params=params)

    def trial(self, job: JobRef, number: int) -> dict[str, Any]:
        """One trial with its recipe and its per-epoch curve."""
        return self._request("GET", f"/jobs/{job_id_of(job)}/trials/{int(number)}")

    def weights(self, job: JobRef, number: int) -> bytes:
        """A complete trial's best-validation weights (safetensors bytes); ApiError 404 naming why
        when the job did not keep them (pruned, failed, evicted, not finished, unknown trial)."""
        return self._request("GET", f"/jobs/{job_id_of(job)}/trials/{int(number)}/weights", raw=True)

    def download(self, job: JobRef, number: int, directory: str | os.PathLike[str]) -> Path:
        """Write trial ``number``'s ``recipe.json`` and ``weights.safetensors`` into ``directory``
        (created); ``load_model(directory)`` rebuilds the trained module. The recipe is written
        first, so a trial whose weights were not kept (ApiError 404 naming why) leaves it alone."""
        trial = self.trial(job, number)
        if trial.get("recipe") is None:
            raise ApiError(404, f"trial {number} has no recipe yet ({trial.get('state')})")
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomically(folder / RECIPE_FILE, json.dumps(trial["recipe"], indent=2, sort_keys=True).encode())
        _write_atomically(folder / WEIGHTS_FILE, self.weights(job, number))
        return folder

    def download_many(self, job: JobRef, numbers: list[int], directory: str | os.PathLike[str]) -> dict[int, str]:
        """:meth:`download` of each trial into ``directory/<number>``; for those whose weights the
        job did not keep, why (the 404's detail), by number. Other errors raise."""
        missing: dict[int, str] = {}
        for number in numbers:
            try:
                self.download(job, number, Path(directory) / str(int(number)))
            except ApiError as exc:
                if exc.status != 404:
                    raise
                missing[int(number)] = exc.message
        return missing

    def all_trials(self, job: JobRef, state: str | None = None) -> list[dict[str, Any]]:
        """Every trial of a job, page by page."""
        items: list[dict[str, Any]] = []
        while True:
            page = self.trials(job, state, limit=1000, offset=len(items))
            items.extend(page["items"])
            if not page["items"] or len(items) >= page["count"]:
                return items

    def best(self, job: JobRef, k: int = 5) -> list[dict[str, Any]]:
        """The job's first ``k`` configurations (the ``GET /jobs/{id}/best`` items), best first."""
        return list(self._request("GET", f"/jobs/{job_id_of(job)}/best", params={"k": k})["items"])

    def report(self, job: JobRef) -> dict[str, Any]:
        """The job's evidence (``GET /jobs/{id}/report``): groups with intervals, recommendation, warnings."""
        return self._request("GET", f"/jobs/{job_id_of(job)}/report")

    def cancel(self, job: JobRef) -> dict[str, Any]:
        return self._request("POST", f"/jobs/{job_id_of(job)}/cancel")

    def delete(self, job: JobRef) -> None:
        """Delete a finished job with its trials, study and weights (``DELETE /jobs/{id}``);
        a queued or running job is an :class:`ApiError` 409: cancel it first."""
        self._request("DELETE", f"/jobs/{job_id_of(job)}", raw=True)

    def ready(self) -> bool:
        try:
            return self._http.get("/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


def _sleep_until(deadline: float | None, poll_s: float, job: Mapping[str, Any]) -> None:
    if deadline is not None and time.monotonic() + poll_s > deadline:
        raise TimeoutError(f"job {job['id']} is still {job['status']}")
    time.sleep(poll_s)


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.part")
    temporary.write_bytes(data)
    os.replace(temporary, path)
