"""Trainers, torch-free: which training code a spec's ``training.trainer`` names, and its options.

A trainer is the code that trains one trial (docs/interface.md "Trainer plugins"): the built-in
loop is trainer ``builtin``; any other is an installed entry point in the group
``regsearch.trainers`` that a worker loads (``regsearch.worker.trainers``) and publishes, with its
``Options`` as JSON schema (``regsearch.store.families``: a row whose ``source`` is ``trainer``).
The control plane checks a spec against what the live workers published: the catalog passed as
validation context (``regsearch.domain.families.validation_context``) answers ``trainers()``,
``{name: {options (JSON schema), doc}}``, or None when it cannot say (a stored job read back,
an offline check): then nothing is refused here and the worker checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from regsearch.domain.validation import field_errors

BUILTIN_TRAINER = "builtin"
SOURCE = "trainer"  # the ``source`` of a trainer's row among the published families


class TrainerError(ValueError):
    """A bad ``training.trainer`` / ``training.options``; ``field`` names it, as ``SpecError`` does."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def published_trainers(catalog: Any) -> dict[str, Mapping[str, Any]] | None:
    """What the catalog's live workers offer (``{name: {options, doc}}``); None: unknown."""
    trainers = getattr(catalog, "trainers", None)
    return trainers() if callable(trainers) else None


def check_trainer(name: str, options: Mapping[str, Any], catalog: Any) -> None:
    """At submit: the trainer is offered by a live worker, and its options fit its ``Options``.

    ``builtin`` takes no options. With no catalog that knows the trainers, a plugin trainer is
    not checked here (the worker that loads it checks its options with the real model).
    """
    if name == BUILTIN_TRAINER:
        if options:
            raise TrainerError("training.options", "the built-in trainer takes no options; the recipe is set "
                                                   "with training.* (lr, optimizer, ...)")
        return
    offered = published_trainers(catalog)
    if offered is None:
        return
    found = offered.get(name)
    if found is None:
        names = ", ".join([BUILTIN_TRAINER, *sorted(offered)])
        raise TrainerError("training.trainer", f"no live worker offers trainer {name!r} (offered: {names}); "
                                               "install it (entry point group regsearch.trainers) where the "
                                               "workers run and restart them")
    schema = found.get("options")
    if not isinstance(schema, Mapping) or not schema:
        if options:
            raise TrainerError("training.options", f"trainer {name!r} takes no options")
        return
    from regsearch.domain.published import knobs_model

    model = knobs_model(f"{name}_options", schema)
    try:
        model.model_validate(dict(options))
    except ValidationError as exc:
        first = field_errors(exc.errors(include_url=False), model=model)[0]
        raise TrainerError(f"training.options.{first['field']}", first["message"]) from None
