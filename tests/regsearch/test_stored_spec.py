"""The lenient view of a stored spec (regsearch.domain.stored_spec) and the one progress count."""

from __future__ import annotations

from typing import Any

import pytest

from regsearch.domain import families
from regsearch.domain.progress import document_progress, progress, progress_detail, state_counts
from regsearch.domain.published import family_info
from regsearch.domain.spec import (
    BudgetSpec,
    JobSpec,
    SpaceSpec,
    SpecError,
    TrainingSpec,
    validate_spec,
)
from regsearch.domain.stored_spec import StoredSpec

SPEC = {"name": "s", "dataset": {"name": "digits"}, "pruner": "none",
        "objective": {"metrics": ["val_acc", "gap"]}, "budget": {"n_trials": 12, "parallelism": 3, "keep_weights": 2},
        "training": {"epochs": 4, "seed": 7}, "space": {"placement": ["bn-act", "act"]}}


def test_a_valid_spec_reads_as_its_validated_values() -> None:
    spec = validate_spec(SPEC)
    stored = spec.model_dump(mode="json", exclude_none=True)
    for view in (StoredSpec.read(stored), StoredSpec.read(spec)):
        assert (view.name, view.dataset, view.sampler, view.pruner) == ("s", "digits", "tpe", "none")
        assert (view.epochs, view.seed, view.n_trials, view.parallelism, view.keep_weights) == (4, 7, 12, 3, 2)
        assert view.objectives == (("val_acc", "maximize"), ("gap", "minimize"))
        assert (view.metric, view.direction) == ("val_acc", "maximize")
        assert view.placements == ("bn-act", "act")
        assert (view.confirm_top_k, view.confirm_seeds, view.n_confirm, view.n_planned) == (None, None, 0, 12)


def test_confirmation_runs_add_to_the_planned_trials() -> None:
    view = StoredSpec.read({**SPEC, "objective": {"metrics": ["val_acc"]}, "confirm": {"top_k": 3, "seeds": 2}})
    assert (view.confirm_top_k, view.confirm_seeds, view.n_confirm, view.n_planned) == (3, 2, 6, 18)


@pytest.mark.parametrize("odd", [None, {}, [], "text", 5, {"budget": "x", "objective": "nonsense", "confirm": 3}])
def test_anything_stored_reads_without_an_error_and_with_the_specs_defaults(odd: Any) -> None:
    view = StoredSpec.read(odd)
    assert view.objectives == (("val_acc", "maximize"),)
    assert (view.n_trials, view.keep_weights, view.epochs) == (BudgetSpec().n_trials, BudgetSpec().keep_weights,
                                                              TrainingSpec().epochs)
    assert view.parallelism is None  # no limit the claim could enforce
    assert view.n_confirm == 0 and view.placements == tuple(SpaceSpec().choices("placement"))


def test_values_of_the_wrong_type_fall_back_one_by_one() -> None:
    view = StoredSpec.read({"name": 3, "budget": {"n_trials": "ten", "parallelism": True, "keep_weights": 0},
                            "objective": {"metrics": ["gap", "val_acc"], "directions": ["maximize"]},
                            "unknown": 1})
    assert view.name is None and view.n_trials == BudgetSpec().n_trials
    assert view.parallelism is None and view.keep_weights == 0
    assert view.objectives == (("gap", "minimize"), ("val_acc", "maximize"))  # directions that do not pair up


def test_a_former_metric_name_reads_as_the_current_one() -> None:
    assert StoredSpec.read({"objective": {"metrics": ["val_auc"]}}).objectives == (("mean_val_acc", "maximize"),)


def test_counts_and_progress_have_one_definition() -> None:
    counts = state_counts([("complete", 5), ("pruned", 2), ("failed", 1), ("running", 2), ("odd", 9)])
    assert counts == {"queued": 0, "running": 2, "complete": 5, "pruned": 2, "failed": 1, "cancelled": 0}
    assert progress(counts, 20) == (8, 20) and progress(counts, 20).fraction == 0.4
    assert progress(counts, 4).fraction == 1.0 and progress(counts, 0).fraction == 0.0
    job = {"counts": counts, "n_trials": 10, "n_confirm": 6}
    assert document_progress(job) == (8, 16)
    assert document_progress({"counts": counts, "spec": {"budget": {"n_trials": 30}}}) == (8, 30)
    assert document_progress({}) == (0, 0)



def test_the_progress_line_shows_the_best_by_the_jobs_objective() -> None:
    counts = {"running": 2, "pruned": 1, "failed": 0}
    regression = {"counts": counts, "spec": {"objective": {"metrics": ["val_rmse"]}},
                  "best": {"metrics": {"val_rmse": 55.1234, "val_acc": None}}}
    assert progress_detail(regression) == "running 2, pruned 1, failed 0, best val_rmse 55.123"
    assert progress_detail({"counts": counts, "best": {"metrics": {"val_acc": 0.91234}}}).endswith("best val_acc 0.912")
    assert progress_detail({}) == "running 0, pruned 0, failed 0"  # nothing finished yet: no best

class _Catalog:
    """A catalog of one published plugin family, as the API's and the coordinator's."""

    def __init__(self) -> None:
        self.info = family_info({"name": "twinnet", "source": "plugin", "slots_doc": "each conv",
                                 "knobs": {"type": "object", "properties": {
                                     "channels": {"type": "array", "default": [16, 16]}}}})

    def get(self, name: str) -> families.FamilyInfo | None:
        return self.info if name == "twinnet" else None

    def names(self) -> list[str]:
        return ["twinnet"]


def test_the_family_catalog_is_passed_to_validation_explicitly() -> None:
    spec = {"name": "p", "dataset": {"name": "digits"}, "model": {"family": "twinnet", "channels": [8, 8]}}
    with pytest.raises(SpecError, match="unknown family 'twinnet'"):
        validate_spec(spec)  # nothing process-wide: without the catalog the family is unknown
    catalog = _Catalog()
    parsed = validate_spec(spec, catalog)
    assert parsed.model.info is catalog.info and parsed.model.describe() == "twinnet channels=[8,8]"
    assert JobSpec.model_validate(spec, context=families.validation_context(catalog)) == parsed
    with pytest.raises(SpecError, match="no live worker offers family 'nope'.*twinnet"):
        validate_spec({**spec, "model": {"family": "nope"}}, catalog)
    with pytest.raises(SpecError, match="unknown family 'twinnet'"):
        validate_spec(spec)  # and the call before left nothing behind
