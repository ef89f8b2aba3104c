"""Colored MNIST at σ² = 0.02 on a real-MNIST subset: the bias hurts vanilla; LNL against vanilla."""
from __future__ import annotations

import pytest
import torch

from benchmark import DATASETS, make_spec
from benchmark.engine import Loader, _fixed_subset, evaluate, load_trained, run
from benchmark.store import ResultStore


def _train_and_test_acc(method: str, tmp_path, **kw):
    spec = make_spec(method, "colored_mnist", dataset_params={"sigma2": 0.02}, **kw)
    rec = run(spec, store=ResultStore(tmp_path / "runs"), progress=False).record
    model = load_trained(rec)
    data = DATASETS.get("colored_mnist")().build({"sigma2": 0.02})
    train = _fixed_subset(data["train"], kw.get("max_train"))  # exactly the samples it trained on
    train_acc = evaluate(model, Loader(train, data.info.mean, data.info.std, torch.device("cpu")),
                         data.info.num_classes, data.info.num_bias_classes)["acc"]
    return train_acc, rec["final"]["test"]


def test_vanilla_falls_far_below_its_training_accuracy(tmp_path):
    train_acc, test = _train_and_test_acc("vanilla", tmp_path, epochs=2, max_train=3000, max_eval=3000)
    assert train_acc > 0.85
    assert test["acc"] < train_acc - 0.5            # the colour shortcut does not transfer
    assert test["aligned_acc"] > test["conflicting_acc"] + 0.4


@pytest.mark.slow
def test_lnl_two_stage_beats_vanilla_continued_at_sigma2_002(tmp_path):
    """LNL's official recipe (train.sh:11): a trained vanilla baseline, then LNL at lr 0.001 from
    its weights; the control is the same baseline trained on by vanilla at lr 0.001 for as long.
    Full-data run on this CPU (records 77099017938457a8 → da4e258c7094ff9e vs ea7ae798792eced9,
    10 + 15 epochs, 60k): LNL 0.384 test accuracy (0.37-0.44 over its 15 epochs), control 0.343
    (0.336-0.345). Here 3 + 1 epochs on the full 60k (measured: baseline 0.297, then vanilla 0.303,
    LNL 0.336; a 10k subset with 5 + 5 epochs gave only 0.270 vs 0.261: LNL needs a few hundred
    steps at lr 0.001); margin asserted: 0.02."""
    base = dict(max_eval=5000)
    store = ResultStore(tmp_path / "runs")
    first = run(make_spec("vanilla", "colored_mnist", dataset_params={"sigma2": 0.02}, epochs=3, **base),
                store=store, progress=False).record
    acc = {}
    for method in ("vanilla", "lnl"):
        spec = make_spec(method, "colored_mnist", dataset_params={"sigma2": 0.02}, epochs=1, hparams={"lr": 0.001},
                         pretrained=f"run:{first['run_id']}", **base)
        acc[method] = run(spec, store=store, progress=False, keep_model=False).record["final"]["test"]["acc"]
    print("baseline", first["final"]["test"]["acc"], "then lr 0.001:", acc)
    assert acc["lnl"] > acc["vanilla"] + 0.02


@pytest.mark.slow
@pytest.mark.xfail(strict=False, reason=(
    "not reproduced from scratch: at the paper budget (100 epochs, full 60k, σ²=0.02, seed 0, H100) vanilla "
    "reached 0.3586 test accuracy and LNL trained from scratch at lr 0.01 0.3544 (records in results/runs, "
    "made before h's loss summed R+G+B and its second layer became 3×3); "
    "only the official two-stage recipe (test above) gains. See issue notes."))
def test_lnl_from_scratch_beats_vanilla_at_sigma2_002(tmp_path):
    budget = dict(epochs=6, max_train=6000, max_eval=5000)
    _, vanilla = _train_and_test_acc("vanilla", tmp_path, **budget)
    _, lnl = _train_and_test_acc("lnl", tmp_path, **budget)
    assert lnl["acc"] > vanilla["acc"] + 0.05
