"""Colored MNIST under the Learning from Failure protocol (Nam et al., NeurIPS 2020), also used by
DFA (Lee et al., 2021) and most later de-biasing papers.

Every digit (foreground) is coloured with one of ten colours; in train a fraction
``conflicting_ratio`` ∈ {0.5 %, 1 %, 2 %, 5 %} of each class gets another colour, the rest its
class's colour. The evaluation set is MNIST test with 10 % of each class aligned (the nine other
colours share the remaining 90 % equally). Everything below is read off the official code,
alinlab/LfF @ e66796e (shared/PROTOCOL-FACTS.md, "Learning from Failure"):

- Colours: data/resource/colors.th (ten RGB means in [0, 1]; ``LFF_COLORS`` below, float32 values
  as stored).
- Colouring: ``clamp(mean + N(0, std²)·1, 0, 1)`` once per image (one 3-vector), times the grey
  image in 0..255, cast to uint8 by truncation (data/colored_mnist_protocol.py:11-16,
  make_dataset.py:128). Std by severity 1..5: 0.05, 0.02, 0.01, 0.005, 0.002 (:12); the released
  script trains at severity 4 (script/train.sh), our default.
- Bias labels in exact blocks (make_dataset.py:17-47): within each class, in dataset order, the
  colours 0..9 take consecutive blocks whose ends are ``round(n_c · cumsum(ratios))`` with ratio
  ``1 − conflicting_ratio`` for the class's own colour and ``conflicting_ratio / 9`` for every
  other. So the assignment is deterministic; only the colour noise is random.
- Splits: "train" = all 60 000 MNIST training images (make_dataset.py:113-118); LfF's "valid"
  split = MNIST test with ``bias_aligned_ratio = 0.1`` (:120-122) is the only evaluation set and
  the one the paper reports — it is our "test" split (the suite's unbiased test split). LfF has no
  biased validation set; ``val_fraction`` > 0 holds one out of train (ours, off by default).
- Inputs: ``ToTensor`` only, no normalisation (data/util.py:35-38). LfF's MLP then divides by
  255 once more (module/mlp.py:17) — backbone ``lff_mlp_official`` reproduces that quirk; the
  default ``lff_mlp`` does not.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from benchmark import BiasHead, DatasetFamily, DatasetInfo, Split, hp, register_dataset
from benchmark.data import load_mnist

# alinlab/LfF @ e66796e data/resource/colors.th (10×3×1×1 float32), printed to 10 digits.
LFF_COLORS = np.array([
    [0.9836823344, 0.3125190139, 0.1685753465], [0.9905296564, 0.9156052470, 0.3515121937],
    [0.6729639769, 0.4610704780, 0.5798081756], [0.7832519412, 0.8315559030, 0.6013293862],
    [0.0880157948, 0.7779633403, 0.9818077683], [0.3213933706, 0.9610545635, 0.4464498758],
    [0.0246158838, 0.2356504798, 0.7586662769], [0.5552469492, 0.1015801430, 0.7617631555],
    [0.2077232003, 0.3929485083, 0.0187023878], [0.8336576223, 0.2024092674, 0.2669430971],
], dtype=np.float32)
SEVERITY_STD = (0.05, 0.02, 0.01, 0.005, 0.002)      # colored_mnist_protocol.py:12, severity 1..5
CONFLICTING_GRID = (0.005, 0.01, 0.02, 0.05)         # make_dataset.py:151 ("skewed_ratio")
VALID_ALIGNED_RATIO = 0.1                            # make_dataset.py:120-122


@dataclass(frozen=True)
class ColoredMNISTLfFParams:
    conflicting_ratio: float = hp(0.01, "LfF make_dataset.py:151 (skewed ratios 0.05/0.02/0.01/0.005); script/train.sh: skewed3 = 0.01",
                                  "fraction of bias-conflicting training samples per class")
    severity: int = hp(4, "LfF script/train.sh (severity4); stds in colored_mnist_protocol.py:12",
                       "colour noise level 1..5 → std 0.05, 0.02, 0.01, 0.005, 0.002", choices=(1, 2, 3, 4, 5))
    test_aligned_ratio: float = hp(VALID_ALIGNED_RATIO, "LfF make_dataset.py:120-122",
                                   "fraction of bias-aligned samples per class in the test (LfF 'valid') split")
    val_fraction: float = hp(0.0, "ours (LfF has no biased validation split)",
                             "hold out this fraction of train (a uniform random subset) as a biased 'val' split")
    seed: int = hp(0, "ours", "seed of the colour noise (the bias labels are deterministic)")

    def check(self):
        if not 0.0 <= self.conflicting_ratio < 1.0:
            raise ValueError(f"conflicting_ratio={self.conflicting_ratio} must be in [0, 1); LfF's grid is {CONFLICTING_GRID}")
        if not 0.0 <= self.test_aligned_ratio <= 1.0:
            raise ValueError(f"test_aligned_ratio={self.test_aligned_ratio} must be in [0, 1]")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction={self.val_fraction} must be in [0, 1)")


def block_bias_labels(y: np.ndarray, aligned_ratio: float, num_classes: int = 10) -> np.ndarray:
    """LfF's ``make_attr_labels`` (make_dataset.py:17-47), vectorised: per class, in dataset order,
    colour j takes the positions k with milestone_{j-1} <= k < milestone_j, where milestones are
    ``round(n_c · cumsum(ratios))`` (NumPy's round-half-to-even, as there)."""
    eye = np.eye(num_classes)
    ratios = aligned_ratio * eye + (1 - aligned_ratio) / (num_classes - 1) * (1 - eye)
    b = np.empty_like(y)
    for c in range(num_classes):
        where = np.flatnonzero(y == c)
        milestones = (len(where) * np.cumsum(ratios[c])).round()
        b[where] = np.searchsorted(milestones, np.arange(len(where)), side="right")
    return b


def colorize_lff(gray: np.ndarray, b: np.ndarray, std: float, rng: np.random.Generator,
                 chunk: int = 4096) -> torch.Tensor:
    """clamp(mean_b + N(0, std²), 0, 1) · gray, truncated to uint8 (LfF colored_mnist_protocol.py:11-16,
    make_dataset.py:128 ``np.uint8``), in float32 as there; N×3×28×28, computed in chunks."""
    noise = rng.standard_normal((len(b), 3)).astype(np.float32) * np.float32(std)
    color = torch.from_numpy(np.clip(LFF_COLORS[b] + noise, 0.0, 1.0))[:, :, None, None]
    g = torch.from_numpy(np.array(gray))
    out = torch.empty((len(g), 3) + tuple(g.shape[1:]), dtype=torch.uint8)
    for i in range(0, len(g), chunk):
        out[i:i + chunk] = (color[i:i + chunk] * g[i:i + chunk, None].float()).to(torch.uint8)  # truncates
    return out


@register_dataset("colored_mnist_lff")
class ColoredMNISTLfF(DatasetFamily):
    """Colored MNIST, LfF protocol: exact per-class colour blocks, 0.5-5 % conflicting (Nam et al. 2020)."""

    Params = ColoredMNISTLfFParams
    version = "1"

    def info(self, params) -> DatasetInfo:
        return DatasetInfo(
            name=self.name, input_shape=(3, 28, 28), num_classes=10, num_bias_classes=10,
            bias_heads=(BiasHead("color", "b", num_classes=10),),
            backbone="lff_mlp", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
        )

    def generate(self, params: ColoredMNISTLfFParams, data_root) -> dict[str, Split]:
        mnist = load_mnist(data_root)
        rng = np.random.default_rng([params.seed, params.severity, int(round(params.conflicting_ratio * 1e6))])
        std = SEVERITY_STD[params.severity - 1]
        (xtr, ytr), (xte, yte) = mnist["train"], mnist["test"]
        btr = block_bias_labels(ytr, 1.0 - params.conflicting_ratio)
        bte = block_bias_labels(yte, params.test_aligned_ratio)
        img_tr = colorize_lff(xtr, btr, std, rng)
        img_te = colorize_lff(xte, bte, std, rng)
        parts = {"train": np.arange(len(ytr))}
        n_val = int(round(params.val_fraction * len(ytr)))
        if n_val:
            order = rng.permutation(len(ytr))
            parts = {"train": np.sort(order[n_val:]), "val": np.sort(order[:n_val])}
        splits = {name: _split(img_tr[torch.from_numpy(i)], ytr[i], btr[i]) for name, i in parts.items()}
        splits["test"] = _split(img_te, yte, bte)
        return splits


def _split(img: torch.Tensor, y, b) -> Split:
    return Split(x=img.contiguous(), y=torch.from_numpy(y.astype(np.int64)),
                 b=torch.from_numpy(b.astype(np.int64)), aligned=torch.from_numpy(b == y))
