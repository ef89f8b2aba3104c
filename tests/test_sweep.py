"""Sweeps: hyperparameter draws as ordinary cached runs, selection across them, recipe export, and a
sweep killed and resumed (slow) without repeating a trial."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from benchmark.engine import run
from benchmark.store import ResultStore
from benchmark.suites import Profile, Setting, Suite
from benchmark import sweep

TINY_SUITE = '''
from benchmark.suites import Profile, Setting, Suite, register_suite

@register_suite("test.sweep_tiny")
class SweepTiny(Suite):
    """A two-method suite on colored_mnist_groups with a seconds-long budget (tests only)."""
    methods = ("vanilla", "group_dro")
    settings = (Setting("colored_mnist_groups", {}),)
    hparams = {m: {"lr": 0.05, "lr_step": 1000000} for m in ("vanilla", "group_dro")}
    profiles = {"quick": Profile(seeds=(0,), epochs=EPOCHS, max_train=MAX_TRAIN, max_eval=MAX_EVAL)}
'''


class _Tiny(Suite):
    """Two methods, seconds per run."""

    name = "test.sweep_tiny"
    methods = ("vanilla", "group_dro")
    settings = (Setting("colored_mnist_groups", {}),)
    hparams = {m: {"lr": 0.05, "lr_step": 10**6} for m in ("vanilla", "group_dro")}
    profiles = {"quick": Profile(seeds=(5,), epochs=1, max_train=256, max_eval=200)}


def test_sweep_plans_draws_as_cached_runs_and_selects(tmp_path):
    store = ResultStore(tmp_path / "runs")
    plan = sweep.plan_sweep([_Tiny()], "quick", hparam_seeds=2, trials=2, store=store, check_data=False)
    assert len(plan.runs) == 2 * 2 * 2 and len({r.run_id for r in plan.runs}) == 8
    assert sorted({r.spec.seed for r in plan.runs}) == [0, 1]  # --trials replaces the profile's seeds
    by = {(r.spec.method, sweep.hparams_seed_of(r), r.spec.seed): r.spec for r in plan.runs}
    assert by[("vanilla", 0, 0)].hparams["lr"] == 0.05  # draw 0 = the suite's recipe
    assert by[("vanilla", 1, 0)].hparams["lr"] != 0.05       # draw 1 replaces the searched fields
    assert by[("vanilla", 1, 0)].hparams == by[("vanilla", 1, 1)].hparams  # same draw, other seed
    assert by[("group_dro", 1, 0)].hparams["eta_q"] != 0.01

    tasks = sweep.tasks(plan)
    assert {t.tags["hparams_seed"] for t in tasks} == {"0", "1"}
    for t in tasks:
        run(t.spec, store=store, tags=t.tags, progress=False)
    again = sweep.plan_sweep([_Tiny()], "quick", hparam_seeds=2, trials=2, store=store, check_data=False)
    assert not again.todo and len(again.cached) == 8  # every trial is an ordinary cached run

    table = sweep.select_table(again, store)
    for method in ("vanilla", "group_dro"):
        for rule in ("biased_val", "worst_group_val", "val_loss", "oracle_worst_group"):
            cell = table.cells[(table.settings[0], method, rule)]
            assert len(cell.values) == 2 and cell.std is not None  # one pick per training seed
    oracle = table.cells[(table.settings[0], "vanilla", "oracle_worst_group")]
    wgv = table.cells[(table.settings[0], "vanilla", "worst_group_val")]
    assert oracle.mean >= wgv.mean  # test-set selection is an upper bound
    text = sweep.render_table(table)
    assert "worst_group_val" in text and "±" in text and "group_dro" in text

    exported = sweep.export_recipe(table, again, store, "worst_group_val")
    out = sweep.write_export(exported, tmp_path / "recipe.toml")
    import tomllib
    loaded = tomllib.loads(out.read_text())
    assert set(loaded["hparams"]) == {"vanilla", "group_dro"}
    assert "eta_q" in loaded["hparams"]["group_dro"]
    assert loaded["rule"] == "worst_group_val"
    with pytest.raises(ValueError, match=".json or .toml"):
        sweep.write_export(exported, tmp_path / "recipe.yaml")


def test_sweep_cli_rejects_bad_rule(tmp_path):
    from benchmark.cli import main
    assert main(["sweep", "--suite", "subpop.mnist", "--report", "--rules", "nonsense",
                 "--results-dir", str(tmp_path)]) == 2


@pytest.mark.slow
def test_sweep_killed_and_resumed_without_repeating_a_trial(tmp_path):
    """``sweep`` with 2 local workers, SIGKILLed once the first trial is stored, then rerun: the rerun
    reports the stored trials as cached, runs only the rest, and leaves the stored records untouched."""
    mod = tmp_path / "plug"
    mod.mkdir()
    (mod / "tiny_sweep_suite.py").write_text(TINY_SUITE.replace("EPOCHS", "3").replace("MAX_TRAIN", "1500")
                                             .replace("MAX_EVAL", "1000"))
    runs, home = tmp_path / "runs", tmp_path / "home"
    script = ("import sys; sys.path.insert(0, %r); import tiny_sweep_suite; from benchmark.cli import main; "
              "raise SystemExit(main(sys.argv[1:]))" % str(mod))
    cmd = [sys.executable, "-c", script, "sweep", "--suite", "test.sweep_tiny", "--profile", "quick",
           "--hparam-seeds", "3", "--trials", "1", "--workers", "2", "--no-mlflow", "--no-progress",
           "--results-dir", str(runs), "--home", str(home)]
    env = {**os.environ, "BENCHMARK_DATA_ROOT": os.environ["BENCHMARK_DATA_ROOT"]}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not list(runs.glob("*.json")) and proc.poll() is None:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(5)  # workers notice their parent's death within a second; one may store the run it was finishing
    first = {p.name: p.read_bytes() for p in runs.glob("*.json")}
    assert 1 <= len(first) < 6, proc.stdout.read()

    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{len(first)} cached, {6 - len(first)} to run" in out.stdout
    assert f"{6 - len(first)} done" in out.stdout
    records = {p.name: p.read_bytes() for p in runs.glob("*.json")}
    assert len(records) == 6
    assert all(records[name] == blob for name, blob in first.items())  # nothing repeated or rewritten
    tags = [json.loads(b)["tags"] for b in records.values()]
    assert sorted(t["hparams_seed"] for t in tags) == ["0", "0", "1", "1", "2", "2"]

    rep = subprocess.run(cmd[:-4] + ["--results-dir", str(runs), "--home", str(home), "--report"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert rep.returncode == 0 and "6/6 runs stored" in rep.stdout and "oracle_worst_group" in rep.stdout


@pytest.mark.slow
def test_sweep_runs_through_submitit_the_slurm_path(tmp_path):
    """The same sweep tasks through ``--executor slurm --cluster local`` (submitit's local executor)."""
    mod = tmp_path / "plug"
    mod.mkdir()
    (mod / "tiny_sweep_suite.py").write_text(TINY_SUITE.replace("EPOCHS", "1").replace("MAX_TRAIN", "256")
                                             .replace("MAX_EVAL", "200"))
    runs = tmp_path / "runs"
    script = ("import sys; sys.path.insert(0, %r); import tiny_sweep_suite; from benchmark.cli import main; "
              "raise SystemExit(main(sys.argv[1:]))" % str(mod))
    cmd = [sys.executable, "-c", script, "sweep", "--suite", "test.sweep_tiny", "--profile", "quick",
           "--hparam-seeds", "2", "--trials", "1", "--executor", "slurm", "--cluster", "local", "--gpus-per-job", "0",
           "--no-mlflow", "--no-progress", "--results-dir", str(runs), "--home", str(tmp_path / "home")]
    env = {**os.environ, "PYTHONPATH": str(mod) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    records = [json.loads(p.read_text()) for p in runs.glob("*.json")]
    assert len(records) == 4 and sorted(r["tags"]["hparams_seed"] for r in records) == ["0", "0", "1", "1"]
