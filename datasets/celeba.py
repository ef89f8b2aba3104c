"""CelebA with a naturally occurring attribute bias (Liu et al., 2015; as used by LfF and PGD Table 3/8).

One of the 40 binary attributes is the target, another the bias; the official partition file gives
train (162,770) / val (19,867) / test (19,962). Presets (:data:`PRESETS`):

- ``pgd`` (the default): target Heavy_Makeup, bias Male (PGD Sec. 6.1.2, App. B.2);
- ``blond_hair``: target Blond_Hair, bias Male (LfF; the pair most later work reports).

Bias-aligned vs bias-conflicting: for every target class, the bias value that is most
over-represented in the training split relative to its overall frequency (largest P(b | y) / P(b))
is "aligned". For Heavy_Makeup/Male this gives heavy makeup ↔ female and no makeup ↔ male, and on
the official training split exactly PGD's sizes |M| = 130,410 and |m| = 32,360 (App. B.2); for
Blond_Hair/Male it gives blond ↔ female and not blond ↔ male. The (target × bias) accuracy matrix
``group_acc`` gives LfF's "unbiased" accuracy as the mean over its four cells (alinlab/LfF
train.py:140-158, evaluated on the valid split) and PGD's Major/Minor split as ``aligned_acc`` /
``conflicting_acc``.

Inputs: the aligned-and-cropped 178×218 images resized to 224×224 with ImageNet normalisation and a
random horizontal flip for training (alinlab/LfF @ e66796e data/util.py:89-104); ResNet-18
pretrained on ImageNet (PGD App. A.1; run with ``--pretrained``). The attribute file may be the
official ``list_attr_celeba.txt`` or the gzipped copy staged in shared/data.
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass

import numpy as np

from benchmark import BiasHead, DatasetInfo, hp, register_dataset
from benchmark.images import IMAGENET_MEAN, IMAGENET_STD, ImageFamily, ImageList, check_image_params

PRESETS = {
    "pgd": {"target": "Heavy_Makeup", "bias": "Male"},       # PGD Sec. 6.1.2, App. B.2
    "blond_hair": {"target": "Blond_Hair", "bias": "Male"},  # LfF Sec. 4
}
PARTITIONS = {"train": 0, "val": 1, "test": 2}  # list_eval_partition.txt codes
LAYOUT = """  <data root>/celeba/list_attr_celeba.txt  (or list_attr_celeba.txt.gz; official attribute file)
  <data root>/celeba/list_eval_partition.txt (official partition: 0 train, 1 val, 2 test)
  <data root>/celeba/img_align_celeba/000001.jpg ... 202599.jpg"""


def read_attributes(path):
    """(file names, attribute names, N×40 int8 matrix of ±1) from list_attr_celeba.txt(.gz)."""
    import pandas as pd

    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as fh:
        fh.readline()  # the number of images
        table = pd.read_csv(fh, sep=r"\s+", header=0)
    return table.index.astype(str).to_numpy(), list(table.columns), table.to_numpy(dtype=np.int8)


def read_partition(path):
    import pandas as pd

    table = pd.read_csv(path, sep=r"\s+", header=None, names=["file", "partition"])
    return table["file"].astype(str).to_numpy(), table["partition"].to_numpy(dtype=np.int64)


def aligned_bias(y: np.ndarray, b: np.ndarray, num_classes: int = 2, num_bias: int = 2) -> np.ndarray:
    """Per target class, the bias value with the largest P(b | y) / P(b) (the over-represented one)."""
    counts = np.zeros((num_classes, num_bias))
    np.add.at(counts, (y, b), 1)
    p_b = counts.sum(0) / max(counts.sum(), 1)
    p_b_given_y = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    return np.argmax(p_b_given_y / np.maximum(p_b, 1e-12), axis=1)


@dataclass(frozen=True)
class CelebAParams:
    target: str = hp("Heavy_Makeup", "PGD Sec. 6.1.2 (preset 'pgd'; 'blond_hair' uses Blond_Hair)",
                     "target attribute (a column of list_attr_celeba.txt)")
    bias: str = hp("Male", "PGD Sec. 6.1.2 / LfF", "bias attribute")
    image_size: int = hp(224, "LfF data/util.py:92 (Resize((224, 224)))", "square input size")
    crop_scale: tuple[float, float] = hp((1.0, 1.0), "LfF data/util.py:90-96 (no crop)", "train-time crop area range")
    hflip: bool = hp(True, "LfF data/util.py:93 (RandomHorizontalFlip)", "train-time random horizontal flip")

    def check(self):
        check_image_params(self)
        if self.target == self.bias:
            raise ValueError(f"target and bias are both {self.target!r}")


@register_dataset("celeba")
class CelebA(ImageFamily):
    """CelebA, one attribute as target and another as bias; presets Heavy_Makeup/Male and Blond_Hair/Male."""

    Params = CelebAParams
    version = "1"
    layout = LAYOUT
    source = ("mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Align&Cropped Images: img_align_celeba.zip; "
              "Anno/list_attr_celeba.txt; Eval/list_eval_partition.txt); the two text files are staged in shared/data/celeba")

    def info(self, params) -> DatasetInfo:
        s = int(params.image_size)
        return DatasetInfo(name=self.name, input_shape=(3, s, s), num_classes=2, num_bias_classes=2,
                           bias_heads=(BiasHead(params.bias.lower(), "b", 2),), backbone="resnet18",
                           mean=IMAGENET_MEAN, std=IMAGENET_STD)

    def image_lists(self, params: CelebAParams, data_root) -> dict[str, ImageList]:
        attr_rel = "celeba/list_attr_celeba.txt"
        if not (data_root / attr_rel).is_file():
            attr_rel += ".gz"
        attr_path, part_path = self.require(data_root, attr_rel, "celeba/list_eval_partition.txt")
        if not (data_root / "celeba/img_align_celeba").is_dir():
            raise self.missing(data_root, "the image folder celeba/img_align_celeba/ is missing")
        files, names, attrs = read_attributes(attr_path)
        for a in (params.target, params.bias):
            if a not in names:
                raise ValueError(f"celeba: unknown attribute {a!r}; attributes: {', '.join(names)}")
        p_files, partition = read_partition(part_path)
        if len(p_files) != len(files) or not np.array_equal(p_files, files):
            raise ValueError(f"celeba: {attr_path} and {part_path} list different images")
        y = (attrs[:, names.index(params.target)] > 0).astype(np.int64)
        b = (attrs[:, names.index(params.bias)] > 0).astype(np.int64)
        train = partition == PARTITIONS["train"]
        majority = aligned_bias(y[train], b[train])
        aligned = b == majority[y]
        out = {}
        for name, code in PARTITIONS.items():
            idx = np.flatnonzero(partition == code)
            out[name] = ImageList([f"celeba/img_align_celeba/{f}" for f in files[idx]], y[idx], b[idx], aligned[idx])
        return out
