"""scripts/gpu-window.sh on a CPU (issue 14, item 5): it ends on time and leaves one archive (plus
its provenance) that ``import`` reads back."""
from __future__ import annotations

import os
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from benchmark.cli import main

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu-window.sh"


def window(budget: str, out: Path, *extra: str, reserve: int = 15, timeout: int = 600, **env_extra: str):
    env = {**os.environ, "OUT": str(out), "GPU_WINDOW_RESERVE_S": str(reserve), **env_extra}
    t0 = time.time()
    proc = subprocess.run(["bash", str(SCRIPT), budget, *extra], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    return proc, time.time() - t0


def members(archive: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        return tar.getnames()


def test_a_window_too_short_to_train_still_ends_on_time_with_its_archive(tmp_path):
    out = tmp_path / "gpu-out"
    proc, elapsed = window("8s", out, "--device", "cpu", reserve=3)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert elapsed <= 8 + 10  # the budget, plus this shared machine's start-up jitter
    assert sorted(p.name for p in out.iterdir()) == ["provenance.txt", "runs.tar.gz"]
    names = members(out / "runs.tar.gz")
    assert "logs/provenance.txt" in names and not [n for n in names if n.endswith(".json")]
    prov = (out / "provenance.txt").read_text()
    assert "commit: " in prov and "torch: " in prov and "nvidia-smi:" in prov
    assert "not started" in proc.stdout
    assert "bootstrap: " in proc.stdout and "pgd.table1 stays unpriced" in proc.stdout  # too little time for it


def test_bad_budget_is_one_error_line(tmp_path):
    proc, _ = window("soon", tmp_path / "o", "--device", "cpu")
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error:") and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_cpu_window_trains_first_seeds_ends_on_time_and_imports_back(tmp_path, capsys):
    out = tmp_path / "gpu-out"
    perf_tables = {p: p.read_bytes() for p in (REPO / "reports" / "perf").glob("*.md")}
    # the PGD bootstrap runs here too (its threshold lowered: a quick run takes seconds on a CPU)
    proc, elapsed = window("150s", out, "--device", "cpu", "--profile", "quick",
                           GPU_WINDOW_BOOTSTRAP_MIN_S="20", GPU_WINDOW_BOOTSTRAP_KEEP_S="10")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert elapsed <= 150 + 10
    assert "bootstrap: one pgd.table1 cell" in proc.stdout and "bootstrap: exit 0" in proc.stdout
    # the harness's table travels in the archive; the repository's committed tables are left alone
    assert any(n.startswith("logs/") and n.endswith("-cores.md") for n in members(out / "runs.tar.gz"))
    assert perf_tables == {p: p.read_bytes() for p in (REPO / "reports" / "perf").glob("*.md")}
    records = [n for n in members(out / "runs.tar.gz") if n.endswith(".json")]
    assert records  # the quick profile fits some runs in 150 s on a CPU
    assert main(["import", str(out / "runs.tar.gz"), "--no-mlflow", "--results-dir", str(tmp_path / "store")]) == 0
    assert f"imported {len(records)} record(s)" in capsys.readouterr().out
