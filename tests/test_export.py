"""``export --parquet``: the result store as one Parquet file that pandas and HF datasets read."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from benchmark.store import ResultStore

REPO = Path(__file__).resolve().parents[1]
STORE = REPO / "tests" / "fixtures" / "store"  # real records of quick runs


def cli(*args):
    return subprocess.run([sys.executable, "-m", "benchmark", *args], cwd=REPO, capture_output=True, text=True,
                          env=os.environ, timeout=300)


def test_export_writes_every_record_and_never_overwrites_a_file(tmp_path):
    out = tmp_path / "runs.parquet"
    res = cli("export", "--parquet", str(out), "--results-dir", str(STORE))
    assert res.returncode == 0, res.stderr
    stored = ResultStore(STORE).query().set_index("run_id").sort_index()
    df = pd.read_parquet(out).set_index("run_id").sort_index()
    assert list(df.index) == list(stored.index) and len(df) == 16
    assert {"method", "dataset", "seed", "tag.suite", "tag.profile", "test.acc", "test.conflicting_acc"} <= set(df.columns)
    assert df["test.acc"].dtype == float and df["test.acc"].tolist() == stored["test.acc"].tolist()
    for run_id, text in df["record"].items():
        assert json.loads(text) == stored.loc[run_id, "record"]
    before = out.read_bytes()
    again = cli("export", "--parquet", str(out), "--results-dir", str(STORE))
    assert again.returncode == 2 and again.stderr.strip() == (
        f"error: --parquet {out}: the file exists; name a new file (or delete that one first)")
    assert out.read_bytes() == before


def test_hugging_face_datasets_loads_the_export_offline(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")  # not a dependency: a reader a researcher may have
    if not hasattr(datasets, "load_dataset"):  # without it, `datasets` is this repository's plug-in folder
        pytest.skip("Hugging Face datasets is not installed")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    from benchmark.export import export_parquet
    n = export_parquet(ResultStore(STORE), tmp_path / "runs.parquet")
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "runs.parquet"), split="train",
                               cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == n == 16 and sorted(ds["run_id"]) == sorted(p.stem for p in STORE.glob("*.json"))
