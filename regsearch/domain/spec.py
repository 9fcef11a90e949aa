"""The job spec: what a user submits, validated completely before anything is written.

Every model is strict (``extra="forbid"``) so a misspelt field is an error naming it, never a
silently ignored setting. Bounds follow docs/interface.md: 0 <= dropout < 1, 0 < bn_momentum <= 1
(PyTorch convention: running = (1 - m) * running + m * batch), low <= high, counts >= 1.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from regsearch.domain import families
from regsearch.domain.data import NOT_IMAGE_DATASETS, AugmentSpec, DatasetSpec
from regsearch.domain.metrics import DIRECTIONS, OBJECTIVE_METRICS, current_metric_name
from regsearch.domain.model_spec import ModelSpec
from regsearch.domain.recipe import RecipeFields, pack_refusal
from regsearch.domain.strict import Strict
from regsearch.domain.task import check_task

PLACEMENT_TOKENS = ("bn", "act", "drop")
LAYER_SELECTION_RE = re.compile(r"^(all|none|last|last-([1-9][0-9]*))$")



class SpecError(ValueError):
    """A spec that cannot be used; ``field`` names the offending location (``space.dropout.low``).

    ``source`` is where it was read from, when it was a file: ``my-job.yaml`` or ``my-job.yaml:4``.
    """

    def __init__(self, field: str, message: str, source: str | None = None) -> None:
        super().__init__(f"{source}: {field}: {message}" if source else f"{field}: {message}")
        self.field = field
        self.message = message
        self.source = source



def parse_placement(value: str) -> tuple[str, ...]:
    """``"bn-act-drop"`` -> ``("bn", "act", "drop")``; raise ValueError on a bad placement."""
    if not isinstance(value, str) or not value:
        raise ValueError("a placement is a non-empty string such as 'bn-act-drop'")
    tokens = tuple(value.split("-"))
    unknown = [t for t in tokens if t not in PLACEMENT_TOKENS]
    if unknown:
        raise ValueError(f"unknown token {unknown[0]!r} in placement {value!r} (use bn, act, drop)")
    if len(set(tokens)) != len(tokens):
        raise ValueError(f"placement {value!r} repeats a token")
    if "act" not in tokens:
        raise ValueError(f"placement {value!r} has no 'act'; the activation is required")
    return tokens


def all_placements() -> list[str]:
    """Every valid placement: all orderings of act with optional bn and drop (11 in all)."""
    from itertools import permutations

    found = []
    for subset in (("act",), ("bn", "act"), ("act", "drop"), ("bn", "act", "drop")):
        found.extend("-".join(p) for p in permutations(subset))
    return found


def parse_layer_selection(value: str) -> tuple[str, int]:
    """``"last-2"`` -> ``("last", 2)``; ``"all"`` -> ``("all", 0)``; ``"last"`` -> ``("last", 1)``."""
    match = LAYER_SELECTION_RE.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"{value!r} is not a layer selection (use all, none, last or last-K)")
    if match.group(2):
        return "last", int(match.group(2))
    kind = match.group(1)
    return kind, 1 if kind == "last" else 0


def selected_layers(selection: str, n_blocks: int) -> list[int]:
    """Indices of the hidden blocks that ``selection`` picks out of ``n_blocks``."""
    kind, k = parse_layer_selection(selection)
    if kind == "all":
        return list(range(n_blocks))
    if kind == "none":
        return []
    return list(range(max(0, n_blocks - k), n_blocks))


class FloatRange(Strict):
    """A searched float: uniform (or log-uniform) between ``low`` and ``high``."""

    low: float
    high: float
    log: bool = False
    step: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError("low and high must be finite numbers")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("step cannot be combined with log")
        return self


FloatParam = float | FloatRange | list[float]
ChoiceParam = str | list[str]


def _check_float_param(value: FloatParam, ok: Any, bound: str) -> None:
    values: list[float]
    if isinstance(value, FloatRange):
        values = [value.low, value.high]
    elif isinstance(value, list):
        if not value:
            raise ValueError("give at least one value")
        values = value
    else:
        values = [value]
    for v in values:
        if not (isinstance(v, (int, float)) and math.isfinite(v) and ok(v)):
            raise ValueError(f"{v!r} is out of range: {bound}")


class SpaceSpec(Strict):
    """What is searched; any entry may be fixed (a single value) instead of searched."""

    placement: ChoiceParam = Field(default_factory=lambda: ["bn-act-drop", "act-bn-drop", "bn-act", "act-drop", "act"])
    dropout: FloatParam = Field(default_factory=lambda: FloatRange(low=0.0, high=0.6))
    bn_momentum: FloatParam = Field(default_factory=lambda: FloatRange(low=0.01, high=0.5, log=True))
    dropout_layers: ChoiceParam = Field(default_factory=lambda: ["all"])
    bn_layers: ChoiceParam = Field(default_factory=lambda: ["all"])
    # The rate in the search, so no placement loses for want of its own (absent: training's).
    lr: FloatParam | None = None
    weight_decay: FloatParam | None = None
    placement_balance: bool = False  # placements' trial counts within one (services/coordinator/balance.py)

    @field_validator("lr", "weight_decay")
    @classmethod
    def _optimizer(cls, value: FloatParam | None, info: ValidationInfo) -> FloatParam | None:
        low, high = (0, 10) if info.field_name == "lr" else (0, 1)
        if value is not None:
            _check_float_param(value, lambda v: low < v <= high if info.field_name == "lr" else low <= v <= high,
                               "0 < lr <= 10" if info.field_name == "lr" else "0 <= weight_decay <= 1")
        return value

    @field_validator("placement")
    @classmethod
    def _placements(cls, value: ChoiceParam) -> ChoiceParam:
        items = [value] if isinstance(value, str) else value
        if not items:
            raise ValueError("give at least one placement")
        for item in items:
            parse_placement(item)
        if len(set(items)) != len(items):
            raise ValueError("placements repeat")
        return value

    @field_validator("dropout_layers", "bn_layers")
    @classmethod
    def _selections(cls, value: ChoiceParam) -> ChoiceParam:
        items = [value] if isinstance(value, str) else value
        if not items:
            raise ValueError("give at least one layer selection")
        for item in items:
            parse_layer_selection(item)
        return value

    @field_validator("dropout")
    @classmethod
    def _dropout(cls, value: FloatParam) -> FloatParam:
        _check_float_param(value, lambda v: 0 <= v < 1, "0 <= dropout < 1")
        return value

    @field_validator("bn_momentum")
    @classmethod
    def _momentum(cls, value: FloatParam) -> FloatParam:
        _check_float_param(value, lambda v: 0 < v <= 1, "0 < bn_momentum <= 1 (PyTorch convention)")
        return value

    def choices(self, name: str) -> list[str]:
        value = getattr(self, name)
        return [value] if isinstance(value, str) else list(value)


class TrainingSpec(RecipeFields):  # + trainer, options, schedule, label_smoothing, grad_clip
    epochs: int = Field(default=30, ge=1, le=10_000)
    batch_size: int = Field(default=128, ge=1, le=1_000_000)
    lr: float = Field(default=1e-3, gt=0, le=10)
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    weight_decay: float = Field(default=0.0, ge=0, le=1)
    momentum: float = Field(default=0.9, ge=0, lt=1, description="SGD momentum")
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    augment: AugmentSpec | None = None  # image data only
    bn_recalibrate: bool = False  # re-estimate BN's statistics with dropout off after training (worker/variance_shift.py)
    @field_validator("lr", "weight_decay", "momentum")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


class ObjectiveSpec(Strict):
    metrics: list[Literal[OBJECTIVE_METRICS]] = Field(default_factory=lambda: ["val_acc"])  # type: ignore[valid-type]
    directions: list[Literal["maximize", "minimize"]] | None = None
    target: float | None = Field(default=None, allow_inf_nan=False)  # the common level (regsearch.domain.convergence)

    @field_validator("metrics", mode="before")
    @classmethod
    def _current_names(cls, value: Any) -> Any:
        # A former metric name (val_auc) keeps old specs and stored jobs valid.
        if isinstance(value, list):
            return [current_metric_name(m) if isinstance(m, str) else m for m in value]
        return value

    @model_validator(mode="after")
    def _paired(self) -> ObjectiveSpec:
        if not self.metrics:
            raise ValueError("metrics: give at least one metric")
        if len(set(self.metrics)) != len(self.metrics):
            raise ValueError("metrics: a metric is listed twice")
        if self.directions is None:
            object.__setattr__(self, "directions", [DIRECTIONS[m] for m in self.metrics])
        elif len(self.directions) != len(self.metrics):
            raise ValueError(
                f"directions: {len(self.directions)} given for {len(self.metrics)} metrics"
            )
        return self


class BudgetSpec(Strict):
    n_trials: int = Field(default=20, ge=1, le=100_000)
    parallelism: int = Field(default=2, ge=1, le=1024)
    timeout_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    max_retries: int = Field(default=2, ge=0, le=20, description="new attempts after a lost trial")
    keep_weights: int = Field(default=5, ge=0, le=10_000, description="top configurations whose trained weights are kept")
    pack: int = Field(default=1, ge=1, le=64, description="trials of one structure a worker trains as one packed model")


class ConfirmSpec(Strict):
    """Re-run the search's ``top_k`` configurations with ``seeds`` extra training seeds each.

    The extra runs use training seeds ``training.seed + 1 .. training.seed + seeds`` and the same
    data split, so a configuration that won on one lucky initialization shows its spread.
    """

    top_k: int = Field(default=3, ge=1, le=100)
    seeds: int = Field(default=3, ge=1, le=100, description="extra training seeds per configuration")


class JobSpec(Strict):
    """A complete search job (docs/interface.md "Job spec")."""

    name: str = Field(min_length=1, max_length=200)
    task: Literal["classification", "regression"] = "classification"  # regsearch.domain.task
    dataset: DatasetSpec
    model: ModelSpec = Field(default_factory=ModelSpec)
    space: SpaceSpec = Field(default_factory=SpaceSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    objective: ObjectiveSpec = Field(default_factory=ObjectiveSpec)
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    sampler: Literal["tpe", "random", "gp", "nsga2", "grid"] = "tpe"
    pruner: Literal["none", "median", "hyperband"] = "median"
    confirm: ConfirmSpec | None = None

    @model_validator(mode="after")
    def _consistent(self) -> JobSpec:
        n_slots = self.model.n_slots()  # None: a plugin's count is checked with the data's shape
        for field in ("dropout_layers", "bn_layers"):
            for choice in self.space.choices(field):
                kind, k = parse_layer_selection(choice)
                if n_slots is not None and kind == "last" and k > n_slots:
                    raise SpecError(f"space.{field}", f"{choice!r} asks for more than the model's {n_slots} slots")
        if len(self.objective.metrics) > 1 and self.pruner != "none":
            raise SpecError("pruner", "pruning needs a single objective; use pruner: none")
        if self.budget.pack > 1 and (self.space.lr is not None or self.space.weight_decay is not None):
            raise SpecError("space.lr" if self.space.lr is not None else "space.weight_decay", "a packed model "
                            "trains its members at one rate: a searched rate or weight decay needs budget.pack: 1")
        if self.sampler == "grid":
            for field in ("dropout", "bn_momentum", "lr", "weight_decay"):
                if isinstance(getattr(self.space, field), FloatRange):
                    raise SpecError(
                        f"space.{field}", "the grid sampler needs a fixed value or a list of values"
                    )
        if self.training.augment is not None and self.dataset.name in NOT_IMAGE_DATASETS:
            raise SpecError("training.augment", f"augmentation applies to image data; dataset "
                            f"{self.dataset.name!r} holds sequences or flat features")
        if self.budget.pack > 1 and (refused := pack_refusal(self.training)) is not None:
            raise SpecError(*refused)
        check_task(self)  # the dataset, objective and packing fit the task
        if self.confirm is not None and len(self.objective.metrics) > 1:
            raise SpecError("confirm", "confirmation runs rank by one objective; use a single objective")
        if self.confirm is not None and self.training.seed + self.confirm.seeds > 2**31 - 1:
            raise SpecError("confirm.seeds", "training.seed + seeds must stay below 2**31")
        return self

    @property
    def directions(self) -> list[str]:
        return list(self.objective.directions or [])


def format_validation_error(exc: ValidationError) -> list[dict[str, str]]:
    """Pydantic errors as ``[{field, message}]`` with dotted field names, most useful first."""
    from regsearch.domain.validation import field_errors

    return field_errors(exc.errors(include_url=False), model=JobSpec)


def validate_spec(data: Any, catalog: families.FamilyCatalog | None = None) -> JobSpec:
    """Validate a parsed document; raise :class:`SpecError` naming the first bad field.

    ``catalog``: the plugin families workers published, for a process that has not loaded them
    (the API at submit, the coordinator and the dashboard reading a stored job back)."""
    if not isinstance(data, dict):
        raise SpecError("spec", "a job spec is a mapping (YAML or JSON object)")
    try:
        return JobSpec.model_validate(data, context=families.validation_context(catalog))
    except ValidationError as exc:
        first = format_validation_error(exc)[0]
        raise SpecError(first["field"], first["message"]) from None


def load_spec(path: str | Path, catalog: families.FamilyCatalog | None = None) -> JobSpec:
    """Read a YAML or JSON spec file; errors name the file and, where known, the line.

    ``catalog``: what the service's workers publish (``regsearch.service_catalog``), as at submit."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError("spec", f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SpecError("spec", f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})", str(path)) from None
    data = parse_spec_text(text, suffix=path.suffix, source=str(path))
    try:
        return validate_spec(data, catalog)
    except SpecError as exc:
        line = _line_of(text, exc.field) if path.suffix.lower() != ".json" else None
        raise SpecError(exc.field, exc.message, f"{path}:{line}" if line else str(path)) from None


def parse_spec_text(text: str, suffix: str = ".yaml", source: str | None = None) -> Any:
    """Parse YAML (a superset of JSON) or JSON text into plain data.

    A syntax error names ``source`` (the file) and the line and column, not "<unicode string>".
    """
    try:
        if suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        where = f"{source}:{exc.lineno}" if source else f"line {exc.lineno}"
        raise SpecError("spec", f"not valid JSON: {exc.msg} (column {exc.colno})", where) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context = getattr(exc, "context", None)
        detail = f"{context}, {problem}" if context else problem
        if mark is None:
            raise SpecError("spec", f"not valid YAML: {detail}", source) from None
        where = f"{source}:{mark.line + 1}" if source else f"line {mark.line + 1}"
        raise SpecError("spec", f"not valid YAML: {detail} (column {mark.column + 1})", where) from None


def _line_of(text: str, field: str) -> int | None:
    """The 1-based line of a dotted field (``space.dropout.low``) in YAML text, or its deepest parent's."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = None
    for part in field.split("."):
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
        else:
            break
    return line
