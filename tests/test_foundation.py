"""Foundation: packaging, registries and plug-ins, Colored MNIST, engine (determinism, resume),
result store, CLI errors."""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark import DATASETS, METHODS, Method, hp, make_spec, register_method
from benchmark._registry import RegistryError
from benchmark.engine import checkpoint_path, run
from benchmark.store import RecordExists, ResultStore

REPO = Path(__file__).resolve().parents[1]
TINY = dict(epochs=1, max_train=256, max_eval=512)


def cli(*args, env=None, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "benchmark", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


# --- packaging -----------------------------------------------------------------------------------

def test_top_level_folders_do_not_shadow_hugging_face_datasets():
    # `datasets` is Hugging Face's (where installed; not a dependency), never our datasets/ folder
    code = "import importlib.util as u; s = u.find_spec('datasets'); print(s.origin if s else None)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    assert out == "None" or ("site-packages" in out and not out.startswith(str(REPO / "datasets"))), out
    # our plug-ins still import, under their installed names
    out = subprocess.run([sys.executable, "-c", "import benchmark_datasets.colored_mnist as m; print(m.__file__)"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(out).resolve().parent.name == "datasets"


# --- registries ----------------------------------------------------------------------------------

def test_builtins_are_found_through_entry_points():
    from importlib.metadata import entry_points
    declared = {ep.name for ep in entry_points(group="benchmark.methods")}
    assert {"vanilla", "lnl"} <= declared
    assert {"vanilla", "lnl"} <= set(METHODS.names())
    assert "colored_mnist" in DATASETS.names()


def test_unknown_duplicate_and_wrong_base_fail_loudly():
    with pytest.raises(RegistryError, match=r"unknown method 'nope'; known methods: .*vanilla"):
        METHODS.get("nope")

    @dataclasses.dataclass(frozen=True)
    class HP:
        batch_size: int = hp(8, "test")

    with pytest.raises(RegistryError, match="registered twice: benchmark_methods.vanilla.Vanilla and"):
        @register_method("vanilla")
        class Other(Method):
            HParams = HP

    with pytest.raises(RegistryError, match="must subclass benchmark.method.Method"):
        @register_method("not_a_method")
        class NotAMethod:
            HParams = HP

    with pytest.raises(RegistryError, match="needs a dataclass in its 'HParams'"):
        @register_method("no_hparams")
        class NoHParams(Method):
            pass
    assert "not_a_method" not in METHODS and "no_hparams" not in METHODS


def test_out_of_tree_plugin_is_listed_and_runs(tmp_path):
    env = {"PYTHONPATH": str(REPO / "tests" / "plugin")}
    listed = cli("list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "label_smoothing" in listed.stdout and "Cross-entropy with label smoothing" in listed.stdout
    res = cli("run", "--method", "label_smoothing", "--dataset", "colored_mnist", "--epochs", "1",
              "--max-train", "256", "--no-mlflow", "--no-progress", "--results-dir", str(tmp_path / "runs"), env=env)
    assert res.returncode == 0, res.stderr
    (record,) = ResultStore(tmp_path / "runs").records()
    assert record["spec"]["method"] == "label_smoothing" and record["spec"]["hparams"]["smoothing"] == 0.1


# --- Colored MNIST -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cmnist():
    return DATASETS.get("colored_mnist")().build({"sigma2": 0.02})


def test_colored_mnist_follows_the_lnl_protocol(cmnist):
    from benchmark_datasets.colored_mnist import PALETTE
    train, test = cmnist["train"], cmnist["test"]
    assert len(train) == 60000 and len(test) == 10000
    assert train.x.shape == (60000, 3, 28, 28) and train.x.dtype == torch.uint8
    assert bool((train.b == train.y).all()) and bool(train.aligned.all())
    # test mean colours are random: each of the 10 ≈ 10%, so ≈ 10% aligned
    counts = torch.bincount(test.b, minlength=10).float() / len(test)
    assert counts.min() > 0.08 and counts.max() < 0.12
    assert 0.08 < test.aligned.float().mean() < 0.12
    # the colour of a digit is its brightest pixel / 255; per class it is centred on the palette
    # entry with per-channel std ≈ σ = sqrt(0.02) (clipping at 0 and 1 shrinks it, so compare loosely)
    color = train.x.flatten(2).amax(2).float().numpy() / 255.0
    y = train.y.numpy()
    for k in range(10):
        c = color[y == k]
        inner = (PALETTE[k] > 0.3) & (PALETTE[k] < 0.7)
        assert np.allclose(c.mean(0)[inner], PALETTE[k][inner], atol=0.02)
        assert np.allclose(c.std(0)[inner], np.sqrt(0.02), rtol=0.15)
    # background stays black
    assert int(train.x[:, :, 0, 0].max()) == 0


def test_colored_mnist_bias_label_is_the_quantised_colour_map(cmnist):
    train = cmnist["train"]
    cmap = train.attrs["color_map"]
    assert cmap.shape == (60000, 3, 14, 14)
    small = train.x[:, :, 1::2, 1::2]
    fg = small > 0
    assert bool((cmap[fg] == (small[fg] // 32)).all()) and int(cmap[fg].max()) <= 7
    assert bool((cmap[~fg] == 255).all())


def test_colored_mnist_label_variants(data_root):
    """``color`` labels the sampled colour at the ink positions, ``dense`` at every grid position."""
    from benchmark_datasets.colored_mnist import colorize, color_label_map
    from benchmark.data import load_mnist
    gray = load_mnist(data_root)["train"][0][:64]
    colors = np.random.default_rng(0).uniform(0, 1, size=(64, 3))
    img = colorize(gray, colors)
    level = (np.floor(colors * 255) // 32).astype(np.uint8)
    ink = np.broadcast_to(gray[:, None, 1::2, 1::2] > 0, (64, 3, 14, 14))
    pure, dense = color_label_map(img, gray, colors, "color"), color_label_map(img, gray, colors, "dense")
    assert (dense == level[:, :, None, None]).all()
    assert (pure[ink] == dense[ink]).all() and (pure[~ink] == 255).all()


def test_map_bias_loss_sums_the_channel_losses():
    """LNL's h loss adds its R, G and B cross-entropies (official trainer.py:144-148), each a mean
    over that channel's labelled positions."""
    from benchmark.data import BiasHead
    from benchmark.nets import bias_loss
    head = BiasHead("color", "color_map", num_classes=8, shape=(3, 14, 14), ignore_index=255)
    logits, target = torch.randn(4, 8, 3, 14, 14), torch.randint(0, 8, (4, 3, 14, 14))
    target[0, 0], target[:, 1, :3] = 255, 255
    per_channel = [torch.nn.functional.cross_entropy(logits[:, :, c], target[:, c], ignore_index=255) for c in range(3)]
    assert torch.allclose(bias_loss(logits, target, head), sum(per_channel))


def test_colored_mnist_is_deterministic_and_cached(tmp_path):
    fam = DATASETS.get("colored_mnist")()
    a = fam.build({"sigma2": 0.03, "seed": 1}, cache_dir=tmp_path)
    files = list(tmp_path.rglob("*.pt"))
    assert len(files) == 1
    b = fam.build({"sigma2": 0.03, "seed": 1}, cache_dir=tmp_path)  # from the cache
    c = fam.build({"sigma2": 0.03, "seed": 2}, cache_dir=tmp_path / "other")
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert torch.equal(a["test"].x, b["test"].x)


def test_sigma2_out_of_range_is_refused():
    with pytest.raises(ValueError, match=r"sigma2=0.0 is out of range.*0.02, 0.025"):
        make_spec("vanilla", "colored_mnist", dataset_params={"sigma2": 0})


# --- engine --------------------------------------------------------------------------------------

def _spec(method="vanilla", **kw):
    return make_spec(method, "colored_mnist", dataset_params={"sigma2": 0.02}, **{**TINY, **kw})


def test_same_seed_gives_bit_identical_runs(tmp_path):
    spec = _spec("lnl", epochs=2)
    a = run(spec, store=ResultStore(tmp_path / "a"), progress=False).record
    b = run(spec, store=ResultStore(tmp_path / "b"), progress=False).record
    strip = lambda h: [{k: v for k, v in row.items() if k not in ("train_time_s", "images_per_s")} for row in h]
    assert strip(a["history"]) == strip(b["history"])
    c = run(_spec("lnl", epochs=2, seed=1), store=ResultStore(tmp_path / "a"), progress=False).record
    assert strip(c["history"]) != strip(a["history"])


_KILL_AFTER_EPOCH_1 = """
import os, signal, sys
from benchmark import make_spec
from benchmark.engine import run
from benchmark.store import ResultStore
spec = make_spec("lnl", "colored_mnist", dataset_params={"sigma2": 0.02}, epochs=3, max_train=256, max_eval=512)
def die(epoch, row):
    if epoch == 1:
        os.kill(os.getpid(), signal.SIGKILL)
run(spec, store=ResultStore(sys.argv[1]), home=sys.argv[2], progress=False, on_epoch=die)
"""


def test_a_run_can_start_from_the_backbone_of_a_stored_run(tmp_path):
    """``pretrained="run:ID"``: LNL's official two-stage recipe (a vanilla baseline, then LNL at
    lr 0.001 from its weights). The backbone moves, the spec records where it came from, and a
    missing run or a backbone that does not fit is refused by name."""
    from benchmark.engine import build_method, init_from_run, load_trained
    store = ResultStore(tmp_path / "runs")
    base = run(make_spec("vanilla", "colored_mnist", **TINY), store=store, progress=False).record
    trained = load_trained(base).net.state_dict()
    lnl_spec = make_spec("lnl", "colored_mnist", hparams={"lr": 0.001}, pretrained=f"run:{base['run_id']}", **TINY)
    method = build_method(lnl_spec, DATASETS.get("colored_mnist")().info(None))
    assert init_from_run(method, lnl_spec.pretrained) == base["run_id"]
    assert all(torch.equal(v, trained[k]) for k, v in method.net.state_dict().items())
    rec = run(lnl_spec, store=store, progress=False).record
    assert rec["spec"]["pretrained"] == f"run:{base['run_id']}" and rec["run_id"] != base["run_id"]
    with pytest.raises(FileNotFoundError, match="run:0000000000000000"):
        run(make_spec("lnl", "colored_mnist", pretrained="run:0000000000000000", **TINY), store=store, progress=False)
    with pytest.raises(ValueError, match="does not fit"):
        run(make_spec("vanilla", "colored_mnist", backbone="simple_convnet", pretrained=f"run:{base['run_id']}", **TINY),
            store=store, progress=False)


def test_killed_run_resumes_at_next_epoch_with_identical_results(tmp_path):
    spec = make_spec("lnl", "colored_mnist", dataset_params={"sigma2": 0.02}, epochs=3, max_train=256, max_eval=512)
    home, store = Path(os.environ["BENCHMARK_HOME"]), ResultStore(tmp_path / "runs")  # shared dataset cache
    proc = subprocess.run([sys.executable, "-c", _KILL_AFTER_EPOCH_1, str(store.root), str(home)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert checkpoint_path(spec, home).exists() and not store.has(spec.run_id)

    epochs_run = []
    resumed = run(spec, store=store, home=home, progress=False, on_epoch=lambda e, row: epochs_run.append(e)).record
    assert epochs_run == [2, 3]  # epoch 1 came from the checkpoint
    assert not checkpoint_path(spec, home).exists()

    clean = run(spec, store=ResultStore(tmp_path / "clean"), home=home, progress=False).record
    strip = lambda h: [{k: v for k, v in row.items() if k not in ("train_time_s", "images_per_s")} for row in h]
    assert strip(resumed["history"]) == strip(clean["history"])
    assert resumed["final"] == clean["final"]


def test_record_contents_and_metrics(tmp_path):
    store = ResultStore(tmp_path / "runs")
    rec = run(_spec("lnl"), store=store, progress=False).record
    assert rec["run_id"] == _spec("lnl").run_id
    for key in ("spec", "dataset_fingerprint", "history", "final", "code", "libraries", "device", "wall_time_s",
                "created"):
        assert rec[key] not in (None, ""), key
    test = rec["final"]["test"]
    assert test["n"] == 512
    group_n = np.array(test["group_n"])
    assert group_n.shape == (10, 10) and group_n.sum() == 512
    # accuracy decomposes over the (target × bias) groups
    acc = np.array([[np.nan if v is None else v for v in row] for row in test["group_acc"]])
    assert np.isclose(np.nansum(acc * group_n) / 512, test["acc"], atol=1e-6)
    assert 0.0 <= test["worst_group_acc"] <= test["acc"] <= 1.0
    assert 0.0 <= test["bias_head_acc.color"] <= 1.0


# --- store ---------------------------------------------------------------------------------------

def test_store_is_immutable_and_queryable(tmp_path):
    store = ResultStore(tmp_path / "runs")
    first = run(_spec(), store=store, progress=False)
    again = run(_spec(), store=store, progress=False)
    assert not first.cached and again.cached and again.record == first.record
    with pytest.raises(RecordExists):
        store.put({**first.record, "final": {}})
    assert store.get(first.record["run_id"]) == first.record  # untouched
    assert not list(store.root.glob(".tmp-*"))
    df = store.query(method="vanilla")
    assert len(df) == 1 and df.loc[0, "p.sigma2"] == 0.02 and 0 <= df.loc[0, "test.acc"] <= 1


# --- CLI -----------------------------------------------------------------------------------------

def test_cli_run_twice_is_a_noop_and_report_prints_a_table(tmp_path):
    args = ["run", "--method", "vanilla", "--dataset", "colored_mnist", "--sigma2", "0.02", "--epochs", "1",
            "--max-train", "256", "--no-progress", "--results-dir", str(tmp_path / "runs")]
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    second = cli(*args)
    assert second.returncode == 0 and "already stored" in second.stdout
    report = cli("report", "--results-dir", str(tmp_path / "runs"))
    assert report.returncode == 0, report.stderr
    assert "| vanilla" in report.stdout and "colored_mnist" in report.stdout


@pytest.mark.parametrize("args, message", [
    (["--method", "nope", "--dataset", "colored_mnist"], "unknown method 'nope'; known methods:"),
    (["--method", "vanilla", "--dataset", "nope"], "unknown dataset 'nope'; known datasets:"),
    (["--method", "vanilla", "--dataset", "colored_mnist", "--sigma2", "0.9e9"], "sigma2=900000000.0 is out of range"),
    (["--method", "vanilla", "--dataset", "colored_mnist", "--set", "lr"], "must look like NAME=VALUE"),
    (["--method", "vanilla", "--dataset", "colored_mnist", "--set", "bogus=1"], "unknown parameter(s) ['bogus']"),
    (["--method", "vanilla", "--dataset", "colored_mnist", "--bias-ratio", "0.9"], "unrecognised arguments"),
])
def test_cli_bad_input_names_the_problem(args, message, tmp_path):
    res = cli("run", *args, "--no-mlflow", "--results-dir", str(tmp_path / "runs"))
    assert res.returncode == 2 and message in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "runs").exists()


def test_cli_missing_data_root_names_the_layout(tmp_path):
    res = cli("run", "--method", "vanilla", "--dataset", "colored_mnist", "--no-mlflow", "--data-root",
              str(tmp_path / "nowhere"), env={"BENCHMARK_HOME": str(tmp_path / "fresh")})
    assert res.returncode == 2
    assert "MNIST/raw/train-images-idx3-ubyte.gz" in res.stderr and "--data-root" in res.stderr
    assert not list((tmp_path / "fresh").rglob("*.pt"))
