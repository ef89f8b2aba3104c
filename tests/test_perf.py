"""The throughput harness runs end to end in seconds and writes its table (`perf` tiny mode)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_perf_tiny_mode_writes_the_table(tmp_path):
    out = subprocess.run([sys.executable, "-m", "benchmark", "perf", "--seconds", "0.1", "--repeats", "1",
                          "--models", "lff_mlp", "lnl_convnet", "--pack-sizes", "1", "2", "--out", str(tmp_path),
                          "--machine", "ci", "--note", "tiny"],
                         cwd=REPO, capture_output=True, text=True, env=dict(os.environ), timeout=300)
    assert out.returncode == 0, out.stderr
    table = (tmp_path / "ci.md").read_text()
    for measure in ("train img/s", "eval img/s", "time to first step", "packed K=1 img/s", "packed K=2 img/s",
                    "PGD scoring samples/s", "LNL unlearning train img/s", "one run's GEMM FLOP/s"):
        assert measure in table
    rows = [line for line in table.splitlines() if line.startswith(("| lff_mlp", "| lnl_convnet", "| simple_convnet"))]
    assert len(rows) == 6 + 6 + 1  # MLP: 3 + 2 packs + GEMM share; conv net: 3 + LNL + 2 packs; PGD scoring
    assert all("×" in row for row in rows)  # every row has a measured ratio
    assert "- note: tiny" in table and "load average" in table


def test_perf_rejects_bad_options(tmp_path):
    out = subprocess.run([sys.executable, "-m", "benchmark", "perf", "--seconds", "0", "--out", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.startswith("error:") and "Traceback" not in out.stderr
    assert not list(tmp_path.iterdir())


def test_perf_interrupted_writes_the_rows_it_measured(tmp_path):
    # the GPU window stops the harness with SIGINT at its time limit: the finished rows must survive
    proc = subprocess.Popen([sys.executable, "-m", "benchmark", "perf", "--seconds", "0.1", "--repeats", "1",
                             "--models", "lff_mlp", "resnet18", "--pack-sizes", "1", "--no-scoring",
                             "--out", str(tmp_path), "--machine", "ci"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
    for line in proc.stdout:
        if "lff_mlp packed K=1" in line:  # every lff_mlp row is done; resnet18 is next
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, rest
    table = (tmp_path / "ci.md").read_text()
    assert "- interrupted: yes" in table
    assert "| lff_mlp" in table and "packed K=1 img/s" in table and "| resnet18" not in table
