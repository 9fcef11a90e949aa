"""Model families, torch-free: each family's knobs, slot count and input shape (no builders).

A family is a network whose hidden Linear/Conv layers are each followed by a *slot*: the trial's
BN / activation / dropout in its placement order (docs/networks.md). This module is the half of
the registry that the control plane needs: validating a spec's ``model`` (the knobs are a
pydantic model per family), counting slots (``space.dropout_layers: last-K`` must not ask for
more) and the model's input shape from the data's sample shape. The torch builders live in
``regsearch.worker.families``; a worker that loads a plugin registers the plugin's description
here too (:func:`register`), so built-ins and plugins are looked up the same way and nothing
else branches on a family's name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from regsearch.domain.validation import field_errors

Activation = Literal["relu", "gelu", "silu", "tanh", "leaky_relu", "elu"]
Width = Annotated[int, Field(ge=1, le=16384)]
Channels = Annotated[int, Field(ge=1, le=4096)]
MAX_LAYERS = 32


class Knobs(BaseModel):
    """Base of a built-in family's knobs: strict (a misspelt knob is an error naming it), frozen.

    A list knob's default is a ``default`` (pydantic copies it per instance), not a
    ``default_factory``: the JSON schema (GET /families, ``regsearch families``) then shows it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


class MLPKnobs(Knobs):
    hidden: list[Width] = Field(default=[256, 256, 256], min_length=1, max_length=MAX_LAYERS)
    activation: Activation = "relu"

    @field_validator("hidden", mode="before")
    @classmethod
    def _default_when_empty(cls, value: Any) -> Any:
        return [256, 256, 256] if value is None or value == [] else value  # as 0.1 accepted

    @model_validator(mode="before")
    @classmethod
    def _ignore_kernel_size(cls, data: Any) -> Any:
        # 0.1's single model type stored kernel_size in every spec, mlp ones too: still accepted
        if isinstance(data, dict) and "kernel_size" in data:
            return {k: v for k, v in data.items() if k != "kernel_size"}
        return data


class CNNKnobs(Knobs):
    channels: list[Channels] = Field(default=[32, 32], min_length=1, max_length=MAX_LAYERS)
    kernel_size: int = Field(default=3, ge=1, le=15)
    activation: Activation = "relu"

    @field_validator("channels", mode="before")
    @classmethod
    def _default_when_empty(cls, value: Any) -> Any:
        return [32, 32] if value is None or value == [] else value


class ResNetKnobs(Knobs):
    depth: int = Field(default=8, description="6n+2: n basic blocks per stage, three stages")
    width: int = Field(default=16, ge=1, le=1024, description="channels of the first stage (then 2w, 4w)")
    activation: Activation = "relu"

    @field_validator("depth")
    @classmethod
    def _six_n_plus_two(cls, value: int) -> int:
        if value < 8 or value > 1202 or (value - 2) % 6:
            raise ValueError("must be 6n+2, e.g. 8, 14, 20 (at most 1202)")
        return value


class VGGKnobs(Knobs):
    channels: list[Channels] = Field(default=[32, 64, 128], min_length=1, max_length=8)
    convs_per_stage: int = Field(default=2, ge=1, le=8)
    head: list[Width] = Field(default=[256], max_length=8)
    activation: Activation = "relu"


class AutoKnobs(Knobs):
    network: str = Field(
        min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$",
        description="an installed entry point in the group regsearch.networks (never an import path)",
    )


# ``auto``'s slots are found by tracing its network: torch, so a worker installs these (by
# importing regsearch.worker.families.auto); the control plane counts them only with the data
AUTO_HOOKS: dict[str, Callable[[Any, Sequence[int]], Any]] = {}


def _auto_hook(what: str, knobs: Any, input_shape: Sequence[int] | None) -> Any:
    hook = AUTO_HOOKS.get(what)
    if hook is None or input_shape is None:
        raise ValueError("model.network: the auto family's slots are found by tracing it, in a worker")
    return hook(knobs, input_shape)


def _check_network(knobs: AutoKnobs, catalog: FamilyCatalog | None) -> None:
    """At submit: ``model.network`` must be installed, and load, on some live worker.

    Torch-free: what the workers published with ``auto`` (the catalog's ``networks()``:
    ``{name: {entry_point, error}}``, None when unknown). No catalog, or no worker that said (none
    is up yet, or one of an earlier version): not checked here; the worker says, and the job fails
    at its first trial. That the network makes, traces and has a slot for the data's shape only
    a worker can tell the same way.
    """
    networks = getattr(catalog, "networks", None)
    installed = networks() if callable(networks) else None
    if installed is None:
        return
    found = installed.get(knobs.network)
    if found is None:
        names = ", ".join(sorted(installed)) or "none"
        raise KnobsError("model.network", f"{knobs.network!r} is not an installed regsearch.networks entry "
                                          f"point on any live worker (installed: {names})")
    if found.get("error"):
        raise KnobsError("model.network", f"{knobs.network!r} ({found.get('entry_point')}) does not load on "
                                          f"the workers: {found['error']}")


def _sample(_knobs: Any, sample_shape: Sequence[int]) -> list[int]:
    return [int(d) for d in sample_shape]


def _flat(_knobs: Any, sample_shape: Sequence[int]) -> list[int]:
    return [int(math.prod(sample_shape))]


def _conv_input(_knobs: Any, sample_shape: Sequence[int]) -> list[int]:
    shape = [int(d) for d in sample_shape]
    if len(shape) not in (2, 3):
        raise ValueError(f"{shape} must be [channels, length] or [channels, height, width]")
    return shape


def _vgg_input(knobs: VGGKnobs, sample_shape: Sequence[int]) -> list[int]:
    shape = _conv_input(knobs, sample_shape)
    need = 2 ** len(knobs.channels)  # a max-pool of 2 after each stage
    if min(shape[1:]) < need:
        raise ValueError(
            f"model.channels: {len(knobs.channels)} stages pool by {need}, so the input needs a "
            f"size of at least {need}; the data's sample shape is {shape} (use fewer stages)"
        )
    return shape


@dataclass(frozen=True)
class FamilyInfo:
    """What the control plane knows of a family.

    ``slots(knobs, input_shape)`` is its slot count; ``static_slots`` says it does not depend on
    the input shape (so a spec can be checked at submit, before any data is loaded).
    ``input_shape(knobs, sample_shape)`` is the model's input shape for the data's sample shape
    (``[C, L]`` or ``[C, H, W]``), raising ValueError when the family cannot take it.
    """

    name: str
    knobs: type[BaseModel]
    slots: Callable[[Any, Sequence[int] | None], int]
    slots_doc: str
    input_shape: Callable[[Any, Sequence[int]], list[int]] = _conv_input
    input_doc: str = "[channels, length] or [channels, height, width]"
    static_slots: bool = True
    source: Literal["builtin", "plugin"] = "builtin"
    # the slots' names (the user's layer names), where the family has them (``auto``)
    slot_names: Callable[[Any, Sequence[int]], list[str]] | None = None
    # a check of the validated knobs at submit beyond their model (``auto``: its network is
    # installed on a live worker, which the catalog says), raising KnobsError naming the field
    check: Callable[[Any, FamilyCatalog | None], None] | None = None


BUILTIN: dict[str, FamilyInfo] = {
    info.name: info
    for info in (
        FamilyInfo(
            "mlp", MLPKnobs, lambda k, _s: len(k.hidden), "one per hidden Linear", _flat, "[features]",
        ),
        FamilyInfo(
            "cnn", CNNKnobs, lambda k, _s: len(k.channels),
            "one per Conv (1d for sequences, 2d for images)",
        ),
        FamilyInfo(
            "resnet", ResNetKnobs, lambda k, _s: k.depth - 1,
            "the stem conv and both convs of every residual branch (depth - 1); the add sits "
            "just before the last slot's activation",
        ),
        FamilyInfo(
            "vgg", VGGKnobs, lambda k, _s: len(k.channels) * k.convs_per_stage + len(k.head),
            "each conv, then each head Linear (the last slots)", _vgg_input,
        ),
        FamilyInfo(
            "auto", AutoKnobs, lambda k, s: _auto_hook("slots", k, s),
            "found by tracing: each Linear/Conv followed by BN/act/dropout (regsearch inspect)",
            _sample, "the data's sample shape", static_slots=False,
            slot_names=lambda k, s: _auto_hook("names", k, s), check=_check_network,
        ),
    )
}  # fmt: skip

_registry: dict[str, FamilyInfo] = dict(BUILTIN)


class UnknownFamily(ValueError):
    """A family no registry entry has; the message lists the known ones."""


def register(info: FamilyInfo) -> None:
    """Add a plugin family (the worker does this for each installed entry point it loads)."""
    if info.name in BUILTIN and info is not BUILTIN[info.name]:
        raise ValueError(f"family {info.name!r} is built in; a plugin cannot replace it")
    _registry[info.name] = info


@contextmanager
def registrations_undone() -> Iterator[None]:
    """The families registered inside are forgotten after it (a test's plugins end with the test)."""
    saved = dict(_registry)
    try:
        yield
    finally:
        _registry.clear()
        _registry.update(saved)


class FamilyCatalog(Protocol):
    """The plugin families that workers published, for a torch-free process (API, coordinator,
    dashboard) that has not loaded the plugins itself: ``regsearch.domain.published.PublishedCatalog``.
    ``networks()`` (optional): what live workers published with ``auto``."""

    def get(self, name: str) -> FamilyInfo | None: ...
    def names(self) -> list[str]: ...


CATALOG = "catalog"  # the key of a FamilyCatalog in pydantic's validation context


def validation_context(catalog: FamilyCatalog | None) -> dict[str, Any] | None:
    """What ``JobSpec.model_validate(data, context=...)`` takes to know ``catalog``'s families too."""
    return None if catalog is None else {CATALOG: catalog}


def catalog_in(context: Any) -> FamilyCatalog | None:
    """The catalog a validation context carries (None: the built-ins and this process's plugins)."""
    return context.get(CATALOG) if isinstance(context, Mapping) else None


def names(catalog: FamilyCatalog | None = None) -> list[str]:
    """The families known here: built in, this process's loaded plugins, and ``catalog``'s."""
    return sorted({*_registry, *(catalog.names() if catalog is not None else ())})


def family(name: Any, catalog: FamilyCatalog | None = None) -> FamilyInfo:
    """The family called ``name`` (looked up in ``catalog`` when this process does not have it);
    :class:`UnknownFamily` listing the known ones otherwise."""
    info = _registry.get(name) if isinstance(name, str) else None
    if info is None and catalog is not None and isinstance(name, str):
        info = catalog.get(name)
    if info is None:
        if catalog is not None:
            raise UnknownFamily(f"no live worker offers family {name!r} (offered: {', '.join(names(catalog))})")
        raise UnknownFamily(f"unknown family {name!r} (known: {', '.join(names())})")
    return info


class KnobsError(ValueError):
    """A bad ``model`` in a spec; ``field`` names it (``model.depth``), as ``SpecError`` does."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def validate_model(data: Any, catalog: FamilyCatalog | None = None) -> dict[str, Any]:
    """A spec's ``model`` checked by its family's knobs: ``{family, **knobs}`` with defaults."""
    return checked_model(data, catalog)[1]


def checked_model(data: Any, catalog: FamilyCatalog | None = None) -> tuple[FamilyInfo, dict[str, Any]]:
    """:func:`validate_model` with the family it found (``ModelSpec`` keeps it)."""
    if not isinstance(data, dict):
        raise KnobsError("model", "give an object such as {family: mlp, hidden: [256, 256]}")
    name = data.get("family", "mlp")
    try:
        info = family(name, catalog)
    except UnknownFamily as exc:
        raise KnobsError("model.family", str(exc)) from None
    try:
        knobs = info.knobs.model_validate({k: v for k, v in data.items() if k != "family"})
    except ValidationError as exc:
        first = field_errors(exc.errors(include_url=False), model=info.knobs)[0]
        raise KnobsError(f"model.{first['field']}", first["message"]) from None
    if info.check is not None:
        info.check(knobs, catalog)
    return info, {"family": name, **knobs.model_dump(mode="json")}


def n_slots(info: FamilyInfo, knobs: Any, input_shape: Sequence[int] | None = None) -> int | None:
    """The family's slot count; None without an input shape when the count needs one."""
    if input_shape is None and not info.static_slots:
        return None
    return int(info.slots(knobs, input_shape))


def knobs_schema(name: str) -> dict[str, Any]:
    """The family's knobs as JSON schema (for ``GET /families``, ``regsearch families``)."""
    return family(name).knobs.model_json_schema()
