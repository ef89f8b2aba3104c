"""The README's main job: `python -m benchmark demo` plans the demo profile and prints a table whose
numbers come from the store and the transcribed PGD Table 1."""
from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from benchmark.demo import demo_rows, demo_table
from benchmark.provenance import mark_stale
from benchmark.references import load_references
from benchmark.store import ResultStore

REPO = Path(__file__).resolve().parents[1]


def _as_demo(frame: pd.DataFrame, epoch: int) -> pd.DataFrame:
    """The shipped 1 % paper-budget runs read at ``epoch``, tagged as demo runs (the demo profile is
    the first 30 epochs of the same runs: Adam without decay)."""
    sel = frame[(frame["tag.suite"] == "lff.colored_mnist") & (frame["tag.profile"] == "paper")
                & ((frame["p.conflicting_ratio"] - 0.01).abs() < 1e-9)].copy()
    for key in ("acc", "conflicting_acc", "aligned_acc"):
        sel[f"test.{key}"] = [rec["history"][epoch - 1]["test"][key] for rec in sel["record"]]
    sel["tag.profile"] = "demo"
    sel["epochs"] = epoch
    sel["run_id"] = sel["run_id"] + "-demo"
    sel["record"] = [{**rec, "tags": {**rec["tags"], "profile": "demo"}} for rec in sel["record"]]
    return sel


def test_demo_table_sets_this_run_beside_the_shipped_paper_runs_and_pgd_table1():
    frame = mark_stale(ResultStore(REPO / "results" / "runs").query())
    demo = _as_demo(frame, 30)
    both = pd.concat([frame, demo], ignore_index=True)
    rows = {(r["method"], r["source"]): r for r in demo_rows(both, load_references())}

    mine = rows[("LfF", "this demo")]["test.conflicting_acc"]
    expected = [100 * v for v in demo[demo["method"] == "lff"]["test.conflicting_acc"]]
    assert mine.n == 3
    assert abs(mine.mean - statistics.fmean(expected)) < 1e-9
    shipped = rows[("Vanilla", "paper budget, shipped records")]
    assert shipped["epochs"] == "100" and shipped["test.acc"].n == 3
    pgd = rows[("LfF", "PGD paper, Table 1 (99 %)")]
    assert (pgd["test.conflicting_acc"].mean, pgd["test.aligned_acc"].mean) == (81.42, 95.56)
    assert pgd["test.acc"].n == 0  # PGD prints no unbiased column: shown as "—", not invented

    text = demo_table(both, load_references())
    assert "this demo" in text and "81.42 ± 3.98" in text and "51.97 ± 0.84" in text
    finding = next(line for line in text.splitlines() if line.startswith("This demo"))
    v, lff = rows[("Vanilla", "this demo")], rows[("LfF", "this demo")]
    assert f"{lff['test.conflicting_acc'].mean - v['test.conflicting_acc'].mean:+.1f} points" in finding


def test_demo_table_without_runs_says_not_measured():
    text = demo_table(pd.DataFrame(), load_references())
    assert "This demo: not measured" in text and "The paper-budget runs: not measured" in text


def test_demo_plans_six_runs_of_the_demo_profile(tmp_path):
    out = subprocess.run([sys.executable, "-m", "benchmark", "demo", "--dry-run", "--results-dir", str(tmp_path / "r"),
                          "--home", str(tmp_path / "h")], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "profile 'demo'" in out.stdout and "6 runs" in out.stdout


@pytest.mark.slow
def test_a_demo_run_is_the_first_30_epochs_of_the_shipped_paper_run(tmp_path):
    """The README's claim: a demo run (30 epochs) ends where the shipped 100-epoch run of the same
    seed stood after 30 epochs (Adam without decay; same data order and initialisation)."""
    out = subprocess.run([sys.executable, "-m", "benchmark", "run", "--suite", "lff.colored_mnist", "--profile", "demo",
                          "--match", "vanilla on", "--match", "seed=0", "--results-dir", str(tmp_path / "r"),
                          "--home", str(tmp_path / "h"), "--no-mlflow", "--no-progress", "--workers", "2"],  # 1 thread each, as the shipped runs
                         capture_output=True, text=True, cwd=REPO, timeout=900)
    assert out.returncode == 0, out.stderr
    (demo,) = ResultStore(tmp_path / "r").records()
    frame = ResultStore(REPO / "results" / "runs").query()
    shipped = frame[(frame["tag.suite"] == "lff.colored_mnist") & (frame["tag.profile"] == "paper")
                    & (frame["method"] == "vanilla") & (frame["seed"] == 0)
                    & ((frame["p.conflicting_ratio"] - 0.01).abs() < 1e-9)]["record"].iloc[0]
    for key in ("acc", "conflicting_acc", "aligned_acc"):
        assert demo["final"]["test"][key] == pytest.approx(shipped["history"][29]["test"][key], abs=2e-3)
