"""Real-image benchmarks: the decode-once cache, device augmentation, ResNet-18 and the six loaders.

BAR runs on the real images in the data root; the other families are checked on fixtures the tests
write in each release's on-disk format (tiny JPEG/PNG files, list files, an imdb.mat written with
scipy.io.savemat, a CelebA attribute file), including the exact bias construction.
"""
from __future__ import annotations

import gzip
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark import make_spec
from benchmark.cli import main as cli_main
from benchmark.data import DataRootError, DatasetInfo, resolve_data_root
from benchmark.engine import run
from benchmark.images import cached_images, random_resized_crop_flip
from benchmark.nets import build_backbone
from benchmark.registry import DATASETS
from benchmark.store import ResultStore

DATA_ROOT = resolve_data_root()
HAS_BAR = (DATA_ROOT / "BAR" / "metadata.json").is_file()
needs_bar = pytest.mark.skipif(not HAS_BAR, reason="BAR not in the data root")


def write_image(path: Path, color, size=(20, 16), mode="RGB", fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new(mode, size, color)
    img.save(path, format=fmt or ("PNG" if path.suffix == ".png" else "JPEG"))


def build(name, root, tmp_path, **params):
    return DATASETS.get(name)().build(params, data_root=root, cache_dir=tmp_path / "cache")


# ----------------------------------------------------------------------------------------------
# The cache


def test_cache_decodes_once_and_leaves_nothing_half_written(tmp_path):
    root = tmp_path / "data"
    files = []
    for i in range(6):
        rel = f"imgs/{i}.jpg" if i % 2 else f"imgs/{i}.png"
        write_image(root / rel, (40 * i, 255 - 40 * i, 128), size=(30 + i, 20))
        files.append(rel)
    write_image(root / "imgs/rgba.png", (255, 0, 0, 0), mode="RGBA")  # fully transparent -> white
    files.append("imgs/rgba.png")
    x, meta = cached_images(root, files, 8, "fam", tmp_path / "cache", workers=0)
    assert x.shape == (7, 3, 8, 8) and x.dtype == torch.uint8
    assert abs(float(x[3, 0].float().mean()) - 120) <= 3 and abs(float(x[3, 1].float().mean()) - 135) <= 3
    assert int(x[6].min()) == 255  # transparent background composited onto white
    folder = tmp_path / "cache" / "fam"
    assert sorted(p.suffix for p in folder.iterdir()) == [".json", ".u8"]
    sidecar = json.loads((folder / f"{meta['key']}.json").read_text())
    assert sidecar["shape"] == [7, 3, 8, 8] and sidecar["sha256"] == meta["sha256"]
    # a second call is a cache hit (same key, same bytes), decoding in two processes gives the same bytes
    x2, meta2 = cached_images(root, files, 8, "fam", tmp_path / "cache", workers=0)
    assert meta2 == meta and torch.equal(x, x2)
    x2[0] = 0  # the tensor is a copy-on-write map: writing to it never reaches the cache file
    assert torch.equal(cached_images(root, files, 8, "fam", tmp_path / "cache")[0], x)
    x3, meta3 = cached_images(root, files, 8, "fam", tmp_path / "cache2", workers=2)
    assert torch.equal(x, x3) and meta3["sha256"] == meta["sha256"]
    # a changed file changes the key
    write_image(root / files[0], (1, 2, 3), size=(31, 21))
    os.utime(root / files[0], (1e9, 1e9))
    _, meta4 = cached_images(root, files, 8, "fam", tmp_path / "cache", workers=0)
    assert meta4["key"] != meta["key"]
    # a file that fails to decode: an error, and no array, sidecar or temporary file is left
    (root / "imgs/broken.jpg").write_bytes(b"not an image")
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(Exception):
        cached_images(root, files + ["imgs/broken.jpg"], 8, "fam", tmp_path / "cache", workers=0)
    assert sorted(p.name for p in folder.iterdir()) == before
    with pytest.raises(DataRootError, match="missing"):
        cached_images(root, ["imgs/nope.jpg"], 8, "fam", tmp_path / "cache")


def test_augmentation_is_per_sample_vectorised_and_seeded():
    x = torch.rand(16, 3, 12, 12)
    flip = random_resized_crop_flip((1.0, 1.0), flip=True)
    torch.manual_seed(0)
    out = flip(x)
    same = [(torch.equal(o, a), torch.equal(o, a.flip(-1))) for o, a in zip(out, x)]
    assert all(s or f for s, f in same) and 0 < sum(f for _, f in same) < 16
    aug = random_resized_crop_flip((0.2, 0.5))
    torch.manual_seed(1)
    a = aug(x)
    torch.manual_seed(1)
    b = aug(x)
    assert a.shape == x.shape and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1 and not torch.allclose(a, x)
    # one image repeated: per-sample crops differ from each other
    rep = aug(x[:1].repeat(8, 1, 1, 1))
    assert len({round(float(r.sum()), 3) for r in rep}) > 1
    assert random_resized_crop_flip((1.0, 1.0), flip=False) is None


# ----------------------------------------------------------------------------------------------
# ResNet-18


def _info(size=64, classes=3):
    return DatasetInfo("t", (3, size, size), classes, 2, (), "resnet18", (0.5,) * 3, (0.25,) * 3)


def test_resnet18_lnl_split_and_pretrained_file(tmp_path):
    net = build_backbone(_info())
    x = torch.randn(2, 3, 64, 64)
    feat = net.f(x)
    assert tuple(feat.shape[1:]) == net.feat_shape == (256, 4, 4)
    assert len(net.g[0]) == 2 and net.g[0][0].conv1.in_channels == 256  # layer4: two residual blocks
    assert net(x).shape == (2, 3)
    # weights from a local file: all but fc are loaded
    from torchvision.models import resnet18
    tv = resnet18(weights=None)
    torch.nn.init.constant_(tv.conv1.weight, 0.123)
    path = tmp_path / "w.pth"
    torch.save(tv.state_dict(), path)
    info = _info()
    info.backbone_options = {"pretrained": str(path)}
    pre = build_backbone(info)
    assert torch.all(pre.f[0].weight == 0.123) and pre.pretrained_from == str(path)
    assert pre.g[-1].weight.shape == (3, 512)
    info.backbone_options = {"pretrained": str(tmp_path / "missing.pth")}
    with pytest.raises(DataRootError, match="does not exist"):
        build_backbone(info)
    # the spec records the weights; a spec without them keeps its old canonical form
    plain = make_spec("vanilla", "bar")
    with_w = make_spec("vanilla", "bar", pretrained=str(path))
    assert "pretrained" not in plain.to_dict() and with_w.to_dict()["pretrained"] == str(path)
    assert plain.run_id != with_w.run_id


# ----------------------------------------------------------------------------------------------
# BAR (real data)


@pytest.fixture(scope="session")
def bar_home(tmp_path_factory):
    """One working folder for the BAR tests, so the 32×32 image cache is decoded once."""
    return tmp_path_factory.mktemp("bar_home")


@needs_bar
def test_bar_real_splits(bar_home):
    ds = DATASETS.get("bar")().build({"image_size": 32}, data_root=DATA_ROOT, cache_dir=bar_home / "cache")
    meta = json.loads((DATA_ROOT / "BAR/metadata.json").read_text())
    assert sum(v["train"] for v in meta.values()) == 1941 and DATASETS.get("bar")().check_data(DATA_ROOT)
    tr, val, te = ds["train"], ds["val"], ds["test"]
    assert (len(tr), len(val), len(te)) == (1746, 195, 654)  # 10% of train held out, stratified by class
    assert (tr.y.bincount() + val.y.bincount()).tolist() == [326, 520, 163, 336, 317, 279]  # BAR README stats
    assert te.y.bincount().tolist() == [105, 159, 42, 132, 85, 131]
    assert torch.equal(te.b, te.y) and tr.aligned.all() and val.aligned.all() and not te.aligned.any()
    assert ds.info.input_shape == (3, 32, 32) and ds.info.backbone == "resnet18" and ds.info.bias_heads == ()
    assert tr.x.shape == (1746, 3, 32, 32) and tr.x.dtype == torch.uint8 and 20 < float(tr.x[:50].float().mean()) < 235


@needs_bar
def test_bar_end_to_end_cli_with_pretrained_flag(tmp_path, bar_home):
    from torchvision.models import resnet18
    weights = tmp_path / "resnet18.pth"
    torch.save(resnet18(weights=None).state_dict(), weights)
    results = tmp_path / "runs"
    rc = cli_main(["run", "--method", "vanilla", "--dataset", "bar", "--image-size", "32", "--epochs", "1",
                   "--max-train", "48", "--set", "batch_size=16", "--pretrained", str(weights),
                   "--results-dir", str(results), "--home", str(bar_home), "--no-mlflow", "--no-progress",
                   "--data-root", str(DATA_ROOT)])
    assert rc == 0
    (rec,) = ResultStore(results).records()
    assert rec["spec"]["pretrained"] == str(weights) and rec["spec"]["dataset"] == "bar"
    test = rec["final"]["test"]
    assert test["n"] == 654 and len(test["group_acc"]) == 6
    per_class = [test["group_acc"][c][c] for c in range(6)]  # b = y: the diagonal is per-class accuracy
    assert all(0.0 <= a <= 1.0 for a in per_class)
    assert abs(sum(a * n for a, n in zip(per_class, [105, 159, 42, 132, 85, 131])) / 654 - test["acc"]) < 1e-6


# ----------------------------------------------------------------------------------------------
# Missing data


@pytest.mark.parametrize("name,needle", [("bar", "BAR/metadata.json"), ("dogs_cats", "list_bright.txt"),
                                         ("imdb_face", "imdb.mat"), ("celeba", "list_eval_partition.txt"),
                                         ("cartoon", "cs*.csv"), ("imagenet9", "imagenet/train")])
def test_missing_data_root_names_dataset_layout_and_source(tmp_path, name, needle):
    with pytest.raises(DataRootError) as e:
        build(name, tmp_path / "empty", tmp_path)
    msg = str(e.value)
    assert msg.startswith(f"{name}:") and "Expected layout" in msg and needle in msg and "Where to get it" in msg
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.u8"))
    with pytest.raises(DataRootError, match=name):
        DATASETS.get(name)().check_data(tmp_path / "empty")  # the planner's cheap presence check


# ----------------------------------------------------------------------------------------------
# Dogs and Cats


def test_dogs_cats_tb1_tb2_and_oracle_labels(tmp_path):
    root = tmp_path / "data"
    lists = root / "lnl_splits/dogs_and_cats"
    lists.mkdir(parents=True)
    bright = ["cat.1.jpg", "cat.2.jpg", "dog.1.jpg", "dog.2.jpg", "dog.3.jpg"]
    dark = ["cat.3.jpg", "cat.4.jpg", "cat.5.jpg", "dog.4.jpg"]
    (lists / "list_bright.txt").write_text("\n".join(bright) + "\n")
    (lists / "list_dark.txt").write_text("\n".join(dark) + "\n")
    for f in bright + dark + ["cat.99.jpg"]:  # cat.99 is in neither list: unused
        write_image(root / "dogs_cats/train" / f, (230, 230, 230) if f in bright else (20, 20, 20))
    oracle = {f"./dataset/test1/{i}.jpg": np.int64(i % 2) for i in range(1, 6)}
    np.save(lists / "test_result.npy", oracle, allow_pickle=True)
    for i in range(1, 6):
        write_image(root / f"dogs_cats/test1/{i}.jpg", (100, 100, 100))
    ds = build("dogs_cats", root, tmp_path, image_size=16)
    tr, tb2, te = ds["train"], ds["tb2"], ds["test"]
    # TB1 = dark cats + bright dogs only: (cat, dark) or (dog, bright)
    assert len(tr) == 3 + 3 and set(zip(tr.y.tolist(), tr.b.tolist())) == {(0, 0), (1, 1)}
    assert len(tb2) == 2 + 1 and set(zip(tb2.y.tolist(), tb2.b.tolist())) == {(0, 1), (1, 0)}
    assert tr.aligned.all() and not tb2.aligned.any()
    assert float(tr.x[tr.b == 1].float().mean()) > 200 > 50 > float(tr.x[tr.b == 0].float().mean())
    assert te.y.tolist() == [1, 0, 1, 0, 1] and len(te) == 5
    ds2 = build("dogs_cats", root, tmp_path, image_size=16, train_split="tb2")
    assert len(ds2["train"]) == 3 and len(ds2["tb1"]) == 6 and ds2["train"].aligned.all()
    assert ds2.info.bias_heads[0].name == "brightness"
    # only the numpy globals the file needs are unpickled
    from benchmark_datasets.dogs_cats import load_oracle_labels

    class Evil:
        def __reduce__(self):
            return (shutil.rmtree, (str(tmp_path / "victim"),))
    (tmp_path / "victim").mkdir()
    np.save(tmp_path / "evil.npy", np.array(Evil(), dtype=object), allow_pickle=True)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_oracle_labels(tmp_path / "evil.npy")
    assert (tmp_path / "victim").is_dir()


@needs_bar
def test_dogs_cats_oracle_file_from_the_official_repo():
    from benchmark_datasets.dogs_cats import load_oracle_labels
    labels = load_oracle_labels(DATA_ROOT / "lnl_splits/dogs_and_cats/test_result.npy")
    assert len(labels) == 12500 and set(labels.values()) == {0, 1} and "1.jpg" in labels


def test_lnl_runs_unchanged_on_resnet18(tmp_path):
    """A method from another issue (LNL, with its bias head) trains on ResNet-18 features."""
    root = tmp_path / "data"
    lists = root / "lnl_splits/dogs_and_cats"
    lists.mkdir(parents=True)
    (lists / "list_bright.txt").write_text("cat.1.jpg\ndog.1.jpg\ndog.2.jpg\n")
    (lists / "list_dark.txt").write_text("cat.2.jpg\ncat.3.jpg\ndog.3.jpg\n")
    for f in ("cat.1", "cat.2", "cat.3", "dog.1", "dog.2", "dog.3"):
        write_image(root / f"dogs_cats/train/{f}.jpg", (120, 60, 30))
    np.save(lists / "test_result.npy", {"./dataset/test1/1.jpg": np.int64(0), "./dataset/test1/2.jpg": np.int64(1)},
            allow_pickle=True)
    for i in (1, 2):
        write_image(root / f"dogs_cats/test1/{i}.jpg", (10, 200, 10))
    spec = make_spec("lnl", "dogs_cats", dataset_params={"image_size": 32}, hparams={"batch_size": 2}, epochs=1)
    rec = run(spec, store=ResultStore(tmp_path / "runs"), data_root=root, home=tmp_path / "home", progress=False,
              device="cpu").record
    assert np.isfinite(rec["history"][0]["train.loss"]) and "bias_head_acc.brightness" in rec["final"]["tb2"]


# ----------------------------------------------------------------------------------------------
# IMDB face


def _write_imdb(root: Path):
    from scipy.io import savemat
    rows = []  # (birth year, photo year, gender, face_score, second_face_score)
    for gender in (0.0, 1.0):
        for age in (15, 22, 27, 29, 31, 35, 38, 40, 44, 52, 61, 75):
            for k in range(3):
                rows.append((1950 + k, 1950 + k + age, gender, 3.0, np.nan))
    rows += [(1960, 1990, np.nan, 3.0, np.nan),   # unknown gender
             (1960, 1990, 0.0, -np.inf, np.nan),   # no face
             (1960, 1990, 0.0, 3.0, 2.5),          # a second face
             (1960, 1990, 1.0, 0.5, np.nan),       # low face score
             (1990, 1980, 1.0, 3.0, np.nan)]       # photo before birth
    n = len(rows)
    dob = np.array([719529 + (np.datetime64(f"{r[0]}-06-15") - np.datetime64("1970-01-01")).astype(int) + 0.0
                    for r in rows])
    paths = np.empty((1, n), dtype=object)
    for i in range(n):
        paths[0, i] = f"{i % 3:02d}/nm{i:07d}_rm1_{rows[i][0]}-6-15_{rows[i][1]}.jpg"
        write_image(root / "imdb_crop" / paths[0, i], (10 * (i % 20), 50, 90))
    imdb = {"dob": dob[None], "photo_taken": np.array([[r[1] for r in rows]], float),
            "full_path": paths, "gender": np.array([[r[2] for r in rows]]),
            "face_score": np.array([[r[3] for r in rows]]), "second_face_score": np.array([[r[4] for r in rows]]),
            "name": paths}
    savemat(root / "imdb_crop/imdb.mat", {"imdb": imdb})
    return n


def test_imdb_face_eb1_eb2_and_balanced_test(tmp_path):
    from benchmark_datasets.imdb_face import age_bin
    root = tmp_path / "data"
    _write_imdb(root)
    ds = build("imdb_face", root, tmp_path, image_size=8, test_fraction=0.34)
    tr, eb2, te = ds["train"], ds["eb2"], ds["test"]
    age, g = tr.attrs["age"], tr.attrs["gender"]
    assert bool((((g == 0) & (age <= 29)) | ((g == 1) & (age >= 40))).all())   # EB1: women <= 29, men >= 40
    age2, g2 = eb2.attrs["age"], eb2.attrs["gender"]
    assert bool((((g2 == 0) & (age2 >= 40)) | ((g2 == 1) & (age2 <= 29))).all())  # EB2: women >= 40, men <= 29
    assert not bool(((age >= 30) & (age <= 39)).any()) and not bool(((age2 >= 30) & (age2 <= 39)).any())
    # the filtered-out entries are nowhere; splits are disjoint
    assert len(tr) + len(eb2) + len(te) < 72 and len(te) > 0
    # balanced test: as many women as men in every age bin
    tb = torch.as_tensor(age_bin(te.attrs["age"].numpy()))
    for b in tb.unique():
        sel = tb == b
        assert int((te.attrs["gender"][sel] == 0).sum()) == int((te.attrs["gender"][sel] == 1).sum())
    assert torch.equal(tr.y, g) and torch.equal(tr.b, torch.as_tensor(age_bin(age.numpy())))
    assert tr.aligned.all() and not eb2.aligned.any()
    assert ds.info.num_classes == 2 and ds.info.bias_heads[0].num_classes == 12
    ds_age = build("imdb_face", root, tmp_path, image_size=8, test_fraction=0.34, task="age", train_split="eb2")
    assert torch.equal(ds_age["train"].b, ds_age["train"].attrs["gender"]) and ds_age.info.num_classes == 12
    assert len(ds_age["train"]) == len(eb2) and len(ds_age["eb1"]) == len(tr)


# ----------------------------------------------------------------------------------------------
# CelebA


ATTRS = ("5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
         "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
         "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
         "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
         "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young").split()


def test_celeba_partition_attributes_and_alignment(tmp_path):
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    n = 40
    makeup = np.where(np.arange(n) % 2 == 0, 1, -1)
    male = np.where(makeup == 1, -1, 1)
    male[[0, 1, 4]] = 1  # three men with heavy makeup: bias-conflicting
    lines = [str(n), " ".join(ATTRS)]
    for i in range(n):
        row = rng.choice([-1, 1], size=40)
        row[ATTRS.index("Heavy_Makeup")], row[ATTRS.index("Male")] = makeup[i], male[i]
        lines.append(f"{i + 1:06d}.jpg " + " ".join(f"{v:2d}" for v in row))
        write_image(root / f"celeba/img_align_celeba/{i + 1:06d}.jpg", (200, 150, 120), size=(18, 22))
    (root / "celeba").mkdir(exist_ok=True)
    with gzip.open(root / "celeba/list_attr_celeba.txt.gz", "wt") as fh:
        fh.write("\r\n".join(lines) + "\r\n")
    part = [0] * 30 + [1] * 4 + [2] * 6
    (root / "celeba/list_eval_partition.txt").write_text("".join(f"{i + 1:06d}.jpg {p}\r\n" for i, p in enumerate(part)))
    ds = build("celeba", root, tmp_path, image_size=16)
    assert [len(ds[s]) for s in ("train", "val", "test")] == [30, 4, 6]
    tr = ds["train"]
    assert torch.equal(tr.y, torch.as_tensor(makeup[:30] > 0).long()) and torch.equal(tr.b, torch.as_tensor(male[:30] > 0).long())
    # heavy makeup <-> female and no makeup <-> male are aligned; the three made-up men are not
    assert sorted(torch.nonzero(~tr.aligned).flatten().tolist()) == [0, 4]  # index 1 has no makeup (odd) -> aligned man
    ds2 = build("celeba", root, tmp_path, image_size=16, target="Blond_Hair")
    assert ds2.info.bias_heads[0].name == "male"
    with pytest.raises(ValueError, match="unknown attribute"):
        build("celeba", root, tmp_path, image_size=16, target="Purple_Hair")


def test_celeba_real_annotations_give_pgd_majority_minority_sizes():
    attr = DATA_ROOT / "celeba/list_attr_celeba.txt.gz"
    if not attr.is_file():
        pytest.skip("CelebA annotations not in the data root")
    from benchmark_datasets.celeba import aligned_bias, read_attributes, read_partition
    files, names, a = read_attributes(attr)
    pf, part = read_partition(DATA_ROOT / "celeba/list_eval_partition.txt")
    assert np.array_equal(files, pf) and (part == 0).sum() == 162770
    tr = part == 0
    y = (a[tr, names.index("Heavy_Makeup")] > 0).astype(int)
    b = (a[tr, names.index("Male")] > 0).astype(int)
    aligned = b == aligned_bias(y, b)[y]
    assert (aligned.sum(), (~aligned).sum()) == (130410, 32360)  # PGD App. B.2


# ----------------------------------------------------------------------------------------------
# Cartoon


def test_cartoon_merged_classes_and_bias_ratio(tmp_path):
    root = tmp_path / "data"
    folder = root / "cartoonset/cartoonset10k"
    i = 0
    for hair in range(10):
        for face in range(11):
            copies = 12 if hair // 2 == face // 2 and hair < 8 and face < 8 else 1
            for _ in range(copies):
                name = f"cs{i:06d}"
                write_image(folder / f"{name}.png", (hair * 25, face * 20, 0, 255), mode="RGBA", size=(24, 24))
                (folder / f"{name}.csv").write_text(f'"eye_angle", 1, 3\n"hair_color", {hair}, 10\n'
                                                    f'"face_color", {face}, 11\n"glasses", 11, 12\n')
                i += 1
    ds = build("cartoon", root, tmp_path, image_size=8, bias_ratio=0.9, test_fraction=0.25)
    tr, val, te = ds["train"], ds["val"], ds["test"]
    # used variants (hair, face < 8): 16 aligned combinations x 12 copies + 48 conflicting ones = 240 images
    assert set(tr.y.tolist()) <= {0, 1, 2, 3} and set(tr.b.tolist()) <= {0, 1, 2, 3}
    n_al = int(tr.aligned.sum() + val.aligned.sum())
    n_conf = len(tr) + len(val) - n_al
    assert n_conf == round(n_al * 0.1 / 0.9) and torch.equal(tr.aligned, tr.y == tr.b)
    assert len(val) == round(0.1 * (len(tr) + len(val)))
    assert len(te) == round(0.25 * 240) and len(tr) + len(val) + len(te) < 240
    assert int(te.aligned.sum()) > 0 and int((~te.aligned).sum()) > 0


# ----------------------------------------------------------------------------------------------
# ImageNet-9 / ImageNet-A


def test_imagenet9_classes_clusters_and_imagenet_a(tmp_path):
    from benchmark_datasets.imagenet9 import WNID_TO_CLASS
    root = tmp_path / "data"
    rows = ["path,category,cluster1,cluster2,cluster3"]
    for k, wnid in enumerate(sorted(WNID_TO_CLASS)):
        write_image(root / f"imagenet/train/{wnid}/{wnid}_1.JPEG", (k, 0, 0))
        write_image(root / f"imagenet/train/{wnid}/{wnid}_2.JPEG", (k, 5, 0))
        write_image(root / f"imagenet/val/{wnid}/ILSVRC2012_val_{k:08d}.JPEG", (0, k, 0))
        write_image(root / f"imagenet-a/{wnid}/{k}.jpg", (0, 0, k))
        rows.append(f"{wnid}/ILSVRC2012_val_{k:08d}.JPEG,x,{k % 9},{(k + 1) % 9},{(k + 2) % 9}")
    write_image(root / "imagenet/train/n09999999/other.JPEG", (1, 1, 1))  # not one of the 42 classes
    with pytest.raises(DataRootError, match="9class_imagenet_val.csv"):
        build("imagenet9", root, tmp_path, image_size=8)
    (root / "imagenet9").mkdir()
    (root / "imagenet9/9class_imagenet_val.csv").write_text("\n".join(rows) + "\n")
    ds = build("imagenet9", root, tmp_path, image_size=8)
    assert (len(ds["train"]), len(ds["val"]), len(ds["test"])) == (84, 42, 42)
    counts = ds["val"].y.bincount(minlength=9).tolist()
    assert counts == [5, 5, 3, 5, 5, 5, 5, 4, 5]  # dog, cat, frog, turtle, bird, monkey, fish, crab, insect
    assert ds["val"].b.tolist() == [k % 9 for k in range(42)] and "cluster3" in ds["val"].attrs
    assert not ds["test"].aligned.any() and ds["train"].aligned.all()
    assert ds.info.num_classes == 9
