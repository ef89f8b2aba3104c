"""Colored MNIST with two spurious attributes: foreground (digit) colour and background colour.

Built for the multi-head joint learning and unlearning of Turning a Blind Eye (Alvi et al. 2018,
Sec. 5.3 / Table 1 in spirit: several spurious variations removed at once) on data we have. Each
training digit gets a foreground colour drawn from N(fg mean of its class, σ² I) — the Learning
Not to Learn protocol of ``colored_mnist`` (LNL Sec. 4.1, same palette) — and, independently, a
background colour drawn from N(bg mean, σ²_bg I), whose mean is that of its class with probability
``bg_correlation`` and a uniformly random one otherwise. Test digits get both means uniformly at
random and independently, so the test split is unbiased in both attributes.

Choices of ours (neither paper defines this dataset): the background palette is the foreground
palette at ``bg_intensity`` of its brightness, shifted by ``bg_shift`` classes so that a training
digit's two hues differ and the digit stays visible on its background (darker by construction);
a pixel is ``a · fg + (1 − a) · bg`` with ``a`` the MNIST grey level in [0, 1]; colours are
clipped to [0, 1]. Labels: ``b`` (and the bias head ``fg_color``) is the foreground mean index,
attribute ``bg_color`` the background mean index (two per-sample 10-class bias heads);
``aligned`` follows ``b`` (fg mean = digit) and ``bg_aligned`` the background.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from benchmark import BiasHead, DatasetFamily, DatasetInfo, Split, hp, register_dataset
from benchmark.data import load_mnist
from benchmark_datasets.colored_mnist import CIFAR10_MEAN, CIFAR10_STD, PALETTE, SIGMA2_GRID, sample_colors


@dataclass(frozen=True)
class ColoredMNISTBGParams:
    sigma2: float = hp(0.02, "LNL Sec. 4.1 (as colored_mnist)", "foreground colour variance; smaller = more biased")
    bg_sigma2: float = hp(0.02, "ours (as the foreground)", "background colour variance")
    bg_correlation: float = hp(1.0, "ours", "probability that a training background takes its digit's mean colour")
    bg_intensity: float = hp(0.4, "ours", "background palette = foreground palette × this factor (keeps digits visible)")
    bg_shift: int = hp(5, "ours", "background mean of digit d = palette colour of class (d + shift) mod 10")
    seed: int = hp(0, "ours", "seed of the colour sampling (data, not training)")
    val_fraction: float = hp(0.0, "ours (as colored_mnist)", "hold out this fraction of train as a biased 'val' split")

    def check(self):
        for name in ("sigma2", "bg_sigma2"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name}={getattr(self, name)} is out of range: use a variance in (0, 1]; "
                                 f"LNL's grid is {', '.join(map(str, SIGMA2_GRID))}")
        if not 0.0 <= self.bg_correlation <= 1.0:
            raise ValueError(f"bg_correlation={self.bg_correlation} must be in [0, 1]")
        if not 0.0 < self.bg_intensity <= 1.0:
            raise ValueError(f"bg_intensity={self.bg_intensity} must be in (0, 1]")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction={self.val_fraction} must be in [0, 1)")


def composite(gray: np.ndarray, fg: np.ndarray, bg: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """N×28×28 uint8 grey digits, N×3 fg and bg colours in [0, 1] → N×3×28×28 uint8 (vectorised,
    in chunks so the float intermediates stay small)."""
    out = np.empty((len(gray), 3, *gray.shape[1:]), dtype=np.uint8)
    for i in range(0, len(gray), chunk):
        a = gray[i:i + chunk, None, :, :].astype(np.float32) / 255.0
        f, b = (c[i:i + chunk, :, None, None].astype(np.float32) for c in (fg, bg))
        out[i:i + chunk] = np.rint((a * f + (1.0 - a) * b) * 255.0)
    return out


@register_dataset("colored_mnist_bg")
class ColoredMNISTBG(DatasetFamily):
    """Colored MNIST with digit colour and background colour both correlated with the digit in train."""

    Params = ColoredMNISTBGParams
    version = "1"

    def info(self, params) -> DatasetInfo:
        return DatasetInfo(
            name=self.name, input_shape=(3, 28, 28), num_classes=10, num_bias_classes=10,
            bias_heads=(BiasHead("fg_color", "b", num_classes=10), BiasHead("bg_color", "bg_color", num_classes=10)),
            backbone="lnl_convnet", mean=CIFAR10_MEAN, std=CIFAR10_STD,
        )

    def generate(self, params: ColoredMNISTBGParams, data_root) -> dict[str, Split]:
        mnist = load_mnist(data_root)
        rng = np.random.default_rng([params.seed, int(round(params.sigma2 * 1e6)), int(round(params.bg_sigma2 * 1e6)), 2])
        bg_palette = params.bg_intensity * np.roll(PALETTE, -params.bg_shift, axis=0)
        (xtr, ytr), (xte, yte) = mnist["train"], mnist["test"]
        fg_tr = ytr.copy()
        bg_tr = np.where(rng.random(len(ytr)) < params.bg_correlation, ytr, rng.integers(0, 10, size=len(ytr)))
        fg_te, bg_te = rng.integers(0, 10, size=len(yte)), rng.integers(0, 10, size=len(yte))
        colors = {}
        for split, fg, bg in (("train", fg_tr, bg_tr), ("test", fg_te, bg_te)):
            noise = np.sqrt(params.bg_sigma2) * rng.normal(size=(len(bg), 3))
            colors[split] = (sample_colors(fg, params.sigma2, rng), np.clip(bg_palette[bg] + noise, 0.0, 1.0))
        order = rng.permutation(len(ytr))
        n_val = int(round(params.val_fraction * len(ytr)))
        parts = {"train": np.sort(order[n_val:]), "val": np.sort(order[:n_val])} if n_val else {"train": np.arange(len(ytr))}
        splits = {name: self._split(xtr[i], ytr[i], fg_tr[i], bg_tr[i], colors["train"][0][i], colors["train"][1][i])
                  for name, i in parts.items()}
        splits["test"] = self._split(xte, yte, fg_te, bg_te, *colors["test"])
        return splits

    @staticmethod
    def _split(gray, y, fg_idx, bg_idx, fg, bg) -> Split:
        return Split(
            x=torch.from_numpy(composite(gray, fg, bg)), y=torch.from_numpy(y.astype(np.int64)),
            b=torch.from_numpy(fg_idx.astype(np.int64)), aligned=torch.from_numpy(fg_idx == y),
            attrs={"bg_color": torch.from_numpy(bg_idx.astype(np.int64)),
                   "bg_aligned": torch.from_numpy(bg_idx == y)},
        )
