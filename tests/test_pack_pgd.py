"""Packed PGD: K runs trained as one stacked model, in both phases, store the records of the same runs alone.

The biased phase (GCE, Simple ConvNet-1 with dropout, augmented batches for ``pgd.official``) runs
as one stacked model (``PGD.prepare_pack``), each run's sample order, augmentation and dropout
masks drawn from its own RNG stream; each run is scored by its own biased model; the de-biased
phase draws each run's batches from its own scores.

Tolerance (CPU), as tests/packs.py: losses 1e-4, accuracies 0.01 (two of the 200 evaluation
samples); ``prepare``'s draw shares 1e-6 relative or 1e-5 absolute (they are stored rounded to six
digits), the score histogram at most one sample per bin. The pack's batched kernels sum in another
order than a lone run's (which trains channels-last on a CPU, see benchmark.engine.fast_path), so
the numbers need not be equal.
"""
from __future__ import annotations

import pytest
import torch

from benchmark.dropout import FastDropout

from benchmark.engine import checkpoint_path, run
from benchmark.pack import run_pack
from benchmark.pack_module import PackedModule
from benchmark.spec import make_spec
from benchmark.store import ResultStore
from packs import assert_same_records, interrupt_after_first_epoch, packed_equals_alone

SCORE_RTOL = 1e-6
TIMED = ("_s", "_per_s")


def _specs(method: str, runs, epochs: int = 1):
    return [make_spec(method, "colored_mnist_ratio", seed=seed, epochs=epochs, max_train=256, max_eval=200,
                      hparams={"biased_epochs": 1}, dataset_params={"bias_ratio": ratio})
            for seed, ratio in runs]


def assert_same_prepare(packed: dict, alone: dict) -> None:
    untimed = lambda p: {k: v for k, v in p.items() if not k.endswith(TIMED) and k != "pgd.score_hist"}  # noqa: E731
    assert set(packed) == set(alone)
    for key, value in untimed(alone).items():
        assert packed[key] == pytest.approx(value, rel=SCORE_RTOL, abs=1e-5), key  # stored rounded to 6 digits
    hist_p, hist_a = packed["pgd.score_hist"], alone["pgd.score_hist"]
    assert hist_p["edges"] == pytest.approx(hist_a["edges"], abs=1e-4)
    for group in ("aligned", "conflicting"):
        assert sum(hist_p[group]) == sum(hist_a[group])
        assert max(abs(a - b) for a, b in zip(hist_p[group], hist_a[group])) <= 1, group


@pytest.mark.parametrize("method", ["pgd", "pgd.official"])
def test_packed_pgd_equals_the_same_runs_alone(tmp_path, bench_home, method):
    # two seeds with different bias ratios; pgd.official also augments the biased phase and starts
    # the de-biased model from the biased one
    specs = _specs(method, ((0, 0.9), (1, 0.95)))
    packed = packed_equals_alone(specs, tmp_path, bench_home, keep_model=False,
                                 check=lambda p, a: assert_same_prepare(p["prepare"], a["prepare"]))
    # the runs really differ (seed, data): own scores, own draws, own losses
    shares = {r["prepare"]["pgd.conflicting_draw_share"] for r in packed}
    losses = {r["history"][0]["train.loss"] for r in packed}
    assert len(shares) == 2 and len(losses) == 2


def test_packed_pgd_resumes_after_an_interruption(tmp_path, bench_home):
    specs = _specs("pgd", ((2, 0.9), (3, 0.9), (4, 0.9)), epochs=2)

    store = ResultStore(tmp_path / "packed")
    ckpt = interrupt_after_first_epoch(specs, store, bench_home, keep_model=False)
    packed = run_pack(specs, store=store, home=bench_home, device="cpu", progress=False, keep_model=False)
    assert not ckpt.exists()
    for spec, result in zip(specs, packed):
        alone = run(spec, store=ResultStore(tmp_path / "alone"), home=bench_home, device="cpu", progress=False,
                    keep_model=False)
        assert_same_records(result.record, alone.record)
        assert_same_prepare(result.record["prepare"], alone.record["prepare"])
        assert not checkpoint_path(spec, bench_home).exists()


def test_packed_dropout_draws_each_networks_masks_from_its_own_stream():
    # a network with dropout (the engine's FastDropout, see benchmark.engine.fast_path), packed, trains
    # each member exactly as that member alone
    def net():
        return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), FastDropout(0.5), torch.nn.Linear(16, 3))

    class Stream:
        def __init__(self, seed):
            self.state = torch.Generator().manual_seed(seed).get_state()

        def __enter__(self):
            self.saved = torch.get_rng_state()
            torch.set_rng_state(self.state)

        def __exit__(self, *exc):
            self.state = torch.get_rng_state()
            torch.set_rng_state(self.saved)

    torch.manual_seed(0)
    nets = [net(), net()]
    x = torch.randn(2, 5, 6)
    alone = []
    for j, n in enumerate(nets):
        torch.manual_seed(10 + j)
        alone.append(torch.cat([n(x[j]), n(x[j])]))  # two forward passes: two draws of the masks
    packed = PackedModule(nets, [Stream(10), Stream(11)])
    out = [packed(x.flatten(0, 1)).unflatten(0, (2, -1)) for _ in range(2)]
    together = torch.cat([torch.stack(out, 1)[j].flatten(0, 1) for j in range(2)]).reshape(2, 10, 3)
    assert torch.allclose(together, torch.stack(alone), atol=1e-6)
    assert not torch.equal(out[0], out[1])  # fresh masks each pass
    packed.eval()
    assert torch.allclose(packed(x.flatten(0, 1)), torch.cat([n.eval()(x[j]) for j, n in enumerate(nets)]), atol=1e-6)
    assert isinstance(packed.member(1)[2], FastDropout)
