"""Watermarked MNIST, PGD protocol (Ahn et al., ICLR 2023 submission, App. B.1 and Sec. 6.1.1).

The target is the digit; the bias is a Fashion-MNIST object pasted at the top-left of the canvas.
A fraction ``bias_ratio`` = |M|/|D| of the samples (the majority M) carries an object whose
Fashion-MNIST label equals the digit label (digit 1 → trouser, Sec. 6.1.1); the minority m
carries an object of a uniformly drawn other class. Splits as in ``colored_mnist_ratio``: biased
train / validation (last 10 % of MNIST train) and MNIST test with majority and minority reported
separately (``Split.aligned``; ``b`` is the object's Fashion-MNIST class).

What App. B.1 states: MNIST images are up-scaled from 28×28 to 56×56; the object is placed
"δ pixels far from top and [left] of the canvas", δ ~ U(0, α), α ∈ {8, 16}. The official
repository (sumyeongahn/PGD @ 0265520) has no generator for this dataset (shared/PROTOCOL-FACTS.md),
so every other detail is ours, and a parameter where it is cheap:

- Canvas: one grey channel, 56×56 (no colour is involved; Simple ConvNet-1 takes 1 input channel).
- Up-scaling: bilinear ×2 of the digit (``F.interpolate``, align_corners=False), rounded to uint8.
- The object: a Fashion-MNIST image of the required class at its native 28×28 size, drawn
  uniformly (with replacement) among that class's images — from Fashion-MNIST *train* for the
  train/val splits and Fashion-MNIST *test* for the test split, so test objects are unseen
  instances.
- Offset: two independent integer offsets δ_y, δ_x uniform on {0, …, α} (``max_offset``), the
  object's top-left corner at (δ_y, δ_x). With α ≤ 28 the object always fits the canvas.
- Blending: pixel-wise maximum of the up-scaled digit and ``watermark_intensity`` × the object
  (default 0.5, so digit strokes at 255 stay visible through the object — a "watermark"). The
  paper's majority/minority accuracies (PGD Table 1: 96.19 % minority at ratio 0.95) imply the digit stays
  readable under the object; an opaque paste (intensity 1, max-blend) is available.
- Minority sampling, val/test split sizes, test conflicting ratio (0.9) and the augmentation
  follow ``colored_mnist_ratio`` (PGD's Colored MNIST generator), which the paper says is
  shared by "all benchmarks" (Sec. 6.1.1); inputs are not normalised.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from benchmark import BiasHead, DatasetFamily, DatasetInfo, Split, hp, register_dataset
from benchmark.data import load_mnist
from benchmark_datasets.colored_mnist_ratio import BIAS_RATIO_GRID, assign_bias, pgd_augment

OFFSET_GRID = (8, 16)  # PGD App. B.1: α ∈ {8, 16}
CANVAS = 56            # PGD App. B.1: "size-up scaled from R^{28×28} to R^{56×56}"


@dataclass(frozen=True)
class WatermarkedMNISTParams:
    bias_ratio: float = hp(0.99, "PGD Sec. 6.1.1 / Table 1 (|M|/|D| ∈ {0.995, 0.99, 0.95})",
                           "fraction of bias-aligned (majority) samples in train and val, in (0, 1)")
    max_offset: int = hp(8, "PGD App. B.1 (δ ~ U(0, α), α ∈ {8, 16})",
                         "α: the object's top-left corner is at (δ_y, δ_x), each uniform on {0..α}")
    watermark_intensity: float = hp(0.5, "ours (App. B.1 does not say how the object is blended)",
                                    "object pixels are scaled by this before the max-blend with the digit")
    conflict_sampling: str = hp("exact", "exact: ours; bernoulli: as PGD's Colored MNIST generator",
                                "how minority samples are drawn", choices=("exact", "bernoulli"))
    val_fraction: float = hp(0.1, "PGD Sec. 6.1.1 (biased validation, 10 % of training)",
                             "fraction of MNIST train held out as the biased validation split")
    test_conflicting_ratio: float = hp(0.9, "as PGD's Colored MNIST test (official colored_mnist.py:74)",
                                       "fraction of bias-conflicting test samples (0.9 = uniform objects)")
    augment: bool = hp(True, "PGD App. A.1 'Data augmentation' (shared by all MNIST variants)",
                       "train-time RandomResizedCrop + RandomRotation (colour jitter is a no-op on grey)")
    seed: int = hp(0, "ours", "seed of the bias, object and offset sampling (data, not training)")

    def check(self):
        if not 0.0 < self.bias_ratio < 1.0:
            raise ValueError(f"bias_ratio={self.bias_ratio} must be in (0, 1); the paper's grid is {BIAS_RATIO_GRID}")
        if not 0 <= self.max_offset <= CANVAS - 28:
            raise ValueError(f"max_offset={self.max_offset} must be in [0, {CANVAS - 28}]; the paper uses {OFFSET_GRID}")
        if not 0.0 < self.watermark_intensity <= 1.0:
            raise ValueError(f"watermark_intensity={self.watermark_intensity} must be in (0, 1]")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction={self.val_fraction} must be in [0, 1)")
        if not 0.0 <= self.test_conflicting_ratio <= 1.0:
            raise ValueError(f"test_conflicting_ratio={self.test_conflicting_ratio} must be in [0, 1]")


def upscale2x(gray: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """N×28×28 uint8 → N×56×56 uint8, bilinear, in chunks to bound memory."""
    out = np.empty((len(gray), 2 * gray.shape[1], 2 * gray.shape[2]), dtype=np.uint8)
    for i in range(0, len(gray), chunk):
        t = torch.from_numpy(np.array(gray[i:i + chunk])).float()[:, None]
        up = F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)
        out[i:i + chunk] = up[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()
    return out


def paste_max(canvas: np.ndarray, objects: np.ndarray, top: np.ndarray, left: np.ndarray) -> np.ndarray:
    """Max-blend each object (N×h×w) into its canvas (N×H×W) with its top-left corner at (top, left)."""
    n, h, w = objects.shape
    rows = (top[:, None] + np.arange(h))[:, :, None]
    cols = (left[:, None] + np.arange(w))[:, None, :]
    idx = np.arange(n)[:, None, None]
    out = canvas.copy()
    out[idx, rows, cols] = np.maximum(out[idx, rows, cols], objects)
    return out


@register_dataset("watermarked_mnist")
class WatermarkedMNIST(DatasetFamily):
    """MNIST on a 56×56 canvas with a Fashion-MNIST object at the top-left as the bias (PGD App. B.1)."""

    Params = WatermarkedMNISTParams
    version = "1"

    def info(self, params) -> DatasetInfo:
        return DatasetInfo(
            name=self.name, input_shape=(1, CANVAS, CANVAS), num_classes=10, num_bias_classes=10,
            bias_heads=(BiasHead("watermark", "b", num_classes=10),),
            backbone="simple_convnet", mean=(0.0,), std=(1.0,),
        )

    def augment(self, params):
        return pgd_augment if params.augment else None

    def generate(self, params: WatermarkedMNISTParams, data_root) -> dict[str, Split]:
        mnist = load_mnist(data_root)
        fashion = load_mnist(data_root, "FashionMNIST")
        rng = np.random.default_rng([params.seed, int(round(params.bias_ratio * 1e6)), params.max_offset])
        (xtr, ytr), (xte, yte) = mnist["train"], mnist["test"]
        n_val = int(round(params.val_fraction * len(ytr)))
        cut = len(ytr) - n_val
        parts = {"train": (xtr[:cut], ytr[:cut], 1.0 - params.bias_ratio, "train")}
        if n_val:
            parts["val"] = (xtr[cut:], ytr[cut:], 1.0 - params.bias_ratio, "train")
        parts["test"] = (xte, yte, params.test_conflicting_ratio, "test")
        splits = {}
        for name, (gray, y, conflicting_ratio, fashion_split) in parts.items():
            b = assign_bias(y, conflicting_ratio, params.conflict_sampling, rng)
            fx, fy = fashion[fashion_split]
            pick = _pick_by_class(fy, b, rng)
            objects = np.rint(fx[pick].astype(np.float32) * params.watermark_intensity).astype(np.uint8)
            top = rng.integers(0, params.max_offset + 1, size=len(y))
            left = rng.integers(0, params.max_offset + 1, size=len(y))
            img = paste_max(upscale2x(gray), objects, top, left)
            splits[name] = Split(
                x=torch.from_numpy(img[:, None]), y=torch.from_numpy(y.astype(np.int64)),
                b=torch.from_numpy(b.astype(np.int64)), aligned=torch.from_numpy(b == y),
                attrs={"offset": torch.from_numpy(np.stack([top, left], 1).astype(np.int64)),
                       "fashion_index": torch.from_numpy(pick.astype(np.int64))},
            )
        return splits


def _pick_by_class(labels: np.ndarray, wanted: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each wanted class, the index of a uniformly drawn image of that class (with replacement)."""
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=10)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    within = np.floor(rng.random(len(wanted)) * counts[wanted]).astype(np.int64)
    return order[starts[wanted] + within]
