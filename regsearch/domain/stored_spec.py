"""A stored job's spec, read leniently: the one way the service reads a spec back from the database.

A job row keeps the spec it was submitted with, as JSON. Reading it back as a
:class:`~regsearch.domain.spec.JobSpec` can fail: an older version wrote it, or it names a plugin
family whose knobs this process does not know. The pages, the API's answers, the claim's
parallelism check and the ranking still need a few of its values, so they read them here: each
value is taken when it has the right type and otherwise falls back to what ``JobSpec`` would
have filled in, and nothing here raises. A process that must act on the whole spec (the
coordinator's sampler, the worker) validates it with ``JobSpec.model_validate`` instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from regsearch.domain.metrics import DIRECTIONS, current_metric_name
from regsearch.domain.spec import BudgetSpec, JobSpec, SpaceSpec, TrainingSpec

_BUDGET, _TRAINING, _SPACE = BudgetSpec(), TrainingSpec(), SpaceSpec()


def _part(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = data.get(name)
    return value if isinstance(value, Mapping) else {}


def _int(value: Any, default: int | None) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _str(value: Any, default: str | None) -> str | None:
    return value if isinstance(value, str) else default


def _strings(value: Any) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and value and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _objectives(objective: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """(metric, direction) pairs; directions that do not pair up with the metrics are the metrics' own."""
    metrics = [current_metric_name(m) for m in _strings(objective.get("metrics")) or ["val_acc"]]
    directions = _strings(objective.get("directions"))
    if directions is None or len(directions) != len(metrics):
        directions = [DIRECTIONS.get(m, "maximize") for m in metrics]
    return tuple((m, "minimize" if d == "minimize" else "maximize") for m, d in zip(metrics, directions))


@dataclass(frozen=True)
class StoredSpec:
    """What the service reads of a stored spec; build it with :meth:`read`."""

    data: Mapping[str, Any]  # the stored JSON as it is ({} for a row without one)
    name: str | None
    dataset: str | None
    sampler: str | None
    pruner: str | None
    epochs: int | None
    seed: int
    n_trials: int | None
    parallelism: int | None  # None: no limit the claim can enforce
    keep_weights: int
    objectives: tuple[tuple[str, str], ...]  # (metric, direction), the first one ranks
    placements: tuple[str, ...]
    confirm_top_k: int | None  # None: no confirmation runs asked for
    confirm_seeds: int | None

    @classmethod
    def read(cls, spec: Any) -> StoredSpec:
        """The view of ``spec``: a stored JSON object, a ``JobSpec``, or anything else (read as ``{}``)."""
        if isinstance(spec, JobSpec):
            spec = spec.model_dump(mode="json", exclude_none=True)
        data: Mapping[str, Any] = spec if isinstance(spec, Mapping) else {}
        budget, training, confirm = _part(data, "budget"), _part(data, "training"), _part(data, "confirm")
        placements = _strings(_part(data, "space").get("placement")) or _SPACE.choices("placement")
        return cls(
            data=data,
            name=_str(data.get("name"), None),
            dataset=_str(_part(data, "dataset").get("name"), None),
            sampler=_str(data.get("sampler"), JobSpec.model_fields["sampler"].default),
            pruner=_str(data.get("pruner"), JobSpec.model_fields["pruner"].default),
            epochs=_int(training.get("epochs"), _TRAINING.epochs),
            seed=_int(training.get("seed"), _TRAINING.seed) or 0,
            n_trials=_int(budget.get("n_trials"), _BUDGET.n_trials),
            parallelism=_int(budget.get("parallelism"), None),
            keep_weights=_int(budget.get("keep_weights"), _BUDGET.keep_weights) or 0,
            objectives=_objectives(_part(data, "objective")),
            placements=tuple(placements),
            confirm_top_k=_int(confirm.get("top_k"), None) if confirm else None,
            confirm_seeds=_int(confirm.get("seeds"), None) if confirm else None,
        )

    @property
    def metric(self) -> str:
        """The first objective's metric: what a single-objective ranking ranks by."""
        return self.objectives[0][0]

    @property
    def direction(self) -> str:
        return self.objectives[0][1]

    @property
    def n_confirm(self) -> int:
        """Confirmation runs planned after the search: ``confirm.top_k x confirm.seeds``."""
        return (self.confirm_top_k or 0) * (self.confirm_seeds or 0)

    @property
    def n_planned(self) -> int:
        """Search trials + confirmation runs: the one denominator of every progress count."""
        return (self.n_trials or 0) + self.n_confirm
