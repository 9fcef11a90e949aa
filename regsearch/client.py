"""A small REST client for the CLI (and for users' own code): the API is the only way in."""

from __future__ import annotations

from typing import Any

import httpx
from typing_extensions import Self

from regsearch.config import Settings


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
    """Speaks to ``settings.api_url`` with the bearer token when one is configured."""

    def __init__(self, settings: Settings, timeout_s: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {settings.api_token}"} if settings.api_token else {}
        self._http = httpx.Client(base_url=settings.api_url, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
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
        return response.json()

    def submit(self, spec: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._request("POST", "/jobs", json=spec, headers=headers)

    def jobs(self) -> dict[str, Any]:
        return self._request("GET", "/jobs")

    def job(self, job_id: str) -> dict[str, Any]:
        return self._request("GET", f"/jobs/{job_id}")

    def trials(self, job_id: str, state: str | None = None, limit: int = 1000, offset: int = 0) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if state:
            params["state"] = state
        return self._request("GET", f"/jobs/{job_id}/trials", params=params)

    def all_trials(self, job_id: str, state: str | None = None) -> list[dict[str, Any]]:
        """Every trial of a job, page by page."""
        items: list[dict[str, Any]] = []
        while True:
            page = self.trials(job_id, state, limit=1000, offset=len(items))
            items.extend(page["items"])
            if not page["items"] or len(items) >= page["count"]:
                return items

    def best(self, job_id: str, k: int = 5) -> dict[str, Any]:
        return self._request("GET", f"/jobs/{job_id}/best", params={"k": k})

    def report(self, job_id: str) -> dict[str, Any]:
        """The job's evidence (``GET /jobs/{id}/report``): groups with intervals, recommendation, warnings."""
        return self._request("GET", f"/jobs/{job_id}/report")

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._request("POST", f"/jobs/{job_id}/cancel")

    def ready(self) -> bool:
        try:
            return self._http.get("/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False
