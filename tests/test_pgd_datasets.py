"""The PGD paper's MNIST benchmarks and the LfF Colored MNIST, built from the real MNIST and
Fashion-MNIST files: exact bias construction, splits, watermark placement, label noise through a
real run, the batched augmentation against torchvision, and the MNIST backbones."""
from __future__ import annotations

import math
from importlib import metadata

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from benchmark import DATASETS, make_spec
from benchmark.data import DatasetInfo, load_mnist
from benchmark.engine import _fixed_subset, run
from benchmark.nets import BACKBONES, build_backbone
from benchmark.store import ResultStore
from benchmark_datasets.colored_mnist import PALETTE
from benchmark_datasets.colored_mnist_lff import LFF_COLORS, SEVERITY_STD
from benchmark_datasets.colored_mnist_ratio import (adjust_hue, adjust_saturation, assign_bias, color_std,
                                                    pgd_augment, sample_colors)
from benchmark_datasets.watermarked_mnist import paste_max, upscale2x


@pytest.fixture(scope="session")
def mnist(data_root):
    return load_mnist(data_root)


@pytest.fixture(scope="session")
def cm_ratio(bench_home, data_root):
    return DATASETS.get("colored_mnist_ratio")().build({}, data_root, bench_home / "cache")


@pytest.fixture(scope="session")
def wm(bench_home, data_root):
    return DATASETS.get("watermarked_mnist")().build({}, data_root, bench_home / "cache")


@pytest.fixture(scope="session")
def cm_lff(bench_home, data_root):
    return DATASETS.get("colored_mnist_lff")().build({}, data_root, bench_home / "cache")


def brightest_rgb(x: torch.Tensor) -> np.ndarray:
    """RGB of each image's brightest pixel (the digit's colour at full grey level), N×3 in 0..255."""
    flat = x.flatten(2).float()                      # N×3×P
    pick = flat.sum(1).argmax(1)                     # N
    return flat.gather(2, pick[:, None, None].expand(-1, 3, 1))[:, :, 0].numpy()


# ----------------------------------------------------------------------------- colored_mnist_ratio

def test_ratio_splits_and_exact_bias_ratio(cm_ratio, mnist):
    tr, val, te = cm_ratio["train"], cm_ratio["val"], cm_ratio["test"]
    n_mnist = len(mnist["train"][1])
    assert len(val) == round(0.1 * n_mnist) and len(tr) + len(val) == n_mnist
    # Official split: last 10 % of MNIST train is the validation set, in MNIST order.
    assert torch.equal(val.y, torch.from_numpy(mnist["train"][1][-len(val):]))
    for split in (tr, val):
        assert abs(split.aligned.float().mean().item() - 0.99) <= 1.0 / len(split)
        assert int((~split.aligned).sum()) == round(0.01 * len(split))
    assert abs((~te.aligned).float().mean().item() - 0.9) <= 1.0 / len(te)
    for split in (tr, val, te):
        assert torch.equal(split.aligned, split.b == split.y)


def test_ratio_minority_colours_are_other_classes_uniformly(cm_ratio):
    te = cm_ratio["test"]
    conflicting = ~te.aligned
    assert (te.b[conflicting] != te.y[conflicting]).all()
    # Each class's minority spreads over the nine other colours (uniform: 1/9 each).
    counts = torch.zeros(10, 10)
    counts.index_put_((te.y[conflicting], te.b[conflicting]), torch.ones(int(conflicting.sum())), accumulate=True)
    share = counts / counts.sum(1, keepdim=True)
    off = share[~torch.eye(10, dtype=torch.bool)]
    assert off.min() > 0.06 and off.max() < 0.17
    # The pixels carry the bias colour: brightest pixel ≈ 255·palette[b] (std √1e-4 = 0.01 → ±~8).
    tr = cm_ratio["train"]
    idx = torch.cat([torch.nonzero(~tr.aligned)[:200, 0], torch.arange(200)])
    rgb = brightest_rgb(tr.x[idx])
    expect = 255 * PALETTE[tr.b[idx].numpy()]
    assert np.abs(rgb - expect).max() < 12
    wrong = 255 * PALETTE[tr.y[idx].numpy()]
    minority = ~tr.aligned[idx].numpy()
    assert (np.abs(rgb - wrong).max(1)[minority] > 25).all()  # visibly not the class colour


def test_ratio_assign_bias_is_exact_for_every_ratio(mnist):
    y = mnist["train"][1][:54000]
    for ratio in (0.995, 0.99, 0.98, 0.95, 0.5, 0.1):
        b = assign_bias(y, 1 - ratio, "exact", np.random.default_rng(1))
        assert int((b != y).sum()) == round((1 - ratio) * len(y))
    b = assign_bias(y, 0.05, "bernoulli", np.random.default_rng(1))
    frac = float((b != y).mean())
    assert frac != 0.05 and abs(frac - 0.05) < 0.005   # official: random count around the ratio


def test_ratio_colour_noise_paper_vs_official():
    b = np.repeat(np.arange(10), 2000)
    for difficulty in (0.0001, 0.0005):
        for mode, std in (("paper", math.sqrt(difficulty)), ("official", difficulty)):
            dev = sample_colors(b, difficulty, mode, np.random.default_rng(0)) - PALETTE[b]
            assert color_std(difficulty, mode) == std
            assert abs(dev.std() / std - 1) < 0.03


def test_ratio_params_are_validated():
    family = DATASETS.get("colored_mnist_ratio")
    for bad in ({"bias_ratio": 1.0}, {"bias_ratio": 0.0}, {"color_noise": "other"}, {"val_fraction": 1.0}):
        with pytest.raises(ValueError):
            make_spec("vanilla", "colored_mnist_ratio", dataset_params=bad)
    assert family.Params().bias_ratio == 0.99


# ----------------------------------------------------------------------------- watermarked_mnist

def test_watermark_construction_is_exact(wm, mnist, data_root):
    fashion = load_mnist(data_root, "FashionMNIST")
    tr, te = wm["train"], wm["test"]
    assert tuple(tr.x.shape[1:]) == (1, 56, 56) and wm.info.input_shape == (1, 56, 56)
    assert abs(tr.aligned.float().mean().item() - 0.99) <= 1.0 / len(tr)
    assert abs((~te.aligned).float().mean().item() - 0.9) <= 1.0 / len(te)
    offset = tr.attrs["offset"]
    assert offset.min() == 0 and offset.max() == 8         # δ ~ U{0..α}, α = 8; both ends occur
    for split, (fx, fy), (gx, _) in ((tr, fashion["train"], mnist["train"]), (te, fashion["test"], mnist["test"])):
        pick = split.attrs["fashion_index"].numpy()
        assert (fy[pick] == split.b.numpy()).all()          # the object's class is the bias label
        idx = np.arange(0, len(split), 97)
        objects = np.rint(fx[pick[idx]].astype(np.float32) * 0.5).astype(np.uint8)
        off = split.attrs["offset"].numpy()[idx]
        rebuilt = paste_max(upscale2x(gx[idx]), objects, off[:, 0], off[:, 1])
        assert np.array_equal(rebuilt, split.x[idx, 0].numpy())
    # Outside the object's box (top-left, at the offset) the image is the up-scaled digit alone.
    for i in (0, 5, 11):
        top, left = offset[i].tolist()
        outside = torch.ones(56, 56, dtype=torch.bool)
        outside[top:top + 28, left:left + 28] = False
        digit = torch.from_numpy(upscale2x(mnist["train"][0][i:i + 1])[0])
        assert torch.equal(tr.x[i, 0][outside], digit[outside])
        assert not torch.equal(tr.x[i, 0][~outside], digit[~outside])


def test_upscale_matches_bilinear_interpolation(mnist):
    x = mnist["train"][0][:64]
    ref = torch.nn.functional.interpolate(torch.from_numpy(np.array(x)).float()[:, None], scale_factor=2,
                                          mode="bilinear", align_corners=False)[:, 0].round()
    assert np.array_equal(upscale2x(x), ref.numpy().astype(np.uint8))


# ----------------------------------------------------------------------------- colored_mnist_lff

def _lff_attr_labels_literal(y: np.ndarray, aligned_ratio: float) -> np.ndarray:
    """alinlab/LfF make_dataset.py:17-47, transcribed loop for loop (the reference)."""
    counts = np.array([(y == c).sum() for c in range(10)])
    ratios = aligned_ratio * np.eye(10) + (1 - aligned_ratio) / 9 * (1 - np.eye(10))
    milestones = (counts[:, None] * np.cumsum(ratios, axis=1)).round()
    out = np.zeros_like(y)
    for c in range(10):
        for k, idx in enumerate(np.flatnonzero(y == c)):
            out[idx] = np.min(np.nonzero(milestones[c] > k)[0])
    return out


def test_lff_exact_blocks_and_splits(cm_lff, mnist):
    tr, te = cm_lff["train"], cm_lff["test"]
    assert set(cm_lff.splits) == {"train", "test"} and cm_lff.info.backbone == "lff_mlp"
    assert len(tr) == 60000 and len(te) == 10000
    assert np.array_equal(tr.b.numpy(), _lff_attr_labels_literal(mnist["train"][1], 0.99))
    assert np.array_equal(te.b.numpy(), _lff_attr_labels_literal(mnist["test"][1], 0.1))
    for c in range(10):
        n_c = int((tr.y == c).sum())
        assert abs(int(((tr.y == c) & tr.aligned).sum()) - 0.99 * n_c) <= 1   # block ends are rounded
        per_colour = torch.bincount(tr.b[(tr.y == c) & ~tr.aligned], minlength=10)
        assert per_colour[c] == 0 and (per_colour[torch.arange(10) != c] - n_c * 0.01 / 9).abs().max() <= 1
        m_c = int((te.y == c).sum())
        assert abs(int(((te.y == c) & te.aligned).sum()) - 0.1 * m_c) <= 1
    assert abs((~tr.aligned).float().mean().item() - 0.01) < 1e-3


def test_lff_colouring(cm_lff, mnist):
    tr = cm_lff["train"]
    idx = torch.cat([torch.nonzero(~tr.aligned)[:300, 0], torch.arange(300)])
    rgb = brightest_rgb(tr.x[idx])
    gray_max = mnist["train"][0][idx.numpy()].reshape(len(idx), -1).max(1)
    expect = LFF_COLORS[tr.b[idx].numpy()] * gray_max[:, None]
    # severity 4: colour std 0.005 (±~5 levels at 4σ), then truncation (−1 at most)
    assert SEVERITY_STD[3] == 0.005 and np.abs(rgb - expect).max() < 6
    assert (tr.x[idx].flatten(1).float().amax(1) <= 255).all()
    background = torch.from_numpy(mnist["train"][0][idx.numpy()] == 0)
    assert (tr.x[idx].sum(1)[background] == 0).all()        # foreground-only colouring


# ----------------------------------------------------------------------------- label noise (real run)

def test_label_noise_through_a_real_run(monkeypatch, bench_home, data_root, tmp_path, cm_ratio):
    """RunSpec(label_noise=0.1): exactly round(0.1·N) training labels move to a wrong class and are
    marked; observed through the loader the engine hands to a method's prepare()."""
    from benchmark_methods.lff import LfF

    seen = {}
    original = LfF.prepare

    def spy(self, loader):
        seen["split"] = loader.split
        return original(self, loader)

    monkeypatch.setattr(LfF, "prepare", spy)
    spec = make_spec("lff", "colored_mnist_ratio", epochs=1, max_train=600, max_eval=200, label_noise=0.1)
    rec = run(spec, store=ResultStore(tmp_path / "runs"), data_root=data_root, home=bench_home, progress=False,
              keep_model=False).record
    split = seen["split"]
    noisy, clean = split.attrs["noisy"].cpu(), split.attrs["clean_y"].cpu()
    flipped = split.y.cpu() != clean
    assert int(flipped.sum()) == round(0.1 * 600) == int(noisy.sum())
    assert torch.equal(flipped, noisy)
    # the clean labels are those of the fixed training subset, the aligned flags untouched
    subset = _fixed_subset(cm_ratio["train"], 600)
    assert torch.equal(clean, subset.y) and torch.equal(split.aligned.cpu(), subset.aligned)
    assert rec["spec"]["label_noise"] == 0.1 and math.isfinite(rec["history"][-1]["train.loss"])


# ----------------------------------------------------------------------------- augmentation

def test_colour_jitter_matches_torchvision():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 12, 12, generator=g)
    x[0] = 0.5                                              # a grey image (zero saturation)
    for i, (h, s) in enumerate([(0.05, 1.05), (-0.05, 0.95), (0.03, 1.0), (-0.01, 1.02)]):
        ref_h = torch.stack([TF.adjust_hue(im, h) for im in x])
        ref_s = torch.stack([TF.adjust_saturation(im, s) for im in x])
        got_h = adjust_hue(x, torch.full((8, 1, 1), h))
        got_s = adjust_saturation(x, torch.full((8, 1, 1, 1), s))
        assert torch.allclose(got_h, ref_h, atol=1e-5), i
        assert torch.allclose(got_s, ref_s, atol=1e-5), i


def test_pgd_augment_is_random_bounded_and_mild(cm_ratio, wm):
    for ds in (cm_ratio, wm):
        x = ds["train"].x[:256].float() / 255
        torch.manual_seed(0)
        a = pgd_augment(x)
        torch.manual_seed(0)
        assert torch.equal(a, pgd_augment(x))               # reproducible under the global seed
        assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
        diff = (a - x).abs().flatten(1).mean(1)
        assert (diff > 0).float().mean() > 0.95             # nearly every sample is changed
        # mild: ±10°, ≤ 10 % area change, small hue/saturation shifts → the ink mass roughly kept
        ratio = a.flatten(1).sum(1) / x.flatten(1).sum(1)
        assert ratio.min() > 0.6 and ratio.max() < 1.6
    assert DATASETS.get("colored_mnist_ratio")().augment(DATASETS.get("colored_mnist_ratio").Params(augment=False)) is None


# ----------------------------------------------------------------------------- backbones

def _info(shape):
    return DatasetInfo("t", shape, 10, 10, (), "simple_convnet", (0.0,) * shape[0], (1.0,) * shape[0])


def test_backbones_registered_through_entry_points():
    declared = {ep.name for ep in metadata.entry_points(group="benchmark.backbones")}
    assert {"simple_convnet", "lff_mlp", "lff_mlp_official", "lnl_convnet"} <= declared
    assert {"simple_convnet", "lff_mlp", "lff_mlp_official", "lnl_convnet"} <= set(BACKBONES.names())


def test_simple_convnet_layout():
    for shape in ((3, 28, 28), (1, 56, 56)):
        net = build_backbone(_info(shape), "simple_convnet").eval()
        x = torch.rand(5, *shape)
        assert net.f(x).shape == (5, 64) and net(x).shape == (5, 10)
    convs = [m for m in net.f if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(8, (4, 4)), (32, (4, 4)), (64, (4, 4))]
    kinds = [type(m).__name__ for m in net.f]
    # official net.py: blocks 1-2 BN→ReLU, block 3 ReLU→BN; dropout 0.5 after each block
    assert kinds[10:16] == ["Conv2d", "ReLU", "BatchNorm2d", "Dropout", "AdaptiveAvgPool2d", "Flatten"]
    assert kinds[:5] == ["Conv2d", "BatchNorm2d", "ReLU", "Dropout", "AvgPool2d"]
    assert all(m.p == 0.5 for m in net.f if isinstance(m, torch.nn.Dropout))


def test_lff_mlp_and_official_quirk():
    info = _info((3, 28, 28))
    torch.manual_seed(0)
    mlp = build_backbone(info, "lff_mlp")
    official = build_backbone(info, "lff_mlp_official")
    official.load_state_dict(mlp.state_dict())
    n_params = sum(p.numel() for p in mlp.parameters())
    assert n_params == 2352 * 100 + 100 + 2 * (100 * 100 + 100) + 100 * 10 + 10
    x = torch.rand(4, 3, 28, 28)
    assert torch.allclose(official(x), mlp(x / 255))         # official: inputs divided by 255 again
    assert not torch.allclose(official(x), mlp(x))
