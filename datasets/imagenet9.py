"""9-class ImageNet and ImageNet-A (Bahng et al., "Learning De-biased Representations with Biased
Representations" (ReBias), ICML 2020; PGD Table 3/9 "IN/IN-A").

Nine super-classes — dog, cat, frog, turtle, bird, monkey, fish, crab, insect — each a union of
ImageNet classes (42 WordNet ids in all, :data:`WNID_TO_CLASS`, the table of clovaai/rebias @
79d1d1d datasets/imagenet.py:23-31; for ImageNet the code selects the same 42 classes through index
ranges, restricted to those ImageNet-A also has, :39-68). A model trained on the ImageNet train
images of these classes is evaluated on

- ``val``: their ImageNet validation images (2,100), the "biased" accuracy; with ReBias's texture
  clusters (``9class_imagenet_val.csv``: three k-means clusterings of the val images, clovaai/rebias
  clusters/) ``b`` = the first clustering's cluster and ``attrs`` keeps all three. ReBias's
  "unbiased" accuracy is the mean accuracy over (class, cluster) cells with at least 10 images,
  averaged over the three clusterings (rebias evaluator.py:134-222); the record's ``group_acc`` /
  ``group_n`` give it for the first clustering;
- ``test``: ImageNet-A images of the same classes (Hendrycks et al. 2019), "unusual backgrounds"
  (PGD App. B.2) — every one counted as bias-conflicting.

No per-sample bias label exists for train (and for val without the cluster file): there b = y
(a placeholder). ``aligned`` is True on train and val (ImageNet's usual backgrounds) and False on
ImageNet-A. Inputs: resize the shorter side to 256, centre crop 224
(ReBias's evaluation transform, imagenet.py:153-154) for every split, cached
once; training applies RandomResizedCrop (scale 0.08-1) and a horizontal flip on the device to those
224×224 images — ReBias crops the full-resolution image, so our crops see less of the picture.
ResNet-18, ImageNet-pretrained in PGD (App. A.1; run with ``--pretrained``).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass

import numpy as np

from benchmark import DatasetInfo, hp, register_dataset
from benchmark.images import IMAGENET_MEAN, IMAGENET_STD, ImageFamily, ImageList, check_image_params

CLASSES = ("dog", "cat", "frog", "turtle", "bird", "monkey", "fish", "crab", "insect")  # rebias imagenet.py:39
WNID_TO_CLASS = {  # clovaai/rebias @ 79d1d1d datasets/imagenet.py:23-31 (CLASS_TO_INDEX)
    "n01641577": 2, "n01644373": 2, "n01644900": 2, "n01664065": 3, "n01665541": 3, "n01667114": 3,
    "n01667778": 3, "n01669191": 3, "n01819313": 4, "n01820546": 4, "n01833805": 4, "n01843383": 4,
    "n01847000": 4, "n01978287": 7, "n01978455": 7, "n01980166": 7, "n01981276": 7, "n02085620": 0,
    "n02099601": 0, "n02106550": 0, "n02106662": 0, "n02110958": 0, "n02123045": 1, "n02123159": 1,
    "n02123394": 1, "n02123597": 1, "n02124075": 1, "n02174001": 8, "n02177972": 8, "n02190166": 8,
    "n02206856": 8, "n02219486": 8, "n02486410": 5, "n02487347": 5, "n02488291": 5, "n02488702": 5,
    "n02492035": 5, "n02607072": 6, "n02640242": 6, "n02641379": 6, "n02643566": 6, "n02655020": 6,
}
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp")  # rebias imagenet.py:18-21 (case-insensitive)
CLUSTERS_FILE = "imagenet9/9class_imagenet_val.csv"
LAYOUT = f"""  <data root>/imagenet/train/<wnid>/*.JPEG   (ILSVRC-2012 train, torchvision ImageFolder layout)
  <data root>/imagenet/val/<wnid>/*.JPEG     (ILSVRC-2012 val, sorted into class folders)
  <data root>/imagenet-a/<wnid>/*.jpg        (ImageNet-A release)
  <data root>/{CLUSTERS_FILE}   (ReBias texture clusters; needed when --clusters true)
  Only the 42 class folders listed in datasets/imagenet9.py are read."""


@dataclass(frozen=True)
class ImageNet9Params:
    image_size: int = hp(224, "ReBias imagenet.py (image_size=224)", "square input size")
    clusters: bool = hp(True, "ReBias evaluator.py:134-222 (cluster-based unbiased accuracy)",
                        "read the texture clusters of the val images as their bias label")
    crop_scale: tuple[float, float] = hp((0.08, 1.0), "ReBias imagenet.py:146 (RandomResizedCrop(224), torchvision default scale)",
                                         "train-time crop area range")
    hflip: bool = hp(True, "ReBias imagenet.py (RandomHorizontalFlip)", "train-time random horizontal flip")

    def check(self):
        check_image_params(self)


@register_dataset("imagenet9")
class ImageNet9(ImageFamily):
    """ReBias's 9 ImageNet super-classes; val (texture-cluster bias) and ImageNet-A as the test."""

    Params = ImageNet9Params
    version = "1"
    layout = LAYOUT
    resize_mode = "center"
    source = ("ImageNet ILSVRC-2012 train/val (image-net.org), ImageNet-A (github.com/hendrycks/natural-adv-examples, "
              "imagenet-a.tar), clusters: github.com/clovaai/rebias clusters/9class_imagenet_val.csv")

    def info(self, params) -> DatasetInfo:
        s = int(params.image_size)
        return DatasetInfo(name=self.name, input_shape=(3, s, s), num_classes=len(CLASSES), num_bias_classes=9,
                           bias_heads=(), backbone="resnet18", mean=IMAGENET_MEAN, std=IMAGENET_STD)

    def _folder_files(self, data_root, folder: str) -> tuple[list[str], np.ndarray]:
        base = data_root / folder
        if not base.is_dir():
            raise self.missing(data_root, f"missing folder {base}")
        files, labels = [], []
        for wnid in sorted(WNID_TO_CLASS):
            d = base / wnid
            if not d.is_dir():
                raise self.missing(data_root, f"missing class folder {d}")
            names = sorted(p.name for p in d.iterdir() if p.suffix.lower() in IMG_EXTENSIONS)
            files += [f"{folder}/{wnid}/{n}" for n in names]
            labels += [WNID_TO_CLASS[wnid]] * len(names)
        return files, np.array(labels, dtype=np.int64)

    def image_lists(self, params: ImageNet9Params, data_root) -> dict[str, ImageList]:
        out = {}
        files, y = self._folder_files(data_root, "imagenet/train")
        out["train"] = ImageList(files, y, y.copy(), np.ones(len(y), bool))
        files, y = self._folder_files(data_root, "imagenet/val")
        if params.clusters:
            (path,) = self.require(data_root, CLUSTERS_FILE)
            with open(path, newline="") as fh:
                table = {row["path"]: [int(row[f"cluster{k}"]) for k in (1, 2, 3)] for row in csv.DictReader(fh)}
            keys = [f.split("/", 2)[2] for f in files]
            absent = [k for k in keys if k not in table]
            if absent:
                raise ValueError(f"imagenet9: {len(absent)} val image(s) have no cluster in {path}, e.g. {absent[:3]}")
            c = np.array([table[k] for k in keys], dtype=np.int64).reshape(-1, 3)
            out["val"] = ImageList(files, y, c[:, 0], np.ones(len(y), bool),
                                   {"cluster1": c[:, 0], "cluster2": c[:, 1], "cluster3": c[:, 2]})
        else:
            out["val"] = ImageList(files, y, y.copy(), np.ones(len(y), bool))
        files, y = self._folder_files(data_root, "imagenet-a")
        out["test"] = ImageList(files, y, y.copy(), np.zeros(len(y), bool))
        return out
