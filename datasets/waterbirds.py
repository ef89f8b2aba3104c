"""Waterbirds (Sagawa et al., "Distributionally Robust Neural Networks for Group Shifts", ICLR
2020): CUB bird photographs pasted onto Places backgrounds; the label is waterbird vs landbird, the
bias attribute the background (water vs land).

Read from the official release folder ``waterbird_complete95_forest2water2/`` (group_DRO
dataset_scripts/generate_waterbirds.py): ``metadata.csv`` with columns ``img_id, img_filename, y,
split, place, place_filename`` — ``y`` 1 = waterbird, ``place`` 1 = water, ``split`` 0 train /
1 val / 2 test — and the images under the same folder. In train 95 % of the birds are on their own
kind of background ("complete95"); val and test are balanced in background within each class.
Groups are (y, place): b = ``place``, aligned when place == y. Every number a paper calls
"Waterbirds" uses this variant; ``variant`` names the folder, so it is part of the run spec and
the dataset fingerprint covers the metadata's labels and the decoded images.

Inputs: resize (shorter side to 256 for a 224 input) and centre crop, ImageNet normalisation, no
training augmentation (group_DRO data/cub_dataset.py ``get_transform_cub`` with
``augment_data=False``, the official default); ResNet-18 here (the paper uses an ImageNet-pretrained
ResNet-50: run with ``--pretrained imagenet``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmark import BiasHead, DatasetInfo, hp, register_dataset
from benchmark.images import IMAGENET_MEAN, IMAGENET_STD, ImageFamily, ImageList, check_image_params

SPLITS = {"train": 0, "val": 1, "test": 2}  # metadata.csv "split" codes
COLUMNS = ("img_filename", "y", "split", "place")
LAYOUT = """  <data root>/waterbirds/waterbird_complete95_forest2water2/metadata.csv
      (columns img_id,img_filename,y,split,place,place_filename; split 0/1/2 = train/val/test)
  <data root>/waterbirds/waterbird_complete95_forest2water2/<img_filename> for every row
      (e.g. 001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg)"""


@dataclass(frozen=True)
class WaterbirdsParams:
    variant: str = hp("waterbird_complete95_forest2water2", "Sagawa et al. 2020 (official release folder)",
                      "release folder under <data root>/waterbirds/")
    image_size: int = hp(224, "group_DRO data/cub_dataset.py get_transform_cub (224×224)", "square input size")
    crop_scale: tuple[float, float] = hp((1.0, 1.0), "group_DRO get_transform_cub (augment_data=False: no crop)",
                                         "train-time crop area range")
    hflip: bool = hp(False, "group_DRO get_transform_cub (augment_data=False: no flip)", "train-time horizontal flip")

    def check(self):
        check_image_params(self)


@register_dataset("waterbirds")
class Waterbirds(ImageFamily):
    """Waterbirds: waterbird/landbird × water/land background, 95 % aligned in train (Sagawa et al. 2020)."""

    Params = WaterbirdsParams
    version = "1"
    layout = LAYOUT
    resize_mode = "center"
    source = ("the official tarball waterbird_complete95_forest2water2.tar.gz linked from "
              "github.com/kohpangwei/group_DRO (README, 'Waterbirds'); unpack it into <data root>/waterbirds/")

    def info(self, params) -> DatasetInfo:
        s = int(params.image_size)
        return DatasetInfo(name=self.name, input_shape=(3, s, s), num_classes=2, num_bias_classes=2,
                           bias_heads=(BiasHead("place", "b", 2),), backbone="resnet18",
                           mean=IMAGENET_MEAN, std=IMAGENET_STD)

    def image_lists(self, params: WaterbirdsParams, data_root) -> dict[str, ImageList]:
        import pandas as pd

        folder = f"waterbirds/{params.variant}"
        (meta_path,) = self.require(data_root, f"{folder}/metadata.csv")
        table = pd.read_csv(meta_path)
        missing = [c for c in COLUMNS if c not in table.columns]
        if missing:
            raise self.missing(data_root, f"{meta_path} lacks column(s) {missing}; is it the official metadata.csv?")
        out = {}
        for name, code in SPLITS.items():
            rows = table[table["split"] == code]
            y = rows["y"].to_numpy(dtype=np.int64)
            b = rows["place"].to_numpy(dtype=np.int64)
            out[name] = ImageList([f"{folder}/{f}" for f in rows["img_filename"]], y, b, b == y)
        return out
