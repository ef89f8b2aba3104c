"""Subpopulation datasets in their release formats: Waterbirds from a generated fixture in the official
``metadata.csv`` layout, CelebA Blond_Hair × Male on the staged official annotation files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.cli import main
from benchmark.data import DataRootError, resolve_data_root
from benchmark.registry import DATASETS

FOLDER = "waterbirds/waterbird_complete95_forest2water2"


def _write_waterbirds(root: Path, flip_first_label: bool = False) -> None:
    rows = ["img_id,img_filename,y,split,place,place_filename"]
    # per split: (y, place) pairs; train has one conflicting sample of each class
    spec = {0: [(0, 0)] * 4 + [(1, 1)] * 4 + [(0, 1), (1, 0)], 1: [(0, 0), (0, 1), (1, 0), (1, 1)],
            2: [(0, 0), (0, 1), (1, 0), (1, 1)] * 2}
    i = 0
    for split, pairs in spec.items():
        for y, place in pairs:
            i += 1
            if flip_first_label and i == 1:
                y = 1 - y
            name = f"{'017.Cardinal' if y == 0 else '086.Pacific_Loon'}/bird_{i:04d}.jpg"
            path = root / FOLDER / name
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (24, 20), (40 * place, 100, 30 * y + 10 * i % 200)).save(path, format="JPEG")
            rows.append(f"{i},{name},{y},{split},{place},/x/{place}.jpg")
    (root / FOLDER / "metadata.csv").write_text("\n".join(rows) + "\n")


def test_waterbirds_reads_the_official_metadata_layout(tmp_path):
    root = tmp_path / "data"
    _write_waterbirds(root)
    ds = DATASETS.get("waterbirds")().build({"image_size": 16}, data_root=root, cache_dir=tmp_path / "cache")
    assert [len(ds[s]) for s in ("train", "val", "test")] == [10, 4, 8]
    tr = ds["train"]
    assert tr.x.shape == (10, 3, 16, 16) and tr.x.dtype == torch.uint8
    assert tr.y.tolist() == [0] * 4 + [1] * 4 + [0, 1] and tr.b.tolist() == [0] * 4 + [1] * 4 + [1, 0]
    assert (~tr.aligned).nonzero().flatten().tolist() == [8, 9]  # bird on the other background
    assert ds.info.num_classes == ds.info.num_bias_classes == 2 and ds.info.bias_heads[0].name == "place"
    changed = tmp_path / "changed"
    _write_waterbirds(changed, flip_first_label=True)
    other = DATASETS.get("waterbirds")().build({"image_size": 16}, data_root=changed, cache_dir=tmp_path / "cache")
    assert other.fingerprint != ds.fingerprint  # the labels are part of the fingerprint


def test_waterbirds_absent_says_what_to_put_where(tmp_path, capsys):
    with pytest.raises(DataRootError, match="metadata.csv") as err:
        DATASETS.get("waterbirds")().build({}, data_root=tmp_path, cache_dir=tmp_path / "cache")
    assert "waterbird_complete95_forest2water2" in str(err.value) and "group_DRO" in str(err.value)
    code = main(["run", "--method", "vanilla", "--dataset", "waterbirds", "--data-root", str(tmp_path),
                 "--results-dir", str(tmp_path / "runs"), "--no-mlflow", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 2 and captured.err.startswith("error: waterbirds:") and "Traceback" not in captured.err
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").glob("*.json"))


def test_celeba_blond_hair_male_standard_split_groups():
    """The Blond_Hair × Male groups of the official training partition: Sagawa et al. 2020's group
    sizes (71,629 / 66,874 / 22,880 / 1,387 for non-blond women / non-blond men / blond women / blond men)."""
    root = resolve_data_root()
    attr = root / "celeba/list_attr_celeba.txt.gz"
    if not attr.is_file():
        pytest.skip("CelebA annotation files not in the data root")
    from benchmark_datasets.celeba import aligned_bias, read_attributes, read_partition
    files, names, a = read_attributes(attr)
    _, part = read_partition(root / "celeba/list_eval_partition.txt")
    tr = part == 0
    y = (a[tr, names.index("Blond_Hair")] > 0).astype(np.int64)
    b = (a[tr, names.index("Male")] > 0).astype(np.int64)
    counts = np.bincount(y * 2 + b, minlength=4).tolist()
    assert counts == [71629, 66874, 22880, 1387]
    assert aligned_bias(y, b).tolist() == [1, 0]  # not blond ↔ male, blond ↔ female are aligned
