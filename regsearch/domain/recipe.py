"""How a trial is trained, beyond the optimizer: its trainer, the rate schedule, label smoothing and
gradient clipping (the spec's ``training.*``; ``TrainingSpec`` in regsearch.domain.spec has these
fields through :class:`RecipeFields`).

The schedule is a factor on ``training.lr`` per optimizer step (:func:`lr_factor`), the same
function for every loop that applies it, so a rate is never computed two ways. ``constant`` and
``cosine`` ramp linearly over ``warmup_epochs`` first; ``step`` multiplies the rate by ``gamma``
every ``step_epochs``; ``onecycle`` rises from lr/25 to lr over its warmup (30% of the steps
when ``warmup_epochs`` is 0), then anneals by cosine to lr/1e4 (Smith & Topin 2019).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, ValidationInfo, model_validator

from regsearch.domain import families
from regsearch.domain.strict import Strict
from regsearch.domain.trainers import BUILTIN_TRAINER, TrainerError, check_trainer

ONECYCLE_START = 25.0  # onecycle starts at lr / 25 (PyTorch's OneCycleLR div_factor)
ONECYCLE_END = 1e4  # ... and ends at lr / 1e4 (its final_div_factor)
ONECYCLE_WARMUP = 0.3  # the share of the steps rising, when warmup_epochs is 0 (its pct_start)


class ScheduleSpec(Strict):
    """``training.schedule``: the learning rate over the epochs (a factor on ``training.lr``)."""

    name: Literal["constant", "cosine", "step", "onecycle"] = "constant"
    warmup_epochs: int = Field(default=0, ge=0, le=10_000, description="linear ramp from ~0 over these epochs")
    step_epochs: int | None = Field(default=None, ge=1, le=10_000,
                                    description="step: every this many epochs (default: a third of the epochs)")
    gamma: float = Field(default=0.1, gt=0, le=1, allow_inf_nan=False, description="step: the factor per step")


class RecipeFields(Strict):
    """The ``training.*`` fields that say how a trial trains (beside epochs, batch, optimizer)."""

    # the code that trains a trial: the built-in loop, or an installed regsearch.trainers plugin
    # (regsearch.domain.trainers), with that trainer's options (its Options model checks them)
    trainer: str = Field(default=BUILTIN_TRAINER, min_length=1, max_length=100,
                         pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    options: dict[str, Any] = Field(default_factory=dict)
    schedule: ScheduleSpec | None = None  # None: a constant rate
    label_smoothing: float = Field(default=0.0, ge=0, lt=1, allow_inf_nan=False)
    grad_clip: float | None = Field(default=None, gt=0, allow_inf_nan=False,
                                    description="clip the gradients' global norm to this")

    @model_validator(mode="after")
    def _recipe(self, info: ValidationInfo) -> RecipeFields:
        check_trainer(self.trainer, self.options, families.catalog_in(info.context))
        epochs = getattr(self, "epochs", None)
        if self.schedule is not None and epochs is not None and self.schedule.warmup_epochs >= epochs:
            raise TrainerError("training.schedule.warmup_epochs", f"{self.schedule.warmup_epochs} warm-up epochs "
                                                                  f"leave none of the {epochs} epochs to train at the rate")
        # (a stored or dumped spec carries the defaults: only a recipe that changes training is refused)
        if self.trainer != BUILTIN_TRAINER and (custom := self.custom_recipe()) is not None:
            raise TrainerError(f"training.{custom}", f"applies to the built-in trainer; trainer "
                                                     f"{self.trainer!r} takes its recipe in training.options")
        return self

    def custom_recipe(self) -> str | None:
        """The first recipe field the packed loop does not apply (a packed job refuses it), or None."""
        if self.schedule is not None and (self.schedule.name != "constant" or self.schedule.warmup_epochs):
            return "schedule"
        if self.label_smoothing:
            return "label_smoothing"
        return "grad_clip" if self.grad_clip is not None else None


def pack_refusal(training: RecipeFields) -> tuple[str, str] | None:
    """``(field, message)`` when ``budget.pack`` > 1 cannot train with ``training``: a plugin
    trainer (packing is the built-in loop's), or a recipe the packed loop does not apply."""
    if training.trainer != BUILTIN_TRAINER:
        return "budget.pack", (f"packed training runs the built-in loop only; trainer {training.trainer!r} "
                               "trains one trial at a time: use pack: 1")
    custom = training.custom_recipe()
    if custom is not None:
        return "budget.pack", (f"packed training runs a constant rate without label smoothing or clipping; "
                               f"training.{custom} needs pack: 1")
    return None


def lr_factor(schedule: ScheduleSpec | None, step: int, steps_per_epoch: int, epochs: int) -> float:
    """The factor on ``training.lr`` for optimizer step ``step`` (0-based) of a run of ``epochs``."""
    if schedule is None:
        return 1.0
    total = max(1, steps_per_epoch * epochs)
    warmup = schedule.warmup_epochs * steps_per_epoch
    if schedule.name == "onecycle":
        rise = warmup or max(1, int(ONECYCLE_WARMUP * total))
        if step < rise:
            start = 1 / ONECYCLE_START
            return start + (1 - start) * step / rise
        progress = min(1.0, (step - rise) / max(1, total - rise))
        end = 1 / ONECYCLE_END
        return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * progress))
    if step < warmup:
        return (step + 1) / warmup
    if schedule.name == "cosine":
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1 + math.cos(math.pi * progress))
    if schedule.name == "step":
        every = schedule.step_epochs or max(1, epochs // 3)
        return float(schedule.gamma ** (step // steps_per_epoch // every))
    return 1.0
