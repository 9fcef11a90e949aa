"""Layers that train K same-structure models at once: each tensor carries a leading member dim.

Every packed layer takes and returns a *member-first* tensor ``(K, B, ...)``; its memory layout
may be ``(B, K, ...)`` underneath (a transposed view), whichever the producing op wrote, so a
layer copies only where its kernel needs another layout. Parameters and buffers are the plain
layers' stacked on a leading dim, under the plain names, so member ``i``'s state is
``{name: tensor[i]}`` (``regsearch.worker.packed.unpack_member``).

- Linear: ``baddbmm`` over the member dim (on CPU a loop of the same ``addmm`` ``nn.Linear``
  calls, inside one op), with ``nn.Linear``'s gradient gemms.
- Conv: one grouped convolution (``groups=K``), members concatenated on the channel dim.
- BatchNorm: one ``F.batch_norm`` over the members' channels side by side, with per-member
  running statistics and a per-member momentum. The kernel only takes one momentum, so it
  writes the batch statistics (momentum 1) to scratch buffers and the running update is done
  here with each member's momentum, in the kernel's own arithmetic (float32 mean; the variance
  summed in float64), which keeps a member's running statistics bit-identical to ``nn.BatchNorm``.
- Dropout: a per-member rate; each member's mask comes from its own generator. A pack of one
  draws with the ``bernoulli_`` + scale ``nn.Dropout`` uses (bit-identical to its unpacked
  trial); a larger pack on CPU draws uniforms and compares (``uniform_`` is ~3x cheaper than
  CPU ``bernoulli_``, which was a quarter of a pack's time), the same distribution from the
  member's own stream, so a member matches its unpacked run in distribution, not mask for mask.
- Pooling (per channel): the plain module over the channel-concatenated tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

CONV_FNS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


class PackError(ValueError):
    """These modules cannot train as one pack (a layer without a packed form, unequal shapes)."""


def channels_side_by_side(x: torch.Tensor) -> torch.Tensor:
    """``(K, B, C, *S)`` -> ``(B, K*C, *S)``: a view when the layout is already ``(B, K, ...)``."""
    return x.transpose(0, 1).reshape(x.shape[1], x.shape[0] * x.shape[2], *x.shape[3:])


def members_first(y: torch.Tensor, k: int) -> torch.Tensor:
    """``(B, K*C, *S)`` -> ``(K, B, C, *S)`` as a view."""
    return y.view(y.shape[0], k, y.shape[1] // k, *y.shape[2:]).transpose(0, 1)


def _stack(modules: Sequence[nn.Module], name: str) -> torch.Tensor | None:
    tensors = [getattr(m, name) for m in modules]
    if tensors[0] is None:
        return None
    if any(t is None or t.shape != tensors[0].shape for t in tensors):
        raise PackError(f"{type(modules[0]).__name__}.{name}: the members' shapes differ")
    return torch.stack([t.detach() for t in tensors])


def _param(t: torch.Tensor | None) -> nn.Parameter | None:
    return None if t is None else nn.Parameter(t)


class _BatchedLinear(torch.autograd.Function):
    """``x @ W^T + b`` per member, whose weight gradient is ``grad^T @ x`` as ``nn.Linear``'s is.

    Autograd's ``bmm`` rule computes it as ``(x^T @ grad)^T``, another gemm whose rounding differs
    for some shapes; ``addmm``'s rule (what ``nn.Linear`` gets) orients it to the weight's layout.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        if bias is None:
            return torch.bmm(x, weight.transpose(1, 2))
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        grad_x = grad.bmm(weight) if ctx.needs_input_grad[0] else None
        grad_weight = grad.transpose(1, 2).bmm(x) if ctx.needs_input_grad[1] else None
        grad_bias = grad.sum(1) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias


class PackedLinear(nn.Module):
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)  # (K, out, in)
        self.bias = _param(bias)  # (K, out)

    @classmethod
    def stack(cls, modules: Sequence[nn.Linear]) -> PackedLinear:
        return cls(_stack(modules, "weight"), _stack(modules, "bias"))  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _BatchedLinear.apply(x, self.weight, self.bias)

    def select(self, keep: torch.Tensor) -> PackedLinear:
        return PackedLinear(
            self.weight.detach()[keep], None if self.bias is None else self.bias.detach()[keep]
        )


class PackedConv(nn.Module):
    def __init__(
        self, weight: torch.Tensor, bias: torch.Tensor | None, options: dict[str, Any]
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)  # (K, out, in, *kernel)
        self.bias = _param(bias)  # (K, out)
        self.spatial = weight.ndim - 3
        self.options = dict(options)  # stride, padding, dilation

    @classmethod
    def stack(cls, modules: Sequence[nn.Module]) -> PackedConv:
        first = modules[0]
        for m in modules:
            if (
                m.groups != 1
                or m.padding_mode != "zeros"
                or (m.stride, m.padding, m.dilation)
                != (first.stride, first.padding, first.dilation)
            ):
                raise PackError(
                    f"{type(first).__name__}: grouped, non-zero-padded or unequal convolutions"
                )
        options = {"stride": first.stride, "padding": first.padding, "dilation": first.dilation}
        weight, bias = _stack(modules, "weight"), _stack(modules, "bias")
        return cls(weight, bias, options)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.weight.shape[0]
        weight = self.weight.reshape(-1, *self.weight.shape[2:])
        bias = None if self.bias is None else self.bias.reshape(-1)
        y = CONV_FNS[self.spatial](channels_side_by_side(x), weight, bias, groups=k, **self.options)
        return members_first(y, k)

    def select(self, keep: torch.Tensor) -> PackedConv:
        bias = None if self.bias is None else self.bias.detach()[keep]
        return PackedConv(self.weight.detach()[keep], bias, self.options)


class PackedBatchNorm(nn.Module):
    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor,
        running_mean: torch.Tensor,
        running_var: torch.Tensor,
        tracked: torch.Tensor,
        momentum: torch.Tensor,
        eps: float,
    ) -> None:
        super().__init__()
        self.weight, self.bias = nn.Parameter(weight), nn.Parameter(bias)  # (K, C)
        self.register_buffer("running_mean", running_mean)  # (K, C)
        self.register_buffer("running_var", running_var)
        self.register_buffer("num_batches_tracked", tracked)  # (K,)
        self.register_buffer("momentum", momentum, persistent=False)  # (K,) float32: a setting
        self.eps = eps
        # scratch: the batch statistics of the last training batch
        self.register_buffer(
            "batch_mean", torch.zeros_like(running_mean.reshape(-1)), persistent=False
        )
        self.register_buffer(
            "batch_var", torch.zeros_like(running_var.reshape(-1)), persistent=False
        )

    @classmethod
    def stack(cls, modules: Sequence[nn.modules.batchnorm._BatchNorm]) -> PackedBatchNorm:
        for m in modules:
            if (
                not (m.affine and m.track_running_stats)
                or m.momentum is None
                or m.eps != modules[0].eps
            ):
                raise PackError(
                    "BatchNorm: the members need affine, tracked statistics, a momentum, one eps"
                )
        momentum = torch.tensor(
            [float(m.momentum) for m in modules],
            dtype=torch.float32,
            device=modules[0].running_mean.device,
        )
        stacked = [
            _stack(modules, name) for name in ("weight", "bias", "running_mean", "running_var")
        ]
        tracked = torch.stack([m.num_batches_tracked.detach() for m in modules])
        return cls(*stacked, tracked, momentum, modules[0].eps)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, wide = x.shape[0], channels_side_by_side(x)
        if not self.training:
            y = F.batch_norm(
                wide,
                self.running_mean.view(-1),
                self.running_var.view(-1),
                self.weight.view(-1),
                self.bias.view(-1),
                False,
                0.0,
                self.eps,
            )
            return members_first(y, k)
        self.batch_mean.zero_()  # momentum 1 still reads them (0 * old): keep them finite
        self.batch_var.zero_()
        y = F.batch_norm(
            wide,
            self.batch_mean,
            self.batch_var,
            self.weight.view(-1),
            self.bias.view(-1),
            True,
            1.0,
            self.eps,
        )
        with torch.no_grad():
            m = self.momentum.unsqueeze(1)
            mean, var = self.batch_mean.view(k, -1), self.batch_var.view(k, -1)
            # the CPU kernel's arithmetic: the mean in float32; for the variance,
            # m * unbiased + (1-m) * old is summed in float64
            self.running_mean.copy_(m * mean + (1 - m) * self.running_mean)
            self.running_var.copy_(
                m.double() * var.double() + ((1 - m) * self.running_var).double()
            )
            self.num_batches_tracked.add_(1)
        return members_first(y, k)

    def select(self, keep: torch.Tensor) -> PackedBatchNorm:
        tensors = (
            self.weight,
            self.bias,
            self.running_mean,
            self.running_var,
            self.num_batches_tracked,
            self.momentum,
        )
        return PackedBatchNorm(*(t.detach()[keep] for t in tensors), self.eps)


class PackedDropout(nn.Module):
    def __init__(
        self, rates: Sequence[float], generators: Sequence[torch.Generator], device: torch.device
    ) -> None:
        super().__init__()
        self.rates, self.generators = [float(p) for p in rates], list(generators)
        keep = torch.tensor([1 - p for p in self.rates], dtype=torch.float32, device=device)
        self.register_buffer("keep", keep, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not any(self.rates):
            return x
        keep = self.keep.view(-1, *[1] * (x.ndim - 1))
        # F.dropout's own draw for a pack of one (bit-identical to its unpacked trial) and on CUDA;
        # a larger pack on CPU draws uniforms and compares: a third of CPU bernoulli_'s cost
        exact = len(self.rates) == 1 or x.device.type != "cpu"
        noise = torch.empty_like(x)
        for i, (p, generator) in enumerate(zip(self.rates, self.generators, strict=True)):
            if p == 0:
                noise[i].fill_(1.0 if exact else 0.0)  # always kept, nothing drawn (as F.dropout(p=0))
            elif exact:
                noise[i].bernoulli_(1 - p, generator=generator)  # what F.dropout draws on CPU
            else:
                noise[i].uniform_(generator=generator)
        if not exact:
            noise = (noise < keep).to(x.dtype)
        return x * noise.div_(keep)

    def select(self, keep: torch.Tensor) -> PackedDropout:
        idx = keep.tolist()
        return PackedDropout(
            [self.rates[i] for i in idx], [self.generators[i] for i in idx], self.keep.device
        )


class PerChannel(nn.Module):
    """A per-channel layer (pooling) over the members' channels side by side."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return members_first(self.layer(channels_side_by_side(x)), x.shape[0])


class PackedFlatten(nn.Module):
    def __init__(self, flatten: nn.Flatten) -> None:
        super().__init__()
        shift = lambda d: d + 1 if d >= 0 else d  # the member dim comes first
        self.start, self.end = shift(flatten.start_dim), shift(flatten.end_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(self.start, self.end)
