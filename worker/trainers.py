"""Trainers: the code that trains one trial, the built-in loop or an installed plugin.

A trainer plugin is an entry point in the group ``regsearch.trainers`` (``NAME = "pkg.mod:train"``):
a callable taking one :class:`TrainerContext`, with an optional pydantic ``Options`` attribute
that validates the spec's ``training.options`` (docs/interface.md "Trainer plugins"). The
built-in loop (``regsearch.worker.train.train_builtin``) is trainer ``builtin`` and goes through
:func:`run_trainer` too. Every trainer talks to its trial through a
``regsearch.worker.loop.TrialRecorder``: ``report`` each epoch (which says whether to stop),
``save_best`` the weights it considers best, ``test`` the held-out metrics measured with them.

A plugin runs in a thread of the trial's process while this one watches it: what it raises
fails the trial with its message; one that has not reported for ``trainer_report_timeout_s``
(``REGSEARCH_TRAINER_REPORT_TIMEOUT_S``) is failed as stalled (its thread is left behind, a
daemon: its later reports answer "stop"); a non-finite reported value fails the trial naming it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import torch
from pydantic import BaseModel, ValidationError
from torch import nn

from regsearch.domain.metrics import EpochMetrics
from regsearch.domain.spec import JobSpec
from regsearch.domain.trainers import BUILTIN_TRAINER
from regsearch.domain.validation import field_errors
from regsearch.worker.augment import make_augment
from regsearch.worker.loop import TrainResult, TrialRecorder
from regsearch.worker.models import build_model

if TYPE_CHECKING:
    from regsearch.worker.train import DeviceData

log = logging.getLogger("regsearch.worker")

ENTRY_POINT_GROUP = "regsearch.trainers"
DEFAULT_REPORT_TIMEOUT_S = 1800.0


class TrainerError(ValueError):
    """A trainer plugin that cannot be used or that failed: the trial fails with this message
    (a ValueError: the same configuration would fail again, so it is not retried)."""


def installed_trainers() -> dict[str, Any]:
    """``{name: entry point}`` of the installed ``regsearch.trainers`` plugins (not loaded)."""
    found: dict[str, Any] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == BUILTIN_TRAINER:
            log.warning("trainer %r (%s) ignored: the name is built in", entry.name, entry.value)
            continue
        found.setdefault(entry.name, entry)
    return found


def load_trainer(name: str) -> Callable[[TrainerContext], Any]:
    """The installed trainer ``name``, loaded; :class:`TrainerError` naming the field otherwise."""
    entry = installed_trainers().get(name)
    if entry is None:
        raise TrainerError(f"training.trainer: {name!r} is not installed on this worker "
                           f"(installed: {', '.join(sorted(installed_trainers())) or 'none'})")
    try:
        trainer = entry.load()
    except Exception as exc:  # a plugin's import may raise anything
        raise TrainerError(f"training.trainer: {name!r} ({entry.value}) does not load: "
                           f"{type(exc).__name__}: {exc}") from exc
    if not callable(trainer):
        raise TrainerError(f"training.trainer: {name!r} ({entry.value}) is not callable")
    return trainer


def options_model(trainer: Any) -> type[BaseModel] | None:
    """The trainer's ``Options`` pydantic model, when it has one."""
    options = getattr(trainer, "Options", None)
    return options if isinstance(options, type) and issubclass(options, BaseModel) else None


def describe_trainers() -> list[dict[str, Any]]:
    """``[{name, options (JSON schema), doc}]`` of the trainers this worker can run (published:
    ``regsearch.worker.publish``); one that does not load is left out, with a warning."""
    described = []
    for name in sorted(installed_trainers()):
        try:
            trainer = load_trainer(name)
        except TrainerError as exc:
            log.warning("%s", exc)
            continue
        model = options_model(trainer)
        doc = (getattr(trainer, "__doc__", None) or "").strip().splitlines()
        described.append({"name": name, "options": model.model_json_schema() if model is not None else {},
                          "doc": doc[0] if doc else ""})
    return described


def check_options(trainer: Any, options: Mapping[str, Any]) -> Any:
    """The spec's ``training.options`` validated by the trainer's ``Options`` (or kept as a dict)."""
    model = options_model(trainer)
    if model is None:
        if options:
            raise TrainerError("training.options: this trainer takes no options")
        return {}
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        first = field_errors(exc.errors(include_url=False), model=model)[0]
        raise TrainerError(f"training.options.{first['field']}: {first['message']}") from None


class NonFiniteReport(ValueError):
    """A trainer reported a value that is not a finite number."""


class TrainerContext:
    """What a trainer gets for one trial (docs/interface.md "Trainer plugins")."""

    def __init__(self, spec: JobSpec, params: Mapping[str, Any], recipe: dict[str, Any], data: DeviceData,
                 recorder: TrialRecorder, options: Any) -> None:
        self.params = dict(params)
        self.recipe = recipe
        self.options = options
        self.seed = spec.training.seed
        self.epochs = spec.training.epochs
        self.device = data.device
        self.spec = spec
        shape = tuple(int(d) for d in recipe["input_shape"])
        # the job's data as the built-in loop sees it: the splits shaped as the model's input
        # (sample_shape), and the job's augmentation
        self.data: DeviceData = dataclasses.replace(
            data, x_train=data.x_train.reshape(-1, *shape), x_val=data.x_val.reshape(-1, *shape),
            x_test=data.x_test.reshape(-1, *shape), x_train_sample=data.x_train_sample.reshape(-1, *shape),
            sample_shape=shape,
            augment=make_augment(spec.training.augment, tuple(data.sample_shape), spec.training.seed, data.device),
        )
        self._recorder = recorder
        self._lock = threading.Lock()
        self.last_report = time.monotonic()
        self.abandoned = False  # the trial ended without this trainer (stalled): later reports say stop

    def build_model(self) -> nn.Module:
        """The family's module with the trial's slots, on the device, seeded by ``seed``."""
        torch.manual_seed(self.seed)
        return build_model(self.recipe).to(self.device)

    def report(self, epoch: int, train_loss: float, val_loss: float, val_acc: float | None = None,
               train_acc: float | None = None, seconds: float | None = None, **more: float) -> bool:
        """One epoch's metrics (a heartbeat too); True: stop now (pruned, cancelled, lease lost,
        shutting down). A value that is not a finite number fails the trial, naming it."""
        values = {"train_loss": train_loss, "val_loss": val_loss, "val_acc": val_acc, "train_acc": train_acc, **more}
        for key, value in values.items():
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(float(value))):
                raise NonFiniteReport(f"the trainer reported {key}={value!r} in epoch {epoch}: not a finite number")
        with self._lock:
            if self.abandoned:
                return True
            now = time.monotonic()
            elapsed, self.last_report = now - self.last_report, now
            metrics = EpochMetrics(
                epoch=int(epoch), train_loss=float(train_loss), val_loss=float(val_loss),
                val_acc=math.nan if val_acc is None else float(val_acc),
                train_acc=math.nan if train_acc is None else float(train_acc),
                seconds=float(seconds) if seconds is not None else elapsed,
            )
            return self._recorder.report(metrics)

    def save_best(self, model: nn.Module) -> None:
        """Keep ``model``'s weights as the best so far (those of the last reported epoch)."""
        with self._lock:
            if not self.abandoned:
                self._recorder.save_best(model.state_dict())

    def test(self, **metrics: float) -> None:
        """The held-out metrics measured with the best weights (``test_acc=...``)."""
        for key, value in metrics.items():
            if not (isinstance(value, (int, float)) and math.isfinite(float(value))):
                raise NonFiniteReport(f"the trainer's test metric {key}={value!r} is not a finite number")
        with self._lock:
            self._recorder.test(**{k: float(v) for k, v in metrics.items()})


def run_trainer(spec: JobSpec, params: Mapping[str, Any], recipe: dict[str, Any], data: DeviceData, *,
                on_epoch: Callable[[EpochMetrics], bool | None] | None = None,
                report_timeout_s: float = DEFAULT_REPORT_TIMEOUT_S) -> TrainResult:
    """Train one trial with the spec's trainer: the built-in loop, or a plugin in a watched thread."""
    recorder = TrialRecorder(str(data.device), on_epoch, task=spec.task)
    name = spec.training.trainer
    if name == BUILTIN_TRAINER and spec.task == "regression":
        from regsearch.worker.regression import train_regression

        train_regression(recipe, spec.training, data, recorder, data.y_std)
        return recorder.result()
    if name == BUILTIN_TRAINER:
        from regsearch.worker.train import train_builtin

        train_builtin(recipe, spec.training, data, recorder)
        return recorder.result()
    trainer = load_trainer(name)
    context = TrainerContext(spec, params, recipe, data, recorder, check_options(trainer, spec.training.options))
    _watched(name, trainer, context, report_timeout_s)
    if not recorder.epochs:
        raise TrainerError(f"trainer {name!r} returned without reporting an epoch (call ctx.report each epoch)")
    return recorder.result()


def _watched(name: str, trainer: Callable[[TrainerContext], Any], context: TrainerContext,
             report_timeout_s: float) -> None:
    """Run ``trainer`` in a daemon thread; raise what it raised, or :class:`TrainerError` once it
    has not reported for ``report_timeout_s``."""
    raised: list[BaseException] = []

    def target() -> None:
        try:
            trainer(context)
        except BaseException as exc:  # noqa: BLE001 - handed to the trial's thread
            raised.append(exc)

    thread = threading.Thread(target=target, name=f"trainer-{name}", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(timeout=min(1.0, report_timeout_s))
        with context._lock:
            silent = time.monotonic() - context.last_report
            if thread.is_alive() and silent > report_timeout_s:
                context.abandoned = True
                raise TrainerError(f"trainer {name!r} stopped reporting: no ctx.report for {silent:.0f}s "
                                   f"(the limit is {report_timeout_s:g}s, REGSEARCH_TRAINER_REPORT_TIMEOUT_S)")
    if raised:
        exc = raised[0]
        if isinstance(exc, (NonFiniteReport, TrainerError)):
            raise exc
        if isinstance(exc, torch.cuda.OutOfMemoryError):
            raise exc  # may pass on another try (classify_failure retries it)
        raise TrainerError(f"trainer {name!r} raised {type(exc).__name__}: {exc}") from exc
