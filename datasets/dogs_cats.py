"""Dogs and Cats with a colour bias (Kim et al., "Learning Not to Learn", CVPR 2019, Sec. 4.2, Table 1).

The Kaggle Dogs vs. Cats training images are split by fur brightness, using the authors' lists
(feidfoe/learning-not-to-learn @ fad2ec8, dataset/dogs_and_cats/README.md):

- TB1 = dark cats + bright dogs: cats from ``list_dark.txt``, dogs from ``list_bright.txt``;
- TB2 = bright cats + dark dogs: cats from ``list_bright.txt``, dogs from ``list_dark.txt``;
- images listed in neither file are not used.

A network trained on one TB split is evaluated on the test set and on the other TB split (Table 1:
"the networks trained with TB1 were additionally evaluated with TB2, and vice versa"). The test set
is Kaggle's unlabelled ``test1`` folder, labelled by the authors' oracle model (Fig. 6 caption: "For
test images, prediction results of the oracle model were considered as their true labels"); those
labels are ``test_result.npy`` of the official repository, a pickled dict
``{'./dataset/test1/<id>.jpg': 0 (cat) or 1 (dog)}`` read here with a restricted unpickler that only
accepts the five numpy/codecs globals the file uses (:func:`load_oracle_labels`).

Labels: y = 0 cat, 1 dog; b = brightness, 0 dark, 1 bright (one bias head "brightness", 2 classes);
``aligned`` follows the training split's correlation (TB1: dark cats and bright dogs are aligned,
so every TB1 image is aligned and every TB2 image conflicting; the reverse when training on TB2).
The test images have **no brightness label**: b = 0 and aligned = False for all of them, so only
the test ``acc`` (and per-class ``group_acc[:, 0]``) is meaningful there.

The split lists and oracle labels are read from ``<data root>/lnl_splits/dogs_and_cats/`` (staged in
shared/data; not copied into this repository). ResNet-18 pretrained on ImageNet (LNL Sec. 5.1; run
with ``--pretrained``); the paper gives no input size or augmentation: 224×224 with torchvision's
ImageNet RandomResizedCrop + flip are ours.
"""
from __future__ import annotations

import io
import pickle
from dataclasses import dataclass

import numpy as np

from benchmark import BiasHead, DatasetInfo, hp, register_dataset
from benchmark.images import IMAGENET_MEAN, IMAGENET_STD, ImageFamily, ImageList, check_image_params

SPLITS_DIR = "lnl_splits/dogs_and_cats"
LAYOUT = f"""  <data root>/dogs_cats/train/cat.<n>.jpg, dog.<n>.jpg   (Kaggle "Dogs vs. Cats" train.zip, 25,000 images)
  <data root>/dogs_cats/test1/<id>.jpg                   (Kaggle test1.zip, 12,500 images)
  <data root>/{SPLITS_DIR}/list_bright.txt, list_dark.txt, test_result.npy
                                                         (feidfoe/learning-not-to-learn dataset/dogs_and_cats/)"""

# The globals test_result.npy's pickle stream references (checked with pickletools; shared/data/
# lnl_splits/README.txt). numpy >= 2 moved numpy.core to numpy._core.
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype"),
            ("numpy.core.multiarray", "scalar"), ("_codecs", "encode"),
            ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar")}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"test_result.npy: refusing to load global {module}.{name}")
        if module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            try:
                from numpy._core import multiarray
            except ImportError:  # numpy < 2
                from numpy.core import multiarray
            return getattr(multiarray, name)
        return super().find_class(module, name)


def load_oracle_labels(path) -> dict[str, int]:
    """LNL's oracle labels for Kaggle test1: {'<id>.jpg': 0 cat / 1 dog}, loaded without arbitrary code.

    The file is a .npy holding a 0-d object array (a pickle); only the numpy reconstruct/dtype/
    scalar and ``_codecs.encode`` globals are allowed, anything else raises ``UnpicklingError``.
    """
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = header(fh)
        if dtype != np.dtype(object) or shape != ():
            raise ValueError(f"{path}: expected a pickled 0-d object array, got {dtype} {shape}")
        obj = _RestrictedUnpickler(io.BytesIO(fh.read()), encoding="latin1").load()
    table = obj.item() if isinstance(obj, np.ndarray) else obj
    if not isinstance(table, dict):
        raise ValueError(f"{path}: expected a dict of labels, got {type(table).__name__}")
    return {str(k).rsplit("/", 1)[-1]: int(v) for k, v in table.items()}


def read_list(path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


@dataclass(frozen=True)
class DogsCatsParams:
    train_split: str = hp("tb1", "LNL Table 1 (trained on TB1 / on TB2)", "training split: tb1 (dark cats, bright dogs) or tb2",
                          choices=("tb1", "tb2"))
    image_size: int = hp(224, "ours (ImageNet-pretrained ResNet-18 input; LNL gives none)", "square input size")
    crop_scale: tuple[float, float] = hp((0.08, 1.0), "ours (torchvision ImageNet RandomResizedCrop)",
                                         "train-time random resized crop area range")
    hflip: bool = hp(True, "ours", "train-time random horizontal flip")

    def check(self):
        check_image_params(self)


@register_dataset("dogs_cats")
class DogsCats(ImageFamily):
    """Kaggle Dogs vs. Cats split by fur brightness: TB1 (dark cats, bright dogs) / TB2 (LNL Sec. 4.2)."""

    Params = DogsCatsParams
    version = "1"
    layout = LAYOUT
    source = ("images: kaggle.com/c/dogs-vs-cats-redux-kernels-edition (train.zip, test.zip -> test1/); lists: "
              "github.com/feidfoe/learning-not-to-learn dataset/dogs_and_cats/ (staged in shared/data/lnl_splits)")

    def info(self, params) -> DatasetInfo:
        s = int(params.image_size)
        return DatasetInfo(name=self.name, input_shape=(3, s, s), num_classes=2, num_bias_classes=2,
                           bias_heads=(BiasHead("brightness", "b", 2),), backbone="resnet18",
                           mean=IMAGENET_MEAN, std=IMAGENET_STD)

    def image_lists(self, params: DogsCatsParams, data_root) -> dict[str, ImageList]:
        bright_p, dark_p, oracle_p = self.require(
            data_root, f"{SPLITS_DIR}/list_bright.txt", f"{SPLITS_DIR}/list_dark.txt", f"{SPLITS_DIR}/test_result.npy")
        if not (data_root / "dogs_cats").is_dir():
            raise self.missing(data_root, "the Kaggle images folder dogs_cats/ is missing")
        bright, dark = read_list(bright_p), read_list(dark_p)
        overlap = set(bright) & set(dark)
        if overlap:
            raise ValueError(f"dogs_cats: {len(overlap)} file(s) in both brightness lists, e.g. {sorted(overlap)[:3]}")

        def tb(cats_from, dogs_from):
            files = [f for f in cats_from if f.startswith("cat.")] + [f for f in dogs_from if f.startswith("dog.")]
            y = np.array([0 if f.startswith("cat.") else 1 for f in files], dtype=np.int64)
            b = np.array([1 if f in bright_set else 0 for f in files], dtype=np.int64)
            return files, y, b

        bright_set = set(bright)
        splits = {"tb1": tb(dark, bright), "tb2": tb(bright, dark)}
        flip = params.train_split == "tb2"  # TB2's correlation: cat (0) with bright (1)
        out = {}
        for name, (files, y, b) in splits.items():
            aligned = (b == y) ^ flip
            out["train" if name == params.train_split else name] = ImageList(
                [f"dogs_cats/train/{f}" for f in files], y, b, aligned)
        oracle = load_oracle_labels(oracle_p)
        test_files = sorted(oracle, key=lambda f: (len(f), f))
        y = np.array([oracle[f] for f in test_files], dtype=np.int64)
        out["test"] = ImageList([f"dogs_cats/test1/{f}" for f in test_files], y, np.zeros(len(y), np.int64),
                                np.zeros(len(y), bool))
        return out
