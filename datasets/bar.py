"""Biased Action Recognition (BAR; Nam et al., "Learning from Failure", NeurIPS 2020), as in PGD Table 10.

Six actions photographed in their typical places — (climbing, rock wall), (diving, underwater),
(fishing, water surface), (racing, paved track), (throwing, playing field), (vaulting, sky) — for
training, and in unusual places for evaluation (alinlab/BAR README; PGD App. B.2: "(Climbing,
Rockwall) for M and (Climbing, Ice cliff) for m"). 1,941 training and 654 test images, split by the
``train`` flag of the official ``metadata.json`` (alinlab/BAR @ 1364b0a).

Labels and what the bias fields mean here: BAR has **no per-sample place label**. ``b`` is set to
the class itself (b = y), so the engine's (target × bias) accuracy matrix ``group_acc`` holds the
per-class accuracies on its diagonal and ``worst_group_acc`` is the worst class — PGD Table 10
reports these per-class accuracies and their mean ("Avg." = mean of the diagonal). ``aligned`` is
True for every training image (typical place) and False for every test image (unusual place), so
on the test split ``conflicting_acc`` equals ``acc``. No bias head is declared: methods that need
bias labels (LNL, Blind Eye, GRL) do not apply to BAR.

Protocol details and their sources:
- classes, in PGD Table 10's column order: climbing, diving, fishing, racing, throwing, (pole) vaulting;
- ResNet-18 pretrained on ImageNet, 224×224 inputs with ImageNet normalisation (PGD App. A.1,
  Table 4; run with ``--pretrained``); images resized to 224×224 (aspect ratio not kept; LfF's
  pipeline for real images, alinlab/LfF @ e66796e data/util.py:92);
- a biased validation split of 10% of the training images, stratified by class (PGD App. A.1:
  "validation set of 10% of the training set", used for model selection);
- augmentation: RandomResizedCrop with scale (0.9, 1.1) (PGD App. A.1) and a horizontal flip
  (ours), on the device. PGD's ColorJitter and RandomRotation are not applied.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from benchmark import DatasetInfo, hp, register_dataset
from benchmark.images import IMAGENET_MEAN, IMAGENET_STD, ImageFamily, ImageList, check_image_params, stratified_split

CLASSES = ("climbing", "diving", "fishing", "racing", "throwing", "pole vaulting")  # PGD Table 10 order
LAYOUT = """  <data root>/BAR/metadata.json      (official, {"climbing_0": {"cls": "climbing", "train": true, ...}, ...})
  <data root>/BAR/train/<key>.jpg     (1,941 images, <key> = metadata key)
  <data root>/BAR/test/<key>.jpg      (654 images)"""


@dataclass(frozen=True)
class BARParams:
    image_size: int = hp(224, "PGD App. A.1 (ImageNet-pretrained ResNet-18); LfF data/util.py:92 resizes to 224",
                         "images are resized to image_size×image_size once, then cached")
    val_fraction: float = hp(0.1, "PGD App. A.1 (10% of train as validation)",
                             "hold out this fraction of train (per class) as a biased 'val' split; 0 = none")
    seed: int = hp(0, "ours", "seed of the train/val split (data, not training)")
    crop_scale: tuple[float, float] = hp((0.9, 1.1), "PGD App. A.1 (RandomResizedCrop scale)",
                                         "train-time random resized crop area range (>1 clamps to the whole image)")
    hflip: bool = hp(True, "ours", "train-time random horizontal flip")

    def check(self):
        check_image_params(self)
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction={self.val_fraction} must be in [0, 1)")


@register_dataset("bar")
class BAR(ImageFamily):
    """Biased Action Recognition: 6 actions in typical places (train) vs unusual places (test)."""

    Params = BARParams
    version = "1"
    layout = LAYOUT
    source = ("github.com/alinlab/BAR (metadata.json, train/, test/); staged here under "
              "shared/data/BAR")

    def info(self, params) -> DatasetInfo:
        s = int(params.image_size)
        return DatasetInfo(name=self.name, input_shape=(3, s, s), num_classes=len(CLASSES),
                           num_bias_classes=len(CLASSES), bias_heads=(), backbone="resnet18",
                           mean=IMAGENET_MEAN, std=IMAGENET_STD)

    def image_lists(self, params: BARParams, data_root) -> dict[str, ImageList]:
        (meta_path,) = self.require(data_root, "BAR/metadata.json")
        meta = json.loads(meta_path.read_text())
        index = {c: i for i, c in enumerate(CLASSES)}
        keys = {True: [], False: []}
        for key in sorted(meta, key=_natural):
            entry = meta[key]
            if entry["cls"] not in index:
                raise ValueError(f"bar: unknown class {entry['cls']!r} for {key} in {meta_path}")
            keys[bool(entry["train"])].append(key)
        out = {}
        train_keys = keys[True]
        y_train = np.array([index[meta[k]["cls"]] for k in train_keys], dtype=np.int64)
        is_val = np.zeros(len(train_keys), dtype=bool)
        if params.val_fraction > 0:
            is_val = stratified_split(y_train, params.val_fraction, np.random.default_rng(params.seed))
        for name, mask in (("train", ~is_val), ("val", is_val)):
            if name == "val" and not mask.any():
                continue
            sel = [k for k, m in zip(train_keys, mask) if m]
            y = y_train[mask]
            out[name] = ImageList([f"BAR/train/{k}.jpg" for k in sel], y, y.copy(), np.ones(len(y), bool))
        y = np.array([index[meta[k]["cls"]] for k in keys[False]], dtype=np.int64)
        out["test"] = ImageList([f"BAR/test/{k}.jpg" for k in keys[False]], y, y.copy(), np.zeros(len(y), bool))
        return out


def _natural(key: str):
    """'climbing_10' after 'climbing_9'."""
    stem, _, num = key.rpartition("_")
    return (stem, int(num)) if num.isdigit() else (key, -1)
