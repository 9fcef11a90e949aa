"""``auto``: the user's own network, unmodified, its slots found by tracing (torch.fx).

``model: {family: auto, network: NAME}`` names an installed entry point in the group
``regsearch.networks`` (``NAME = "pkg.module:make"``, ``make(input_shape, n_classes) ->
nn.Module``); only installed entry points are loaded, never an import path from a spec.

The tracing rule. The module is traced symbolically; each ``Linear`` / ``Conv1d`` / ``Conv2d``
whose output feeds, and only feeds, a *chain* of at most one BN (``BatchNorm1d/2d``), one
activation (a module such as ``nn.ReLU`` / ``GELU`` / ``SiLU`` / ``LeakyReLU`` / ``Tanh`` /
``ELU``, or a function such as ``F.relu`` / ``torch.relu`` / ``F.gelu`` / ``x.relu()``) and one
dropout, in any order, is a slot when the chain has the activation. The chain ends where it meets
anything else (a weight layer, pooling, an add, a concat, flatten, the output) or a node used
twice. The chain's own activation is kept; its BN and dropout are replaced by the trial's slot in
the trial's order. A weight layer with no activation in its chain (the classifier, the last conv
of a residual branch before the add) is reported and left alone.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from regsearch.domain import families as domain
from regsearch.domain.families import BUILTIN, AutoKnobs
from regsearch.worker.families.base import BuiltinFamily

NETWORKS_GROUP = "regsearch.networks"
WEIGHT_LAYERS: dict[type[nn.Module], int] = {nn.Linear: 0, nn.Conv1d: 1, nn.Conv2d: 2}
BN_MODULES = (nn.BatchNorm1d, nn.BatchNorm2d)
ACT_MODULES = (
    nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.LeakyReLU, nn.Tanh, nn.ELU, nn.Sigmoid, nn.Mish,
    nn.Hardswish, nn.PReLU, nn.SELU, nn.CELU,
)  # fmt: skip
ACT_FUNCTIONS: set[Any] = {
    F.relu, F.relu6, F.gelu, F.silu, F.leaky_relu, F.elu, F.selu, F.celu, F.mish, F.hardswish,
    torch.relu, torch.tanh, torch.sigmoid, F.tanh, F.sigmoid,
}  # fmt: skip
ACT_METHODS = {"relu", "tanh", "sigmoid"}
DROP_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)
DROP_FUNCTIONS: set[Any] = {F.dropout, F.dropout1d, F.dropout2d, torch.dropout}


class NetworkError(ValueError):
    """A network that cannot be loaded, made, traced or has no slot; the message names model.network."""


class Activation(nn.Module):
    """A functional activation of the user's network, kept in its slot (``F.relu``, ``x.relu()``)."""

    def __init__(self, fn: Any, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None, method: bool = False) -> None:
        super().__init__()
        self.fn, self.args, self.kwargs, self.method = fn, tuple(args), dict(kwargs or {}), method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.method:
            return getattr(x, self.fn)(*self.args, **self.kwargs)
        return self.fn(x, *self.args, **self.kwargs)

    def extra_repr(self) -> str:
        return self.fn if self.method else getattr(self.fn, "__name__", repr(self.fn))


@dataclass
class Found:
    """One weight layer of the traced network: a slot when its chain has an activation."""

    layer: str  # the user's qualified name: layer1.0.conv1
    kind: str  # Linear, Conv2d, ...
    features: int
    spatial_dims: int
    chain: list[str] = field(default_factory=list)  # bn / act / drop, in today's order
    nodes: list[fx.Node] = field(default_factory=list, repr=False)
    node: fx.Node | None = field(default=None, repr=False)

    @property
    def is_slot(self) -> bool:
        return "act" in self.chain

    @property
    def chain_text(self) -> str:
        return "-".join(self.chain) or "(none)"

    def module_names(self) -> dict[str, str]:
        """The chain's own modules (``{"bn": "layer1.0.bn1"}``) where they are modules."""
        return {k: str(n.target) for k, n in zip(self.chain, self.nodes) if n.op == "call_module"}


def load_network(name: str) -> Callable[..., Any]:
    """The ``make`` of the installed ``regsearch.networks`` entry point ``name``."""
    found = [e for e in entry_points(group=NETWORKS_GROUP) if e.name == name]
    if not found:
        installed = sorted({e.name for e in entry_points(group=NETWORKS_GROUP)})
        raise NetworkError(
            f"model.network: {name!r} is not an installed {NETWORKS_GROUP} entry point "
            f"(installed: {', '.join(installed) or 'none'})"
        )
    try:
        return found[0].load()
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's package may raise anything
        raise NetworkError(f"model.network: {name!r} ({found[0].value}) did not load: {type(exc).__name__}: {exc}") from None


def installed_networks() -> dict[str, dict[str, str | None]]:
    """``{name: {entry_point, error}}`` of every installed ``regsearch.networks`` entry point.

    What a worker publishes with the ``auto`` family: each entry point is loaded (its module
    imported), never made (building a network needs the data's shape and may be slow); ``error``
    is why it did not load (``ImportError: ...``), None when it did.
    """
    found: dict[str, dict[str, str | None]] = {}
    for entry in entry_points(group=NETWORKS_GROUP):
        if entry.name in found:
            continue  # two distributions with one name: the first is the one load_network loads
        error = None
        try:
            entry.load()
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's package may raise anything
            error = f"{type(exc).__name__}: {exc}"
        found[entry.name] = {"entry_point": entry.value, "error": error}
    return dict(sorted(found.items()))


def make_network(name: str, input_shape: Sequence[int], n_classes: int) -> nn.Module:
    make = load_network(name)
    try:
        module = make(list(input_shape), int(n_classes))
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - nor may its make exit the worker
        raise NetworkError(f"model.network: {name!r}: make({list(input_shape)}, {n_classes}) failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(module, nn.Module):
        raise NetworkError(f"model.network: {name!r}: make returned {type(module).__name__}, not an nn.Module")
    return module


class _Tracer(fx.Tracer):
    """torch.fx's tracer, remembering the innermost module being traced when it fails."""

    def __init__(self) -> None:
        super().__init__()
        self.failed_in: str | None = None

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        # A network marks a block torch.fx cannot trace (regsearch_leaf = True on its class): it is
        # one call in the graph, its inside left as it is (its layers hold no slot).
        return bool(getattr(m, LEAF_ATTRIBUTE, False)) or super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:
                try:
                    self.failed_in = f"{self.path_of_module(m) or '(root)'} ({type(m).__name__})"
                except NameError:
                    self.failed_in = type(m).__name__
            raise


LEAF_ATTRIBUTE = "regsearch_leaf"
TRACE_HINT = (f"To trace around it: decorate the function that does it with @torch.fx.wrap (a function "
              f"defined at module level; it becomes one call in the graph), or set {LEAF_ATTRIBUTE} = True on "
              "the class of the module that does it (called whole; its own layers then hold no slot).")


def _failing_line(exc: BaseException) -> str | None:
    """``file:line: source`` of the innermost frame outside torch and regsearch: the network's own
    code that torch.fx could not trace (``if x.sum() > 0:``)."""
    import os
    import traceback

    skip = (os.path.dirname(torch.__file__), os.path.dirname(os.path.dirname(__file__)))  # torch, regsearch.worker
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(skip)]
    if not frames:
        return None
    frame = frames[-1]
    return f"{frame.filename}:{frame.lineno}" + (f": {frame.line.strip()}" if frame.line else "")


def trace(name: str, module: nn.Module) -> fx.GraphModule:
    tracer = _Tracer()
    try:
        graph = tracer.trace(module)
    except Exception as exc:  # noqa: BLE001 - TraceError, TypeError, ...: name where it stopped
        where = tracer.failed_in or f"{type(module).__name__}.forward"
        last = None
        if tracer.graph is not None:
            nodes = [n for n in tracer.graph.nodes if n.op != "placeholder"]
            last = nodes[-1].format_node() if nodes else None
        after = f" after {last}" if last else ""
        line = _failing_line(exc)
        raise NetworkError(
            f"model.network: {name!r} does not trace (torch.fx): in {where}{after}: "
            f"{type(exc).__name__}: {exc}" + (f"; the op: {line}" if line else "") + f". {TRACE_HINT}"
        ) from None
    return fx.GraphModule(tracer.root, graph, type(module).__name__)


def _kind(gm: fx.GraphModule, node: fx.Node, current: fx.Node) -> str | None:
    """``bn`` / ``act`` / ``drop`` when ``node`` applies one to ``current`` alone, else None."""
    if not node.args or node.args[0] is not current:
        return None
    rest = list(node.args[1:]) + list(node.kwargs.values())
    if any(isinstance(a, fx.Node) for a in rest):
        return None
    if node.op == "call_module":
        m = gm.get_submodule(str(node.target))
        if isinstance(m, BN_MODULES):
            return "bn"
        if isinstance(m, ACT_MODULES):
            return "act"
        if isinstance(m, DROP_MODULES):
            return "drop"
    elif node.op == "call_function":
        if node.target in ACT_FUNCTIONS:
            return "act"
        if node.target in DROP_FUNCTIONS:
            return "drop"
    elif node.op == "call_method" and node.target in ACT_METHODS:
        return "act"
    return None


def discover(gm: fx.GraphModule) -> list[Found]:
    """Every Linear/Conv1d/Conv2d of the graph in forward order, with its chain."""
    found: list[Found] = []
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        m = gm.get_submodule(str(node.target))
        if type(m) not in WEIGHT_LAYERS:
            continue
        features = m.out_features if isinstance(m, nn.Linear) else m.out_channels
        item = Found(str(node.target), type(m).__name__, int(features), WEIGHT_LAYERS[type(m)], node=node)
        current = node
        while len(current.users) == 1:
            user = next(iter(current.users))
            kind = _kind(gm, user, current)
            if kind is None or kind in item.chain:
                break
            item.chain.append(kind)
            item.nodes.append(user)
            current = user
        found.append(item)
    return found


def _activation_of(gm: fx.GraphModule, node: fx.Node) -> nn.Module:
    if node.op == "call_module":
        return copy.deepcopy(gm.get_submodule(str(node.target)))
    args, kwargs = node.args[1:], dict(node.kwargs)
    if node.op == "call_method":
        return Activation(str(node.target), args, kwargs, method=True)
    return Activation(node.target, args, kwargs)


@lru_cache(maxsize=32)
def _survey(name: str, input_shape: tuple[int, ...]) -> tuple[Found, ...]:
    gm = trace(name, make_network(name, input_shape, 2))
    found = discover(gm)
    if not any(f.is_slot for f in found):
        layers = ", ".join(f"{f.layer} ({f.kind}: {f.chain_text})" for f in found) or "none"
        raise NetworkError(
            f"model.network: {name!r}: no slot found (a slot is a Linear/Conv1d/Conv2d followed "
            f"by an activation; weight layers found: {layers})"
        )
    return tuple(found)


def survey(name: str, input_shape: Sequence[int]) -> list[Found]:
    """What ``regsearch inspect`` prints: every weight layer, slots and the layers left alone."""
    return list(_survey(name, tuple(int(d) for d in input_shape)))


def slot_names(knobs: AutoKnobs, input_shape: Sequence[int]) -> list[str]:
    return [f.layer for f in survey(knobs.network, input_shape) if f.is_slot]


class Auto(BuiltinFamily):
    info = BUILTIN["auto"]

    def slots(self, knobs: AutoKnobs, input_shape: Sequence[int] | None) -> int:
        if input_shape is None:
            raise ValueError("model.network: the auto family's slots are found with the data's shape")
        return len(slot_names(knobs, input_shape))

    def build(self, knobs: AutoKnobs, input_shape: Sequence[int], n_classes: int, slot: Any) -> nn.Module:
        gm = trace(knobs.network, make_network(knobs.network, input_shape, n_classes))
        index = 0
        for item in discover(gm):
            if not item.is_slot:
                continue
            new = slot(index, item.features, item.spatial_dims)
            act = item.nodes[item.chain.index("act")]
            new.act = _activation_of(gm, act)  # the network's own activation, in the trial's place
            target = f"{item.layer}_slot"
            gm.add_submodule(target, new)
            last = item.nodes[-1]
            with gm.graph.inserting_after(last):
                call = gm.graph.call_module(target, (item.node,))
            last.replace_all_uses_with(call)
            for node in reversed(item.nodes):
                gm.graph.erase_node(node)
            index += 1
        gm.graph.lint()
        gm.delete_all_unused_submodules()
        gm.recompile()
        return gm


domain.AUTO_HOOKS["slots"] = lambda k, s: len(slot_names(k, s))
domain.AUTO_HOOKS["names"] = slot_names
