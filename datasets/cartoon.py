"""Cartoon (Google's Cartoon Set, Royer et al. 2020) with hair colour as target and face colour as bias
(PGD Sec. 6.1.1, App. B.1, Tables 1 and 7).

PGD: "we choose hair color and face color attributes as the target attributes and the biased
attributes ... the size of each label is reduced ... to 4 by mapping 2 classes (similar colors)
into 1 class (e.g., original classes 1, 2 are mapped to the new class 1)". We read this as: with
the release's 0-based variant indices, merged class = index // 2 for indices 0–7, i.e. pairs
(0,1) (2,3) (4,5) (6,7) → 0..3; the remaining variants (hair colours 8–9, face colours 8–10) are
not used. The paper does not list the pairs; which colours are "similar" is our reading of the
consecutive indices.

The majority set M has target class = bias class, the minority set m the other 12 combinations.
A held-out test set (``test_fraction`` of the used images, drawn first) keeps the release's natural
mix, so its ``aligned_acc`` is PGD's "Major" and ``conflicting_acc`` its "Minor" accuracy. The
training set takes every aligned image of the rest plus as many conflicting ones as make
|M| / |D| = ``bias_ratio`` (PGD: {0.995, 0.99, 0.98, 0.95}); a biased validation set of 10% of it
is held out (PGD Sec. 6.1.1: "biased validation set Dval (10% of Dtr)").

Files: each ``csX.png`` (RGBA, transparent background composited onto white here) has a ``csX.csv``
whose lines read ``"attribute", variant, number_of_variants`` (google.github.io/cartoonset). PGD's
network is its 5-layer Simple ConvNet-2 (App. A.1, Fig. 9b), which is not in this suite: the
default backbone here is ResNet-18, and the 64×64 input size is ours (the paper gives none).
Augmentation: RandomResizedCrop scale (0.9, 1.1) (PGD App. A.1) and a horizontal flip (ours).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark import BiasHead, DatasetInfo, hp, register_dataset
from benchmark.images import IMAGENET_MEAN, IMAGENET_STD, ImageFamily, ImageList, check_image_params

TARGET, BIAS = "hair_color", "face_color"  # PGD App. B.1
NUM_MERGED = 4
LAYOUT = """  <data root>/cartoonset/cartoonset10k/csX.png, csX.csv           (release "cartoonset10k.tgz")
  <data root>/cartoonset/cartoonset100k/<0-9>/csX.png, csX.csv   (release "cartoonset100k.tgz")"""


def merge(variant: np.ndarray) -> np.ndarray:
    """PGD's 4 merged classes: variant // 2 for variants 0-7, -1 (unused) otherwise."""
    return np.where((variant >= 0) & (variant < 2 * NUM_MERGED), variant // 2, -1)


def read_attributes(csv_path) -> dict[str, int]:
    out = {}
    for line in csv_path.read_text().splitlines():
        parts = [p.strip().strip('"') for p in line.split(",")]
        if len(parts) >= 2 and parts[0]:
            out[parts[0]] = int(parts[1])
    return out


@dataclass(frozen=True)
class CartoonParams:
    release: str = hp("cartoonset10k", "ours (PGD does not say which release)", "cartoonset10k or cartoonset100k",
                      choices=("cartoonset10k", "cartoonset100k"))
    bias_ratio: float = hp(0.99, "PGD Table 1 (|M|/|D| in {0.995, 0.99, 0.95}; Table 7 adds 0.98)",
                           "fraction of bias-aligned images in the training set")
    test_fraction: float = hp(0.2, "ours", "fraction of the used images held out as the (natural-mix) test set")
    val_fraction: float = hp(0.1, "PGD Sec. 6.1.1 (Dval = 10% of Dtr)", "fraction of the training set held out as 'val'")
    seed: int = hp(0, "ours", "seed of the splits and the subsampling")
    image_size: int = hp(64, "ours (PGD gives no input size)", "square input size")
    crop_scale: tuple[float, float] = hp((0.9, 1.1), "PGD App. A.1 (RandomResizedCrop scale)", "train-time crop area range")
    hflip: bool = hp(True, "ours", "train-time random horizontal flip")

    def check(self):
        check_image_params(self)
        if not 0.0 < self.bias_ratio < 1.0:
            raise ValueError(f"bias_ratio={self.bias_ratio} must be in (0, 1)")
        for name in ("test_fraction", "val_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name}={getattr(self, name)} must be in [0, 1)")


@register_dataset("cartoon")
class Cartoon(ImageFamily):
    """Cartoon Set: hair colour (4 merged classes) biased by face colour (PGD App. B.1)."""

    Params = CartoonParams
    version = "1"
    layout = LAYOUT
    source = "google.github.io/cartoonset/download.html (cartoonset10k.tgz or cartoonset100k.tgz, CC BY 4.0)"
    quick_params = {}  # the default 64×64 is already small

    def info(self, params) -> DatasetInfo:
        s = int(params.image_size)
        return DatasetInfo(name=self.name, input_shape=(3, s, s), num_classes=NUM_MERGED, num_bias_classes=NUM_MERGED,
                           bias_heads=(BiasHead("face_color", "b", NUM_MERGED),), backbone="resnet18",
                           mean=IMAGENET_MEAN, std=IMAGENET_STD)

    def image_lists(self, params: CartoonParams, data_root) -> dict[str, ImageList]:
        folder = data_root / "cartoonset" / params.release
        csvs = sorted(folder.rglob("cs*.csv")) if folder.is_dir() else []
        if not csvs:
            raise self.missing(data_root, f"no cs*.csv files under {folder}")
        rel, hair, face = [], [], []
        for c in csvs:
            a = read_attributes(c)
            if TARGET not in a or BIAS not in a:
                raise ValueError(f"cartoon: {c} lacks {TARGET!r} or {BIAS!r}")
            rel.append(str(c.with_suffix(".png").relative_to(data_root)))
            hair.append(a[TARGET])
            face.append(a[BIAS])
        y, b = merge(np.array(hair)), merge(np.array(face))
        used = np.flatnonzero((y >= 0) & (b >= 0))
        rng = np.random.default_rng(params.seed)
        used = rng.permutation(used)
        n_test = int(round(params.test_fraction * len(used)))
        test, pool = np.sort(used[:n_test]), used[n_test:]
        aligned_pool = pool[y[pool] == b[pool]]
        conflict_pool = pool[y[pool] != b[pool]]
        n_conflict = int(round(len(aligned_pool) * (1 - params.bias_ratio) / params.bias_ratio))
        if n_conflict > len(conflict_pool):
            raise ValueError(f"cartoon: bias_ratio={params.bias_ratio} needs {n_conflict} conflicting images, "
                             f"only {len(conflict_pool)} available")
        train = rng.permutation(np.concatenate([aligned_pool, rng.choice(conflict_pool, n_conflict, replace=False)]))
        n_val = int(round(params.val_fraction * len(train)))
        parts = {"train": np.sort(train[n_val:]), "val": np.sort(train[:n_val]), "test": test}
        out = {}
        for name, idx in parts.items():
            if name == "val" and not len(idx):
                continue
            out[name] = ImageList([rel[i] for i in idx], y[idx], b[idx], y[idx] == b[idx])
        return out
