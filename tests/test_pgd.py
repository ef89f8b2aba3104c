"""PGD (per-sample-gradient de-biasing), its de-noising wrapper, REPAIR and AFLite.

- vectorised per-sample gradients (closed form, torch.func) equal a per-sample backward loop;
- the rejection sampler is reproducible and over-samples high-score samples;
- the de-noising split on a 10 %-noise set keeps most clean minority samples and drops most noisy
  ones (counts printed like PGD Table 16);
- the methods run through the engine, resume from a checkpoint, and (slow) pgd beats vanilla on
  the minority at 1 % bias-conflicting samples.
"""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from benchmark import DATASETS, make_spec
from benchmark import per_sample as ps
from benchmark.engine import Loader, _fixed_subset, run
from benchmark.nets import build_backbone
from benchmark.noise import flip_labels
from benchmark.store import ResultStore

TOL = 1e-5
RATIO = {"bias_ratio": 0.9}  # one cached dataset (10 % minority) for every test in this file


@pytest.fixture(scope="session")
def real_batch(bench_home, data_root):
    """48 real Colored MNIST (PGD protocol, 10 % conflicting) training images, as the engine feeds them."""
    ds = DATASETS.get("colored_mnist_ratio")().build(RATIO, data_root=data_root, cache_dir=bench_home / "cache")
    split = ds["train"].subset(torch.arange(48))
    loader = Loader(split, ds.info.mean, ds.info.std, torch.device("cpu"))
    batch = loader.batch(torch.arange(48))
    torch.manual_seed(0)
    net = build_backbone(ds.info).eval()
    return net, batch.x, batch.y, ds.info.num_classes


def _close(a, b, tol=TOL):
    a, b = a.double(), b.double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30)) < tol


@pytest.mark.parametrize("p", [2.0, 0.7])
def test_closed_form_scores_equal_the_per_sample_backward_loop(real_batch, p):
    net, x, y, c = real_batch
    names = ps.select_params(net, ps.FC)
    assert names == ["g.weight"]
    ref = ps.naive_stats(net, names, x, y, c, k=20, p=p)
    got = ps.closed_form_stats(net, [(x[:30], y[:30]), (x[30:], y[30:])], c, k=20, p=p)
    assert _close(got.norm, ref.norm)
    assert torch.equal(got.dims, ref.dims)
    assert _close(ps.magnitude_score(got.norm, y, c), ps.magnitude_score(ref.norm, y, c))
    d_got, d_ref = ps.direction_score(got.sub, y, c), ps.direction_score(ref.sub, y, c)
    assert float((d_got - d_ref).abs().max()) < TOL
    assert float(d_ref.max()) > 0.01  # not all floored: the comparison sees real likelihoods


@pytest.mark.parametrize("params,k", [(ps.FC, 20), ("all", 100)])
def test_torch_func_scores_equal_the_per_sample_backward_loop(real_batch, params, k):
    net, x, y, c = real_batch
    if params == "all":
        x, y = x[:24], y[:24]
    names = ps.select_params(net, params)
    ref = ps.naive_stats(net, names, x, y, c, k=k)
    got = ps.func_stats(net, names, [(x, y)], c, k=k, chunk=16)
    assert _close(got.norm, ref.norm)
    assert torch.equal(got.dims, ref.dims)
    assert float((ps.direction_score(got.sub, y, c) - ps.direction_score(ref.sub, y, c)).abs().max()) < TOL
    if params == "all":
        assert got.sub.shape == (len(y), 100) and len(names) > 2


def test_scores_follow_the_paper_definitions():
    y = torch.tensor([0, 0, 0, 1, 1])
    norm = torch.tensor([1.0, 2.0, 4.0, 1.0, 3.0])
    m = ps.magnitude_score(norm, y, 2)
    assert torch.allclose(m[:3].sum(), torch.tensor(1.0, dtype=m.dtype)) and m[0] > m[1] > m[2]
    d = torch.tensor([0.5, 0.25, 0.25, 0.9, 0.1], dtype=torch.float64)
    assert torch.allclose(ps.harmonic_score(m, d, 0.0), m)                   # λ = 0: magnitude only
    assert torch.allclose(ps.harmonic_score(m, d, 1.0), 2 * m * d / (m + d))  # plain harmonic mean
    p = ps.acceptance_probability(ps.harmonic_score(m, d))
    assert float(p.max()) == 1.0 and bool((p > 0).all())
    # vMF: samples along the class's mean direction are the most likely; a zero gradient is typical.
    sub = torch.tensor([[1.0, 0.0], [0.9, 0.1], [-1.0, 0.2], [0.0, 0.0], [1.0, 1.0]])
    logf, kappa = ps.vmf_log_density(sub, torch.zeros(5, dtype=torch.long), 1)
    assert logf[0] > logf[2] and logf[3] == kappa[0]


def test_rejection_sampler_is_reproducible_and_oversamples_high_scores():
    n = 5000
    weight = torch.ones(n, dtype=torch.float64)
    high = torch.arange(n) % 50 == 0  # 2 % of the samples with 20× the weight
    weight[high] = 20.0
    g = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    for draw in (lambda s: ps.rejection_sample(weight / weight.max(), n, g(s)),
                 lambda s: ps.categorical_sample(weight, n, g(s))):
        a, b, other = draw(1), draw(1), draw(2)
        assert torch.equal(a, b) and not torch.equal(a, other)
        assert len(a) == n and int(a.min()) >= 0 and int(a.max()) < n
        share = float(high[a].double().mean())
        expected = float(weight[high].sum() / weight.sum())  # 20·0.02 / (20·0.02 + 0.98) ≈ 0.29
        assert abs(share - expected) < 0.03, (share, expected)


def test_pgd_method_samples_reproducibly_and_survives_a_state_dict_round_trip():
    from benchmark_methods.pgd import PGD, PGDHParams

    info = DATASETS.get("colored_mnist_ratio")().info(DATASETS.get("colored_mnist_ratio").Params())
    method = PGD(PGDHParams(), info, epochs=2)
    method.sample_weight = torch.linspace(0.1, 1.0, 300, dtype=torch.float64)
    order = method.sample_indices(300, torch.Generator().manual_seed(7))
    assert torch.equal(order, method.sample_indices(300, torch.Generator().manual_seed(7)))
    assert float((order >= 150).double().mean()) > 0.6  # the upper half carries ~2/3 of the weight
    fresh = PGD(PGDHParams(), info, epochs=2)
    fresh.load_state_dict(method.state_dict())  # the per-sample buffer is resized, not rejected
    assert torch.equal(fresh.sample_weight, method.sample_weight)


def test_denoise_keeps_clean_minority_and_drops_noisy_labels(bench_home, data_root):
    """Algorithm 3's split on a real 10 %-noise subset (PGD Sec. 5 / Fig. 6 setting: 10 % minority,
    10 % noisy labels), counted like Table 16."""
    from benchmark_methods.denoise import DenoiseHParams, clean_split, compensated_loss, split_counts
    from benchmark_methods.pgd import fit

    ds = DATASETS.get("colored_mnist_ratio")().build(RATIO, data_root=data_root, cache_dir=bench_home / "cache")
    train = flip_labels(_fixed_subset(ds["train"], 3000), 0.1, ds.info.num_classes)
    info = dataclasses.replace(ds.info, backbone="lff_mlp")
    loader = Loader(train, info.mean, info.std, torch.device("cpu"))
    torch.manual_seed(0)
    net = build_backbone(info)
    hp = DenoiseHParams(lr=0.05, momentum=0.9, batch_size=64, lr_milestones=())
    fit(net, loader, 6, hp, loss="ce", augment=False)
    net.eval()
    with torch.no_grad():
        loss, entropy = (torch.cat(t) for t in zip(*[compensated_loss(net(x), y) for x, y in ps.Rebatch(loader)]))
    keep, delta = clean_split(loss, entropy)
    counts = split_counts(keep, train.attrs["noisy"], train.aligned)
    print("\nPGD Table 16 layout (3000 real samples, 10 % minority, 10 % noise):", json.dumps(counts))
    kept = lambda cell: counts[f"denoise.kept.{cell}"] / max(counts[f"denoise.before.{cell}"], 1)  # noqa: E731
    assert kept("clean_minor") > 0.5
    assert kept("clean_major") > 0.5
    noisy_kept = counts["denoise.kept.noisy_major"] + counts["denoise.kept.noisy_minor"]
    noisy_all = counts["denoise.before.noisy_major"] + counts["denoise.before.noisy_minor"]
    assert noisy_kept / noisy_all < 0.2
    # the compensation matters: a plain loss threshold at the same keep rate keeps fewer clean minority
    plain = loss <= loss.kthvalue(int(keep.sum())).values
    minority = ~train.aligned & ~train.attrs["noisy"]
    assert int((keep & minority).sum()) >= int((plain & minority).sum())


TINY = dict(epochs=1, max_train=400, max_eval=200)


@pytest.mark.parametrize("method,hparams,noise", [
    ("pgd", {"biased_epochs": 1}, 0.0),
    ("pgd.official", {"biased_epochs": 1}, 0.0),
    ("repair", {"weight_epochs": 1}, 0.0),
    ("aflite", {"feature_epochs": 1, "m": 4, "linear_steps": 5}, 0.0),
    ("denoise", {"noise_epochs": 1, "inner": "repair", "inner_set": "weight_epochs=1"}, 0.1),
])
def test_methods_run_through_the_engine(tmp_path, bench_home, method, hparams, noise):
    spec = make_spec(method, "colored_mnist_ratio", dataset_params=RATIO, hparams=hparams,
                     label_noise=noise, **TINY)
    rec = run(spec, store=ResultStore(tmp_path / "runs"), home=bench_home, progress=False, keep_model=False).record
    row = rec["history"][-1]
    assert row["train.loss"] == row["train.loss"] and 0.0 <= rec["final"]["test"]["acc"] <= 1.0
    prep = rec["prepare"]
    if method.startswith("pgd"):
        assert 0 < prep["pgd.conflicting_draw_share"] < 1 and prep["score_samples_per_s"] > 0
    elif method == "repair":
        assert 0 < prep["repair.kept"] <= 400 and prep["repair.bias"] <= 1
    elif method == "aflite":
        assert prep["aflite.kept"] < 400 and prep["aflite.rounds"] >= 1
    else:
        assert prep["denoise.total"] == 400 and prep["denoise.before.noisy_major"] + prep["denoise.before.noisy_minor"] == 40
        assert 0 < prep["denoise.kept"] < 400 and "inner.repair.kept" in prep


def test_denoise_rejects_a_bad_inner_configuration():
    from benchmark.hparams import from_dict
    from benchmark_methods.denoise import DenoiseHParams

    with pytest.raises(ValueError, match="cannot wrap itself"):
        from_dict(DenoiseHParams, {"inner": "denoise"})
    with pytest.raises(ValueError, match="unknown parameter"):
        from_dict(DenoiseHParams, {"inner": "pgd", "inner_set": "no_such_field=1"})
    with pytest.raises(Exception, match="unknown method"):
        from_dict(DenoiseHParams, {"inner": "no_such_method"})


def test_pgd_resumes_with_its_scores(tmp_path, bench_home):
    """A run killed after its first epoch resumes without re-scoring and ends like an uninterrupted one."""
    spec = make_spec("pgd", "colored_mnist_ratio", dataset_params=RATIO,
                     hparams={"biased_epochs": 1}, epochs=2, max_train=300, max_eval=200)

    class Stop(Exception):
        pass

    def stop_after_first(epoch, row):
        if epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        run(spec, store=ResultStore(tmp_path / "a"), home=bench_home, progress=False, on_epoch=stop_after_first)
    resumed = run(spec, store=ResultStore(tmp_path / "a"), home=bench_home, progress=False, keep_model=False).record
    straight = run(spec, store=ResultStore(tmp_path / "b"), home=bench_home, progress=False, keep_model=False).record
    assert resumed["final"]["test"] == straight["final"]["test"]
    untimed = lambda prep: {k: v for k, v in prep.items() if not k.endswith("_s")}  # noqa: E731
    assert untimed(resumed["prepare"]) == untimed(straight["prepare"])


@pytest.mark.slow
def test_pgd_beats_vanilla_on_the_minority_at_one_percent(tmp_path, capsys):
    """PGD's headline ordering (its Table 1 at 99 % bias): minority-test accuracy above vanilla at 1 %
    bias-conflicting samples. CPU budget: colored_mnist_lff (LfF protocol, 60 000 training images,
    1 % conflicting) with its MLP, Table 4's SGD without decay, 5 epochs per phase.

    Asserted for ``pgd`` (its default λ = 0: the magnitude score M and the rejection sampler) and
    for ``pgd.official`` (the released code's p-norm score). ``pgd`` with λ = 1 (vMF direction on
    k = 100 dimensions) is recorded but only checked to over-sample the minority: its direction
    term dominates 1/S (κ̂ is in the hundreds, so 1/D spans the official 1e8 floor) and in this
    budget it lands level with vanilla (recorded run: 18.2 % vs 18.7 %)."""
    epochs = 5
    table4 = {"lr": 0.01, "momentum": 0.8, "weight_decay": 1e-3, "batch_size": 256, "lr_step": 40}
    no_decay = {"biased_epochs": epochs, "lr_milestones": [], "lr_step": 40}
    common = dict(dataset_params={"conflicting_ratio": 0.01}, epochs=epochs, seed=0)
    store = ResultStore(tmp_path / "runs")
    out = {}
    for label, method, hparams in (("vanilla", "vanilla", table4), ("pgd", "pgd", no_decay),
                                   ("pgd lam=1", "pgd", {**no_decay, "lam": 1.0}),
                                   ("pgd.official", "pgd.official", {"biased_epochs": epochs})):
        rec = run(make_spec(method, "colored_mnist_lff", hparams=hparams, **common), store=store,
                  home=tmp_path, progress=False, keep_model=False).record
        test = rec["final"]["test"]
        out[label] = {"minority": test["conflicting_acc"], "majority": test["aligned_acc"],
                      "epoch_s": [h["train_time_s"] for h in rec["history"]], "prepare": rec["prepare"]}
    with capsys.disabled():
        print("\n" + json.dumps(out, indent=1))
    assert out["pgd.official"]["minority"] > out["vanilla"]["minority"] + 0.1
    assert out["pgd"]["minority"] > out["vanilla"]["minority"] + 0.05
    prep = out["pgd lam=1"]["prepare"]
    assert prep["pgd.conflicting_draw_share"] > prep["pgd.conflicting_fraction"]
