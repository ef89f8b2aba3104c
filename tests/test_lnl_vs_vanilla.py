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
@pytest.mark.xfail(strict=False, reason=(
    "not reproduced yet: at the paper budget (100 epochs, full 60k, σ²=0.02, seed 0, H100) vanilla "
    "reached 0.3586 test accuracy and LNL 0.3544 (records in results/runs); LNL's bias head is driven "
    "to chance on train but the classifier keeps the colour shortcut. See issue notes."))
def test_lnl_beats_vanilla_at_sigma2_002(tmp_path):
    budget = dict(epochs=6, max_train=6000, max_eval=5000)
    _, vanilla = _train_and_test_acc("vanilla", tmp_path, **budget)
    _, lnl = _train_and_test_acc("lnl", tmp_path, **budget)
    assert lnl["acc"] > vanilla["acc"] + 0.05
