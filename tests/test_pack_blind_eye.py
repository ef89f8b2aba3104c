"""Packed Blind Eye, BlindEye+GRL and GRL runs store the records of the same runs alone.

Tiny real-MNIST budgets on CPU; the tolerance is tests/packs.py's (losses 1e-4, relative above 1; accuracies 0.01,
i.e. within one of the 128 test samples), for the reason given there: the pack's batched kernels
sum in another order than the lone run's.
"""
from __future__ import annotations

import pytest
import torch

from benchmark.spec import make_spec
from packs import packed_equals_alone

TINY = dict(max_train=160, max_eval=128)  # batch 128: a full and a partial batch per epoch


def test_packed_blind_eye_with_class_weights_equals_the_same_runs_alone(tmp_path, bench_home):
    # colour-map head (dense labels, background ignored), two h steps per batch, the KL confusion loss
    # and per-run inverse-frequency class weights: three seeds, two colour-noise levels
    hparams = {"class_weighting": True, "h_steps": 2, "confusion": "kl"}
    specs = [make_spec("blind_eye", "colored_mnist", seed=s, epochs=1, hparams=hparams, dataset_params={"sigma2": v},
                       **TINY)
             for s, v in ((0, 0.02), (1, 0.05), (2, 0.02))]
    records = packed_equals_alone(specs, tmp_path, bench_home)
    row = records[0]["history"][-1]
    assert {"train.loss", "train.conf_loss", "train.bias_loss", "train.bias_acc.color"} <= set(row)
    assert len({r["history"][0]["train.bias_loss"] for r in records}) == 3  # the runs really differ


def test_packed_blind_eye_grl_and_grl_equal_the_same_runs_alone(tmp_path, bench_home):
    for method in ("blind_eye_grl", "grl"):
        specs = [make_spec(method, "colored_mnist", seed=s, epochs=1, max_train=128, max_eval=128,
                           dataset_params={"sigma2": v})
                 for s, v in ((0, 0.02), (1, 0.05))]
        packed_equals_alone(specs, tmp_path / method, bench_home)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["blind_eye", "blind_eye_grl", "grl"])
def test_packs_of_three_equal_the_same_runs_alone_over_more_steps(method, tmp_path, bench_home):
    specs = [make_spec(method, "colored_mnist", seed=s, epochs=2, max_train=640, max_eval=256,
                       dataset_params={"sigma2": v}) for s, v in ((0, 0.02), (1, 0.05), (2, 0.02))]
    packed_equals_alone(specs, tmp_path, bench_home)


def test_class_weights_are_each_runs_own_in_a_pack():
    # run r's weighted loss uses only weight block r: swapping the blocks changes the losses
    from benchmark_methods.blind_eye import weighted_cross_entropy
    gen = torch.Generator().manual_seed(0)
    logits, target = torch.randn(8, 3, generator=gen), torch.tensor([0, 1, 2, 0, 1, 1, 2, -100])
    weight = torch.tensor([1.0, 2.0, 3.0, 0.5, 1.0, 4.0])
    packed = weighted_cross_entropy(logits, target, weight, -100, runs=2)
    for r in range(2):
        alone = torch.nn.functional.cross_entropy(logits[4 * r:4 * r + 4], target[4 * r:4 * r + 4],
                                                  weight=weight[3 * r:3 * r + 3])
        assert packed[r].item() == pytest.approx(alone.item(), abs=1e-6)
    assert packed.tolist() != weighted_cross_entropy(logits, target, weight.roll(3), -100, runs=2).tolist()
