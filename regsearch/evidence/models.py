"""The report's shape: pydantic models that dump to plain JSON (the API answers with them).

Every mean with its interval is :class:`regsearch.domain.stats.Interval`, the one declaration of that shape."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from regsearch.domain.stats import Interval


class MedianStat(BaseModel):
    """A Kaplan-Meier median time to the target and its Brookmeyer-Crowley 95% interval."""

    median: float | None = Field(description="None: fewer than half reach the target")
    low: float | None
    high: float | None = Field(description="None: not bounded within the time observed")


class ConvergenceStat(BaseModel):
    """A group held to the job's target (regsearch.domain.convergence)."""

    n: int = Field(description="complete trials with per-epoch rows")
    reached: int = Field(description="of them, those that reached the target; the rest are censored")
    share: float | None
    epochs_to_target: MedianStat
    seconds_to_target: MedianStat
    train_loss_area: Interval = Field(description="mean training loss over the epochs run, per trial")


class TargetInfo(BaseModel):
    metric: str = Field(description="val_acc (reached at or above) or val_loss (at or below)")
    value: float
    source: str = Field(description="objective.target, or the stated share of the job's best")


class Group(BaseModel):
    key: str = Field(description="placement, band key (0.1-0.2, 0.01-0.02) or none")
    label: str
    rank: int | None = Field(description="by the objective's mean (placements only); None without data")
    n_trials: int = Field(description="search trials in the group (retried attempts left out)")
    n_complete: int = Field(description="complete search trials")
    n_distinct: int = Field(description="distinct configurations among them (a repeat with the same seed counts "
                                        "once): the observations the means are over")
    n_pruned: int
    n_failed: int
    n_active: int = Field(description="queued or running")
    metrics: dict[str, Interval]
    best: dict[str, Any] | None = Field(
        default=None, description="placements only: the group's first configuration in the job's ranking "
                                  "(number, the objective's score, and lr / weight_decay when the space searches "
                                  "them): the placement at its best rate")
    convergence: ConvergenceStat | None = Field(default=None, description="placements only: to the job's target")
    extras: dict[str, Interval] = Field(default_factory=dict, description="placements only: variance_shift (mean "
                                        "over BN slots), test_acc before/after BN recalibration, where measured")


class Grouping(BaseModel):
    by: Literal["placement", "dropout_band", "momentum_band"]
    title: str
    description: str
    groups: list[Group]


class Comparison(BaseModel):
    """The leading placement against the runner-up, on the objective."""

    metric: str
    leader: str
    runner_up: str
    difference: float | None = Field(description="leader mean - runner-up mean")
    overlap: bool = Field(description="the 95% intervals overlap (or one is missing): within noise")


class ConfirmedConfig(BaseModel):
    rank: int
    number: int = Field(description="the search trial whose configuration was re-run")
    params: dict[str, Any]
    config: str
    numbers: list[int] = Field(description="the group's trial numbers, the search trial first")
    seeds: list[int] = Field(description="their training seeds")
    metrics: dict[str, Interval]


class Confirmation(BaseModel):
    requested: bool
    top_k: int | None
    seeds: int | None
    n_complete: int = Field(description="complete confirmation runs")
    n_pending: int = Field(description="confirmation runs queued or running")
    n_failed: int
    configs: list[ConfirmedConfig] = Field(description="ranked by the seed-group mean of the objective")


class Recommendation(BaseModel):
    sentence: str
    basis: Literal["confirmed", "single_run", "none"]
    number: int | None = Field(description="the search trial of the recommended configuration")
    placement: str | None
    params: dict[str, Any] | None
    config: Interval | None = Field(description="the objective over its seed group (one run when unconfirmed)")
    placement_stat: Interval | None = Field(description="the objective over its placement's search trials")
    runner_up: str | None
    runner_up_stat: Interval | None
    decided_by: Literal["significant", "within_noise", "config_over_placement", "only_placement", "insufficient"
                        ] | None = Field(
        default=None, description="how far the evidence carries /best's first configuration: its placement's 95% "
                                  "interval clears the others' (significant); it overlaps some (within_noise: the "
                                  "ranking's measure, named in the sentence, chooses); another placement averages "
                                  "better (config_over_placement); the only placement; or too few complete, "
                                  "distinct configurations to compare (insufficient: no recommendation)")
    tied: list[str] = Field(default_factory=list, description="the recommended placement and those within noise of "
                                                              "it, best mean first")
    missing: dict[str, int] = Field(default_factory=dict, description="insufficient: per placement, the complete "
                                                                      "distinct configurations still needed")
    reason: str | None = Field(default=None, description="why this placement, in words")


class ReportWarning(BaseModel):
    code: str
    message: str


class Report(BaseModel):
    job_id: str | None = None
    name: str | None = None
    status: str | None = None
    family: str | None = Field(default=None, description="the job's model family")
    model: str | None = Field(default=None, description="the model in one line, its family then every knob: "
                                                         "resnet depth=20 width=16 activation=relu")
    slots: list[str] | None = Field(default=None, description="the model's slots in order by the user's own layer "
                                                              "names (layer1.0.conv1), where the family names them")
    metric: str = Field(description="the objective the ranking uses (the spec's first)")
    direction: Literal["maximize", "minimize"]
    metrics: list[str] = Field(description="the metrics summarized per group")
    counts: dict[str, dict[str, int]] = Field(description="search and confirm: trials per state")
    groupings: list[Grouping]
    target: TargetInfo | None = Field(default=None, description="the common target convergence is measured to")
    convergence: str | None = Field(default=None, description="the convergence comparison in words (BN vs without)")
    comparison: Comparison | None
    confirmation: Confirmation
    recommendation: Recommendation
    warnings: list[ReportWarning]

    def grouping(self, by: str) -> Grouping:
        return next(g for g in self.groupings if g.by == by)
