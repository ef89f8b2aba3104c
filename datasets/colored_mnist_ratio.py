"""Colored MNIST with a bias ratio, PGD protocol (Ahn et al., "Mitigating dataset bias by using
per-sample gradient", ICLR 2023 submission; App. B.1, Sec. 6.1.1).

Each digit is coloured (foreground only, like ``colored_mnist``) with one of ten class colours. A
fraction ``bias_ratio`` = |M|/|D| of the training samples (the majority M) gets its own class's
colour; the rest (the minority m) get a uniformly drawn *other* class's colour. Every sample's
colour deviates from its mean by Gaussian noise whose size is the "difficulty" α. Splits: a
biased training set, a biased validation set (10 % of MNIST train, same ratio) and a test set
(MNIST test) whose majority and minority parts are reported separately — ``Split.aligned`` marks
them and the engine reports ``aligned_acc`` (Major M) and ``conflicting_acc`` (Minor m).

Provenance (official code: sumyeongahn/PGD @ 0265520, datagen/data/colored_mnist.py; see
shared/PROTOCOL-FACTS.md, "PGD" and "The palette"):

- Palette: the ten colours of datagen/data/colored_mnist.py:7-16, imported from
  ``benchmark_datasets.colored_mnist`` (the same list serves LNL's Colored MNIST).
- Minority colour: uniform over the nine other classes (rejection loop, :32-37).
- Colouring: ``clamp(gray · (C_b + ε) / 255, 0, 1)``, ε the per-sample colour deviation (:41-44);
  we store it as uint8 (``rint(·255)``), so a deviation of std 1e-4 (0.03 grey levels) is mostly
  rounded away, as it would be by the official ``ToPILImage`` augmentation pipeline, which also
  quantises to 8 bits (trainer/module/data.py:11).
- Colour deviation: App. B.1 writes ``C_i ~ N(C_{y_i}, αI)`` with α ∈ {0.0001, 0.0005}, i.e. α is a
  *variance* (std √α = 0.01 or 0.022) — ``color_noise="paper"``. The official generator uses a
  fixed *std* of 1e-4 whatever the difficulty (:26, :41) — ``color_noise="official"`` takes
  std = α. Table 5's two difficulty blocks are nearly identical, consistent with either reading.
- Minority membership: the official code draws each sample conflicting with probability
  1 − ratio (its ``b_ratio`` argument is the conflicting fraction, :28-30) —
  ``conflict_sampling="bernoulli"``; by default we make the count exact,
  ``round((1 − bias_ratio)·N)`` per split, so |M|/|D| is the requested ratio to within 1/N.
- Train / validation: the official code biases all 60 000 MNIST training images and keeps the
  first 90 % as train, the last 10 % as "valid" (:51-62); the paper: "biased validation set Dval
  (10 % of Dtr)" (Sec. 6.1.1). We follow the code (54 000 / 6 000, in MNIST order).
- Test: the official test set is MNIST test biased with conflicting probability 0.9 (:74), i.e.
  uniformly random colours (10 % aligned); the paper only says the test set "comprises the
  majority M and minority m" and reports them separately. ``test_conflicting_ratio`` (default
  0.9, the official value) sets it; the separated accuracies do not depend on it.
- Inputs are not normalised (official loaders feed ``ToTensor`` values in [0, 1]).
- Augmentation (PGD App. A.1 "Data augmentation"; official trainer/module/data.py:9-16), applied
  by the engine to training batches for every method (App. C: vanilla uses it too):
  RandomResizedCrop(28, scale (0.9, 1.1)), ColorJitter(hue 0.05, saturation 0.05),
  RandomRotation(±10°). Implemented batched on the device by :func:`pgd_augment`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from benchmark import BiasHead, DatasetFamily, DatasetInfo, Split, hp, register_dataset
from benchmark.data import RecolouredTest, load_mnist
from benchmark_datasets.colored_mnist import PALETTE

BIAS_RATIO_GRID = (0.995, 0.99, 0.98, 0.95)  # PGD Sec. 6.1.1 (Table 1) and App. D (Tables 5-6)
DIFFICULTY_GRID = (0.0001, 0.0005)            # PGD App. B.1
UNIFORM_COLOUR_SEED = 12  # seeds PGD's random colour test with the data seed (any constant; ours)


@dataclass(frozen=True)
class ColoredMNISTRatioParams:
    bias_ratio: float = hp(0.99, "PGD Sec. 6.1.1 / Table 1 (|M|/|D| ∈ {0.995, 0.99, 0.95}; App. D adds 0.98)",
                           "fraction of bias-aligned (majority) samples in train and val, in (0, 1)")
    difficulty: float = hp(0.0001, "PGD App. B.1 (α ∈ {0.0001, 0.0005}); App. A.2 uses 0.0001",
                           "α, size of the per-sample colour deviation (see color_noise)")
    color_noise: str = hp("paper", "paper: App. B.1 N(C_y, αI), std √α; official: datagen colored_mnist.py:26,41 std = α",
                          "how α sets the colour deviation", choices=("paper", "official"))
    conflict_sampling: str = hp("exact", "exact: ours (count = round((1-ratio)·N)); bernoulli: official colored_mnist.py:28-30",
                                "how minority samples are drawn", choices=("exact", "bernoulli"))
    val_fraction: float = hp(0.1, "PGD Sec. 6.1.1; official colored_mnist.py:51-62 (last 10 % of MNIST train)",
                             "fraction of MNIST train held out as the biased validation split")
    test_conflicting_ratio: float = hp(0.9, "official colored_mnist.py:74 (paper: not stated)",
                                       "fraction of bias-conflicting test samples (0.9 = uniform colours)")
    augment: bool = hp(True, "PGD App. A.1 'Data augmentation'; official trainer/module/data.py:9-16",
                       "train-time RandomResizedCrop + ColorJitter + RandomRotation")
    seed: int = hp(0, "ours", "seed of the bias and colour sampling (data, not training)")

    def check(self):
        if not 0.0 < self.bias_ratio < 1.0:
            raise ValueError(f"bias_ratio={self.bias_ratio} must be in (0, 1); the paper's grid is {BIAS_RATIO_GRID}")
        if self.difficulty < 0.0:
            raise ValueError(f"difficulty={self.difficulty} must be >= 0; the paper's grid is {DIFFICULTY_GRID}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction={self.val_fraction} must be in [0, 1)")
        if not 0.0 <= self.test_conflicting_ratio <= 1.0:
            raise ValueError(f"test_conflicting_ratio={self.test_conflicting_ratio} must be in [0, 1]")


def assign_bias(y: np.ndarray, conflicting_ratio: float, mode: str, rng: np.random.Generator,
                num_classes: int = 10) -> np.ndarray:
    """Bias class per sample: ``y`` for the majority, a uniformly drawn other class for the minority.

    ``mode="exact"`` makes exactly ``round(conflicting_ratio·N)`` samples conflicting (a uniform
    random subset); ``"bernoulli"`` draws each sample independently (the official generator).
    """
    n = len(y)
    if mode == "exact":
        conflicting = np.zeros(n, dtype=bool)
        conflicting[rng.permutation(n)[: int(round(conflicting_ratio * n))]] = True
    elif mode == "bernoulli":
        conflicting = rng.random(n) < conflicting_ratio
    else:
        raise ValueError(f"unknown conflict sampling {mode!r}")
    b = y.copy()
    shift = rng.integers(1, num_classes, size=int(conflicting.sum()))  # never the own class
    b[conflicting] = (y[conflicting] + shift) % num_classes
    return b


def color_std(difficulty: float, color_noise: str) -> float:
    """Per-channel std of the colour deviation: √α as App. B.1 writes N(C, αI), or α itself as the
    official generator's fixed ``_dev`` (datagen/data/colored_mnist.py:26, 41)."""
    return math.sqrt(difficulty) if color_noise == "paper" else difficulty


def sample_colors(b: np.ndarray, difficulty: float, color_noise: str, rng: np.random.Generator) -> np.ndarray:
    """Mean colour of each bias class plus Gaussian deviation (unclipped; the colouring clamps)."""
    return PALETTE[b] + rng.normal(0.0, color_std(difficulty, color_noise), size=(len(b), 3))


def colorize_official(gray: np.ndarray, colors: np.ndarray, chunk: int = 4096) -> torch.Tensor:
    """PGD's colouring: clamp(gray · colour / 255, 0, 1), stored as uint8 N×3×28×28 (in chunks)."""
    g = torch.from_numpy(np.array(gray))
    c = torch.from_numpy(colors.astype(np.float32))[:, :, None, None] / 255.0
    out = torch.empty((len(g), 3) + tuple(g.shape[1:]), dtype=torch.uint8)
    for i in range(0, len(g), chunk):
        v = g[i:i + chunk, None].float() * c[i:i + chunk]
        out[i:i + chunk] = v.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
    return out


@register_dataset("colored_mnist_ratio")
class ColoredMNISTRatio(DatasetFamily):
    """Colored MNIST with bias ratio |M|/|D| and colour difficulty α (PGD App. B.1)."""

    Params = ColoredMNISTRatioParams
    version = "1"
    recolourings = ("uniform",)

    def info(self, params) -> DatasetInfo:
        return DatasetInfo(
            name=self.name, input_shape=(3, 28, 28), num_classes=10, num_bias_classes=10,
            bias_heads=(BiasHead("color", "b", num_classes=10),),
            backbone="simple_convnet", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
        )

    def augment(self, params):
        return pgd_augment if params.augment else None

    def generate(self, params: ColoredMNISTRatioParams, data_root) -> dict[str, Split]:
        mnist = load_mnist(data_root)
        rng = np.random.default_rng([params.seed, int(round(params.bias_ratio * 1e6)),
                                     int(round(params.difficulty * 1e8))])
        (xtr, ytr), (xte, yte) = mnist["train"], mnist["test"]
        n_val = int(round(params.val_fraction * len(ytr)))
        parts = {"train": (xtr[: len(ytr) - n_val], ytr[: len(ytr) - n_val], 1.0 - params.bias_ratio)}
        if n_val:
            parts["val"] = (xtr[len(ytr) - n_val:], ytr[len(ytr) - n_val:], 1.0 - params.bias_ratio)
        parts["test"] = (xte, yte, params.test_conflicting_ratio)
        splits = {}
        for name, (gray, y, conflicting_ratio) in parts.items():
            b = assign_bias(y, conflicting_ratio, params.conflict_sampling, rng)
            colors = sample_colors(b, params.difficulty, params.color_noise, rng)
            splits[name] = Split(
                x=colorize_official(gray, colors), y=torch.from_numpy(y.astype(np.int64)),
                b=torch.from_numpy(b.astype(np.int64)), aligned=torch.from_numpy(b == y),
            )
        return splits

    def recoloured_test(self, params, data_root, colouring: str) -> RecolouredTest:
        """``uniform``: PGD Table 12's random colour test (App. H), every MNIST test digit coloured
        with RGB ~ U(0, 1)^3 by PGD's colouring; ``b`` is the palette colour nearest to each one."""
        if colouring not in self.recolourings:
            return super().recoloured_test(params, data_root, colouring)
        gray, y = load_mnist(data_root)["test"]
        colors = np.random.default_rng([params.seed, UNIFORM_COLOUR_SEED]).uniform(0.0, 1.0, size=(len(y), 3))
        b = ((colors[:, None, :] - PALETTE[None]) ** 2).sum(-1).argmin(1)
        split = Split(x=colorize_official(gray, colors), y=torch.from_numpy(y.astype(np.int64)),
                      b=torch.from_numpy(b.astype(np.int64)), aligned=torch.from_numpy(b == y))
        return RecolouredTest(split, None, f"test digits coloured with RGB ~ U(0, 1)^3, seed ({params.seed}, "
                                           f"{UNIFORM_COLOUR_SEED})")


# ---------------------------------------------------------------------------------------------
# PGD's training augmentation, batched on the device.

CROP_SCALE = (0.9, 1.1)       # official trainer/module/data.py:12
CROP_RATIO = (3 / 4, 4 / 3)   # torchvision RandomResizedCrop default ratio
JITTER_HUE = 0.05             # data.py:13
JITTER_SATURATION = 0.05      # data.py:13
ROTATION_DEGREES = 10.0       # data.py:14


def pgd_augment(x: torch.Tensor) -> torch.Tensor:
    """PGD's train augmentation for a float batch N×C×H×W in [0, 1], per-sample random, batched.

    Follows torchvision's RandomResizedCrop(scale (0.9, 1.1), ratio (3/4, 4/3)) → ColorJitter(hue
    0.05, saturation 0.05; the two in random order per sample) → RandomRotation(±10°, fill 0), as
    in the official pipeline (trainer/module/data.py:9-16). Crop sampling is torchvision's: ten
    tries of (area, log-aspect) for a box inside the image, else the whole image. Differences:
    crop-resize and rotation are composed into one affine map sampled once bilinearly
    (torchvision resamples twice, the rotation with NEAREST), and the colour jitter is skipped
    for one-channel images (torchvision leaves grey images unchanged by hue and saturation too).
    """
    n, c, h, w = x.shape
    dev = x.device
    # RandomResizedCrop box (torchvision get_params, vectorised over 10 tries).
    tries = 10
    area = h * w * torch.empty(n, tries, device=dev).uniform_(*CROP_SCALE)
    log_r = torch.empty(n, tries, device=dev).uniform_(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1]))
    aspect = torch.exp(log_r)
    cw = torch.round(torch.sqrt(area * aspect))
    ch = torch.round(torch.sqrt(area / aspect))
    ok = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((n,), -1, device=dev))
    sel = first.clamp(min=0)[:, None]
    found = first >= 0
    cw = torch.where(found, cw.gather(1, sel)[:, 0], torch.full((n,), float(w), device=dev))
    ch = torch.where(found, ch.gather(1, sel)[:, 0], torch.full((n,), float(h), device=dev))
    top = torch.floor(torch.rand(n, device=dev) * (h - ch + 1))
    left = torch.floor(torch.rand(n, device=dev) * (w - cw + 1))
    # Affine map from output to input normalised coordinates (align_corners=False).
    sx, sy = cw / w, ch / h
    tx, ty = (2 * left + cw) / w - 1, (2 * top + ch) / h - 1
    angle = torch.empty(n, device=dev).uniform_(-ROTATION_DEGREES, ROTATION_DEGREES) * (math.pi / 180)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([sx * cos, -sx * sin, tx], 1),
                         torch.stack([sy * sin, sy * cos, ty], 1)], 1)
    grid = F.affine_grid(theta, (n, c, h, w), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if c == 3:
        sat = torch.empty(n, 1, 1, 1, device=dev).uniform_(1 - JITTER_SATURATION, 1 + JITTER_SATURATION)
        hue = torch.empty(n, 1, 1, device=dev).uniform_(-JITTER_HUE, JITTER_HUE)
        sat_first = torch.rand(n, device=dev) < 0.5
        out = torch.empty_like(x)
        a, b = sat_first.nonzero()[:, 0], (~sat_first).nonzero()[:, 0]
        out[a] = adjust_hue(adjust_saturation(x[a], sat[a]), hue[a])
        out[b] = adjust_saturation(adjust_hue(x[b], hue[b]), sat[b])
        x = out
    return x


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's adjust_saturation: blend with the ITU-R 601-2 grey image, clamp to [0, 1]."""
    gray = (0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]
    return (factor * x + (1 - factor) * gray).clamp(0.0, 1.0)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of RGB images by ``shift`` (N×1×1, in turns), via HSV, as torchvision does."""
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    hr = ((g - b) / safe) % 6
    hg = (b - r) / safe + 2
    hb = (r - g) / safe + 4
    hue = torch.where(maxc == r, hr, torch.where(maxc == g, hg, hb))
    hue = torch.where(delta > 0, hue / 6, torch.zeros_like(hue))
    hue6 = ((hue + shift) % 1.0)[:, None] * 6                     # N×1×H×W, in [0, 6)
    k = (torch.tensor([5.0, 3.0, 1.0], device=x.device).view(1, 3, 1, 1) + hue6) % 6
    # HSV → RGB: channel = v − v·s·clamp(min(k, 4 − k), 0, 1) with k = (5, 3, 1) + 6h mod 6
    v = maxc[:, None]
    return (v - v * s[:, None] * torch.minimum(k, 4 - k).clamp(0.0, 1.0)).clamp(0.0, 1.0)
