"""Packed runs: K runs trained as one stacked model store the records of the same K runs alone
(tolerance: tests/packs.py)."""
from __future__ import annotations

import pytest

from benchmark.engine import checkpoint_path, run
from benchmark.pack import group_specs, run_pack
from benchmark.spec import make_spec
from benchmark.store import ResultStore
from packs import assert_same_records, interrupt_after_first_epoch, packed_equals_alone

def _specs(method: str, dataset: str, seeds, **kw):
    return [make_spec(method, dataset, seed=s, **kw) for s in seeds]


def test_packed_gray_equals_the_same_runs_alone(tmp_path, bench_home):
    # LNL's conv net (BatchNorm: each run keeps its own statistics), three seeds
    specs = _specs("gray", "colored_mnist", (0, 1, 2), epochs=2, max_train=384, max_eval=256,
                   dataset_params={"sigma2": 0.02})
    packed = packed_equals_alone(specs, tmp_path, bench_home)
    assert not any(checkpoint_path(spec, bench_home).exists() for spec in specs)
    # the runs really differ from each other (different seeds, own sample order)
    losses = {r["history"][0]["train.loss"] for r in packed}
    assert len(losses) == 3


def test_packed_runs_with_different_data_equal_alone_and_resume_after_an_interruption(tmp_path, bench_home):
    # different dataset parameters in one pack
    specs = [make_spec("gray", "colored_mnist_lff", seed=s, epochs=2, max_train=512, max_eval=256,
                       dataset_params={"conflicting_ratio": r})
             for s, r in ((0, 0.01), (1, 0.05))]

    store = ResultStore(tmp_path / "packed")
    ckpt = interrupt_after_first_epoch(specs, store, bench_home)
    assert not any(store.has(s.run_id) for s in specs)
    packed = run_pack(specs, store=store, home=bench_home, device="cpu", progress=False)  # resumes at epoch 1
    assert not ckpt.exists()
    for spec, result in zip(specs, packed):
        alone = run(spec, store=ResultStore(tmp_path / "alone"), home=bench_home, device="cpu", progress=False)
        assert_same_records(result.record, alone.record)
    again = run_pack(specs, store=store, home=bench_home, device="cpu", progress=False)
    assert all(r.cached for r in again)


def test_packed_vanilla_and_lff_equal_the_same_runs_alone(tmp_path, bench_home):
    # the LfF table's two rows: vanilla (one model) and LfF (two models, per-sample EMA tables whose
    # class-wise maxima are taken within each run), different seeds and dataset parameters per pack
    for method in ("vanilla", "lff"):
        specs = [make_spec(method, "colored_mnist_lff", seed=s, epochs=2, max_train=512, max_eval=256,
                           dataset_params={"conflicting_ratio": r}) for s, r in ((0, 0.01), (1, 0.05))]
        packed = packed_equals_alone(specs, tmp_path / method, bench_home)
        if method == "lff":
            assert "biased_model_acc" in packed[0]["final"]["test"]


def test_packable_is_declared_by_each_method_not_inherited():
    from benchmark.pack import packable
    declared = {m: packable(make_spec(m, "colored_mnist")) for m in
                ("vanilla", "gray", "lff", "lnl", "lnl_adv", "grl", "blind_eye", "blind_eye_grl", "pgd", "pgd.official",
                 "jtt", "group_dro", "dfr", "rwg", "subg")}
    # subclasses of vanilla (group baselines) change update/prepare/sampling; LNL's GRL, Blind Eye's GRL
    # variant and pgd.official declare it themselves
    assert [m for m, p in declared.items() if p] == ["vanilla", "gray", "lff", "lnl", "lnl_adv", "grl", "blind_eye",
                                                     "blind_eye_grl", "pgd", "pgd.official"]


def test_group_specs_packs_compatible_runs_only():
    a = _specs("gray", "colored_mnist", (0, 1, 2), epochs=1)
    b = _specs("gray", "colored_mnist", (0, 1), epochs=2)  # another epoch budget: another pack
    noisy = [make_spec("gray", "colored_mnist", seed=5, epochs=1, label_noise=0.1)]  # data differs: packs with a
    lonely = _specs("rubi", "colored_mnist", (0, 1), epochs=1)  # not packable: one run each
    groups = group_specs(a + b + noisy + lonely, size=2)
    as_ids = [[s.run_id for s in g] for g in groups]
    assert [a[0].run_id, a[1].run_id] in as_ids
    assert [a[2].run_id, noisy[0].run_id] in as_ids
    assert [b[0].run_id, b[1].run_id] in as_ids
    assert [[s.run_id] for s in lonely] == [g for g in as_ids if g[0] in {s.run_id for s in lonely}]
    assert sorted(sum(as_ids, [])) == sorted(s.run_id for s in a + b + noisy + lonely)


def test_cli_run_pack(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path
    repo = Path(__file__).resolve().parents[1]
    args = [sys.executable, "-m", "benchmark", "run", "--method", "gray", "--dataset", "colored_mnist_lff",
            "--epochs", "1", "--max-train", "256", "--no-mlflow", "--no-progress"]
    out = subprocess.run(args + ["--seed", "0", "1", "--pack", "2"], cwd=repo, capture_output=True, text=True,
                         env=dict(os.environ), timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("(pack of 2)") == 2
    store = ResultStore()
    records = [store.get(line.split()[0]) for line in out.stdout.splitlines() if "(pack of 2)" in line]
    assert [r["spec"]["seed"] for r in records] == [0, 1]
    assert all(r["tags"]["pack_size"] == 2 for r in records)
    bad = subprocess.run(args + ["--pack", "zero"], cwd=repo, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --pack") and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_packed_lnl_equals_the_same_runs_alone(tmp_path, bench_home):
    # bias heads on f's map, gradient reversal, three optimisers
    specs = _specs("lnl", "colored_mnist", (0, 1), epochs=2, max_train=384, max_eval=256,
                   dataset_params={"sigma2": 0.02})
    packed_equals_alone(specs, tmp_path, bench_home)


def test_auto_pack_size_on_cpu_packs_mlps_not_convnets():
    conv = _specs("gray", "colored_mnist", range(3), epochs=1)
    mlp = _specs("gray", "colored_mnist_lff", range(10), epochs=1)
    groups = group_specs(conv + mlp, "auto", device="cpu")
    assert [len(g) for g in groups] == [1, 1, 1, 8, 2]
    with pytest.raises(ValueError, match="pack size"):
        group_specs(conv, 0)
