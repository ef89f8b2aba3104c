"""Generated from the registry: every registered method, one tiny real run on Colored MNIST.

Checks finite training losses, predictions of the right shape, same seed ⇒ same metrics, and that
the hyperparameter dataclass round-trips through the run spec.
"""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from benchmark import DATASETS, METHODS, make_spec
from benchmark.engine import build_method, run
from benchmark.hparams import from_dict, to_dict
from benchmark.store import ResultStore

TINY = dict(dataset_params={"sigma2": 0.02}, epochs=1, max_train=384, max_eval=256)


def _spec(name: str, seed: int = 0):
    return make_spec(name, "colored_mnist", hparams=METHODS.get(name).tiny_hparams, seed=seed, **TINY)


@pytest.mark.parametrize("name", METHODS.names())
def test_method_contract(name, tmp_path):
    cls = METHODS.get(name)
    assert cls.__doc__ and cls.__doc__.strip(), f"{name} needs a docstring naming its paper and idea"
    for f in dataclasses.fields(cls.HParams):
        assert f.metadata.get("source"), f"{name}.{f.name} has no source"

    spec = _spec(name)
    assert from_dict(cls.HParams, spec.hparams) == from_dict(cls.HParams, cls.tiny_hparams)
    assert to_dict(from_dict(cls.HParams, spec.hparams)) == spec.hparams

    a = run(spec, store=ResultStore(tmp_path / "a"), progress=False).record
    b = run(spec, store=ResultStore(tmp_path / "b"), progress=False).record
    train_logs = {k: v for k, v in a["history"][-1].items() if k.startswith("train.")}
    assert train_logs, f"{name}.update returned no losses"
    assert all(math.isfinite(v) for v in train_logs.values() if isinstance(v, float)), train_logs
    for key in ("acc", "aligned_acc", "conflicting_acc", "worst_group_acc"):
        assert a["final"]["test"][key] == b["final"]["test"][key], key  # same seed, same numbers
        assert 0.0 <= a["final"]["test"][key] <= 1.0
    assert a["final"]["test"]["n"] == TINY["max_eval"]

    dataset = DATASETS.get("colored_mnist")().build(TINY["dataset_params"])
    method = build_method(spec, dataset.info)
    method.eval()
    x = torch.rand(5, *dataset.info.input_shape)
    with torch.no_grad():
        assert method.predict(x).shape == (5, dataset.info.num_classes)
