"""Dropout with cheap masks for CPU training (the engine swaps it in; see :func:`benchmark.engine.fast_path`).

``nn.Dropout`` draws its mask with ``bernoulli_``, one random number per element, which is slow on a
CPU next to a small network's convolutions (PGD's Simple ConvNet-1 has three dropout layers).
:class:`FastDropout` draws the same distribution —
every element kept independently with probability 1 − p and scaled by 1 / (1 − p) — from fewer
random numbers: at p = 0.5 (every dropout of the papers' backbones) eight mask bits from each random
byte, otherwise one uniform number per element compared with p. On a GPU it is ``nn.Dropout``.
The random stream it consumes differs from ``nn.Dropout``'s, so a run's numbers differ from the
same run with ``nn.Dropout`` the way two seeds differ, not in distribution. Packed runs draw each
run's masks with :func:`dropout_mask` in that run's own RNG stream (:mod:`benchmark.pack_module`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

def _bit_mask(x: torch.Tensor) -> torch.Tensor:
    """A 0/1 mask shaped like ``x``, each element 1 with probability 1/2: eight bits per random byte."""
    n = x.numel()
    shifts = torch.arange(8, dtype=torch.uint8, device=x.device)
    bytes_ = torch.randint(0, 256, ((n + 7) // 8,), dtype=torch.uint8, device=x.device)
    return ((bytes_[:, None] >> shifts) & 1).flatten()[:n].view(x.shape)


def dropout_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str) -> torch.Tensor:
    """The scaled mask :class:`FastDropout` multiplies by (0 or 1 / (1 − p) per element), drawn from
    the global RNG; packed runs draw theirs with it too (:mod:`benchmark.pack_module`)."""
    device = torch.device(device)
    ones = torch.ones(shape, device=device)
    if device.type == "cuda" or p in (0.0, 1.0):
        return F.dropout(ones, p, True)  # CUDA's fused kernel is cheap already
    keep = _bit_mask(ones) if p == 0.5 else torch.rand_like(ones) >= p
    return keep.to(ones.dtype) * (1.0 / (1.0 - p))


class FastDropout(nn.Dropout):
    """``nn.Dropout`` (element-wise, not in place) with the masks described in the module docstring
    (on a GPU it is ``nn.Dropout``: the fused kernel draws its masks cheaply)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.device.type == "cuda":
            return F.dropout(x, self.p, self.training)
        return x * dropout_mask(x.shape, self.p, x.device).to(x.dtype)


def use_fast_dropout(module: nn.Module) -> int:
    """Replace every plain ``nn.Dropout`` (not a subclass, not in place) in ``module`` by
    :class:`FastDropout` with the same p; returns how many were replaced."""
    swapped = 0
    for parent in module.modules():
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout and not child.inplace:
                setattr(parent, name, FastDropout(child.p))
                swapped += 1
    return swapped
