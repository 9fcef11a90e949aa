"""The family registry: built-in families and plugins from installed entry points, one protocol.

A family is an object with ``Knobs`` (a pydantic model: the spec's ``model.*`` fields besides
``family``), ``slots(knobs, input_shape) -> int`` and ``build(knobs, input_shape, n_classes,
slot) -> nn.Module`` (docs/interface.md "Model families"; docs/networks.md). Optional:
``input_shape(knobs, sample_shape)`` (default: the data's sample shape, ``[C, L]`` or
``[C, H, W]``) and ``slots_doc`` (one line; default: the first line of its docstring).

Plugins are loaded only from installed entry points in the group ``regsearch.models``
(``name = "pkg.module:Object"``; a class is instantiated without arguments): a spec names a
family, never an import path. Each loaded plugin is also registered in the torch-free
``regsearch.domain.families`` (knobs, slot count), so this process validates specs naming it.
A plugin that fails to load is left out with a warning, and naming it says why.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel

from regsearch.domain import families as domain
from regsearch.worker.families.auto import Auto
from regsearch.worker.families.cnn import CNN
from regsearch.worker.families.mlp import MLP
from regsearch.worker.families.resnet import ResNet
from regsearch.worker.families.vgg import VGG

ENTRY_POINT_GROUP = "regsearch.models"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Family:
    """One registry entry: the builder (``impl``), its torch-free description, where it came from."""

    name: str
    impl: Any
    info: domain.FamilyInfo

    @property
    def source(self) -> str:
        return self.info.source


BUILTINS: dict[str, Family] = {
    impl.info.name: Family(impl.info.name, impl, impl.info)
    for impl in (MLP(), CNN(), ResNet(), VGG(), Auto())
}
_plugins: dict[str, Family] = {}
_broken: dict[str, str] = {}  # plugin name -> why it did not load
_loaded = False


def _sample_shape(_knobs: Any, sample_shape: Sequence[int]) -> list[int]:
    return [int(d) for d in sample_shape]


def _describe_plugin(name: str, impl: Any) -> domain.FamilyInfo:
    knobs = getattr(impl, "Knobs", None)
    if not (isinstance(knobs, type) and issubclass(knobs, BaseModel)):
        raise TypeError("its Knobs is not a pydantic model class")
    for method in ("slots", "build"):
        if not callable(getattr(impl, method, None)):
            raise TypeError(f"it has no {method}() method")
    doc = getattr(impl, "slots_doc", None) or (type(impl).__doc__ or "").strip().splitlines()[:1]
    return domain.FamilyInfo(
        name=name, knobs=knobs, slots=impl.slots,
        slots_doc=doc if isinstance(doc, str) else (doc[0] if doc else "(not documented)"),
        input_shape=getattr(impl, "input_shape", None) or _sample_shape,
        input_doc="what the plugin accepts", static_slots=False, source="plugin",
    )  # fmt: skip


def load_plugins(*, refresh: bool = False) -> None:
    """Load the installed ``regsearch.models`` entry points (once per process unless ``refresh``)."""
    global _loaded
    if _loaded and not refresh:
        return
    _loaded = True
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in BUILTINS:
            log.warning("plugin family %r (%s) ignored: the name is built in", entry.name, entry.value)
            continue
        if entry.name in _plugins and not refresh:
            continue
        try:
            loaded = entry.load()
            impl = loaded() if isinstance(loaded, type) else loaded
            info = _describe_plugin(entry.name, impl)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not take the worker down
            _broken[entry.name] = f"{type(exc).__name__}: {exc}"
            log.warning("plugin family %r (%s) not loaded: %s", entry.name, entry.value, _broken[entry.name])
            continue
        _broken.pop(entry.name, None)
        _plugins[entry.name] = Family(entry.name, impl, info)
        domain.register(info)


@contextmanager
def plugins_undone(*, start_empty: bool = False) -> Iterator[None]:
    """The plugins loaded inside, here and in the domain's registry, are forgotten after it (a
    test's plugins end with the test); ``start_empty``: none loaded before counts inside."""
    saved = dict(_plugins), dict(_broken)
    if start_empty:
        _plugins.clear()
        _broken.clear()
    try:
        with domain.registrations_undone():
            yield
    finally:
        for current, before in zip((_plugins, _broken), saved):
            current.clear()
            current.update(before)


def all_families() -> dict[str, Family]:
    """Every family this process can build, built-ins first."""
    load_plugins()
    return {**BUILTINS, **_plugins}


def get(name: Any) -> Family:
    """The family ``name``; ValueError naming the known ones (or why a plugin did not load)."""
    found = all_families().get(name) if isinstance(name, str) else None
    if found is not None:
        return found
    if name in _broken:
        raise ValueError(f"family {name!r}: its plugin did not load: {_broken[name]}")
    raise ValueError(f"unknown family {name!r} (known: {', '.join(sorted(all_families()))})")


load_plugins()  # so this process's spec validation knows the installed plugins' knobs
