"""Optuna studies for jobs: storage in the project's database, sampler and pruner from the spec.

A loaded study does not remember its sampler or pruner, so every component that loads one
(coordinator: sampler; worker: pruner) goes through :func:`load_study`.
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING

from regsearch.domain.spec import FloatRange, JobSpec, parse_placement
from regsearch.store.db import engine_kwargs, normalize_url

if TYPE_CHECKING:
    import optuna


def study_name_for(job_id: str) -> str:
    return f"regsearch-{job_id}"


_storage_lock = threading.Lock()


@functools.lru_cache(maxsize=8)
def _storage(url: str) -> optuna.storages.RDBStorage:
    import optuna

    storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs(url))
    _created.append(storage)
    return storage


def optuna_storage(url: str) -> optuna.storages.RDBStorage:
    """One RDB storage per database URL and process (it owns a connection pool).

    Creating one creates Optuna's tables on first use; the lock keeps two threads of one
    process from racing on that (``regsearch db upgrade`` creates them ahead of any request).
    """
    with _storage_lock:
        return _storage(normalize_url(url))


optuna_storage.cache_clear = _storage.cache_clear  # type: ignore[attr-defined]
_created: list[optuna.storages.RDBStorage] = []


def cached_storages() -> list[optuna.storages.RDBStorage]:
    """The storages this process has created (for a forked child to reset their pools)."""
    return list(_created)


def make_sampler(spec: JobSpec) -> optuna.samplers.BaseSampler:
    """The spec's sampler, seeded from ``training.seed`` so a job's search is repeatable."""
    import optuna

    seed = spec.training.seed
    if spec.sampler == "tpe":
        # group=True: the space is conditional (no dropout without 'drop'), and grouped TPE
        # models each sub-space jointly instead of falling back to independent sampling.
        return optuna.samplers.TPESampler(seed=seed, group=True, constant_liar=True, n_startup_trials=min(10, max(2, spec.budget.n_trials // 4)))
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.sampler == "gp":
        # GPSampler needs torch; it is imported lazily by Optuna, only for gp jobs.
        return optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False)
    if spec.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, spec.budget.n_trials // 4)))
    return optuna.samplers.GridSampler(grid_search_space(spec), seed=seed)


def grid_search_space(spec: JobSpec) -> dict[str, list[object]]:
    """The grid for ``sampler: grid``: every searched entry as a finite list of values."""
    space = spec.space
    grid: dict[str, list[object]] = {"placement": list(space.choices("placement"))}
    tokens = {t for p in grid["placement"] for t in parse_placement(str(p))}
    if "drop" in tokens:
        grid["dropout"] = _values(space.dropout)
        grid["dropout_layers"] = list(space.choices("dropout_layers"))
    if "bn" in tokens:
        grid["bn_momentum"] = _values(space.bn_momentum)
        grid["bn_layers"] = list(space.choices("bn_layers"))
    return grid


def _values(value: object) -> list[object]:
    if isinstance(value, FloatRange):  # refused by the spec for grid; kept total for safety
        return [value.low, value.high]
    return list(value) if isinstance(value, list) else [value]


def make_pruner(spec: JobSpec) -> optuna.pruners.BasePruner:
    """Optuna's pruner with the settings of :func:`regsearch.store.pruning.make_pruner` (the workers
    decide with the SQL pruners; this one is what the study records and what tests compare)."""
    import optuna

    from regsearch.store.pruning import pruner_settings

    settings = pruner_settings(spec)
    if settings.kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=settings.n_startup_trials,
                                           n_warmup_steps=settings.n_warmup_steps)
    if settings.kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=settings.min_resource, max_resource=settings.max_resource,
                                              reduction_factor=settings.reduction_factor)
    return optuna.pruners.NopPruner()


def create_study(url: str, job_id: str, spec: JobSpec) -> str:
    """Create the job's study (idempotent); returns its name."""
    import optuna

    name = study_name_for(job_id)
    optuna.create_study(
        storage=optuna_storage(url),
        study_name=name,
        directions=spec.directions,
        load_if_exists=True,
    )
    return name


def delete_study(url: str, name: str) -> None:
    import optuna

    try:
        optuna.delete_study(study_name=name, storage=optuna_storage(url))
    except KeyError:
        pass


def load_study(url: str, name: str, spec: JobSpec, *, with_sampler: bool = True) -> optuna.Study:
    """Load a job's study with the job's pruner (and sampler, for the coordinator)."""
    import optuna

    return optuna.load_study(
        study_name=name,
        storage=optuna_storage(url),
        sampler=make_sampler(spec) if with_sampler else optuna.samplers.RandomSampler(),
        pruner=make_pruner(spec),
    )
