"""Colored MNIST with four (label × colour) groups: a small group-shift benchmark that runs on a CPU.

A binary task in the style of the subpopulation-shift benchmarks (Waterbirds, CelebA Blond_Hair ×
Male; the binary "CMNIST" of SubpopBench): the label is ``digit ≥ 5`` and the bias attribute is
the colour of the digit, red (0) or green (1). A sample is bias-aligned when its colour index
equals its label, giving the groups (y, b) ∈ {0, 1}²: two majority groups and two minority groups.

- ``train`` (MNIST train minus the two validation splits): within each class a fraction
  ``train_aligned_ratio`` is aligned — exact counts, the conflicting samples chosen at random.
- ``val``: a biased validation split from the same distribution as train (the held-out part of
  the training distribution that "biased validation" model selection reads).
- ``val_unbiased``: a group-balanced validation split (colour 50/50 within each class, like the
  Waterbirds validation split). DFR re-trains its last layer on it; "unbiased validation"
  selection reads it.
- ``test``: MNIST test, colour 50/50 within each class (exactly balanced groups up to rounding).

Colouring: the grey digit times (1, 0, 0) for red or (0, 1, 0) for green (uint8), no noise.
Everything is ours (no paper fixes these numbers); ``train_aligned_ratio`` = 0.95 is Waterbirds'
train correlation (Sagawa et al. 2020, Sec. 6.1). The group definition (label = digit ≥ 5, bias =
colour) and every parameter are part of the cache key and of the run spec, and the content
fingerprint covers the labels of every split.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from benchmark import BiasHead, DatasetFamily, DatasetInfo, Split, hp, register_dataset
from benchmark.data import load_mnist

COLORS = np.array([[1, 0, 0], [0, 1, 0]], dtype=np.uint8)  # red, green


@dataclass(frozen=True)
class ColoredMNISTGroupsParams:
    train_aligned_ratio: float = hp(0.95, "ours (Waterbirds' 95 % train correlation, Sagawa et al. 2020 Sec. 6.1)",
                                    "fraction of bias-aligned training samples within each class")
    val_size: int = hp(2000, "ours", "size of the biased validation split 'val' (train distribution)")
    val_unbiased_size: int = hp(2000, "ours", "size of the group-balanced validation split 'val_unbiased'")
    seed: int = hp(0, "ours", "seed of the split and of the colour assignment")

    def check(self):
        if not 0.5 <= self.train_aligned_ratio <= 1.0:
            raise ValueError(f"train_aligned_ratio={self.train_aligned_ratio} must be in [0.5, 1]")
        if self.val_size < 0 or self.val_unbiased_size < 0 or self.val_size + self.val_unbiased_size > 30000:
            raise ValueError("val_size and val_unbiased_size must be >= 0 and together at most 30000")


def assign_colors(y: np.ndarray, aligned_ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Per class, exactly round(n_c · (1 − aligned_ratio)) samples (chosen at random) get the other colour."""
    b = y.copy()
    for c in (0, 1):
        where = np.flatnonzero(y == c)
        flip = rng.choice(where, size=int(round(len(where) * (1.0 - aligned_ratio))), replace=False)
        b[flip] = 1 - c
    return b


def _split(gray: np.ndarray, y: np.ndarray, b: np.ndarray) -> Split:
    x = torch.from_numpy(np.array(gray))[:, None] * torch.from_numpy(COLORS[b])[:, :, None, None]
    return Split(x=x.contiguous(), y=torch.from_numpy(y.astype(np.int64)), b=torch.from_numpy(b.astype(np.int64)),
                 aligned=torch.from_numpy(b == y))


@register_dataset("colored_mnist_groups")
class ColoredMNISTGroups(DatasetFamily):
    """Binary Colored MNIST (digit ≥ 5 × red/green): 4 groups, biased train/val, balanced val_unbiased/test."""

    Params = ColoredMNISTGroupsParams
    version = "1"

    def info(self, params) -> DatasetInfo:
        return DatasetInfo(name=self.name, input_shape=(3, 28, 28), num_classes=2, num_bias_classes=2,
                           bias_heads=(BiasHead("color", "b", num_classes=2),), backbone="lff_mlp",
                           mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))

    def generate(self, params: ColoredMNISTGroupsParams, data_root) -> dict[str, Split]:
        mnist = load_mnist(data_root)
        rng = np.random.default_rng([params.seed, 12])
        (xtr, dtr), (xte, dte) = mnist["train"], mnist["test"]
        ytr, yte = (dtr >= 5).astype(np.int64), (dte >= 5).astype(np.int64)
        order = rng.permutation(len(ytr))
        n_val, n_unb = params.val_size, params.val_unbiased_size
        parts = {"val": np.sort(order[:n_val]), "val_unbiased": np.sort(order[n_val:n_val + n_unb]),
                 "train": np.sort(order[n_val + n_unb:])}
        ratios = {"train": params.train_aligned_ratio, "val": params.train_aligned_ratio, "val_unbiased": 0.5}
        splits = {}
        for name in ("train", "val", "val_unbiased"):
            idx = parts[name]
            if len(idx) == 0:
                continue
            splits[name] = _split(xtr[idx], ytr[idx], assign_colors(ytr[idx], ratios[name], rng))
        splits["test"] = _split(xte, yte, assign_colors(yte, 0.5, rng))
        return splits
