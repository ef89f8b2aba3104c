"""Shared fixtures: the real data root and one dataset cache for the whole session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _data_root() -> Path:
    root = Path(os.environ.get("BENCHMARK_DATA_ROOT", REPO.parent / "shared" / "data")).resolve()
    if not (root / "MNIST" / "raw").is_dir():
        raise RuntimeError(
            f"tests need the real MNIST files under {root}/MNIST/raw (*.gz); "
            "set BENCHMARK_DATA_ROOT to the folder that holds MNIST/ and FashionMNIST/"
        )
    return root


@pytest.fixture(scope="session")
def data_root() -> Path:
    return _data_root()


@pytest.fixture(scope="session")
def bench_home(tmp_path_factory) -> Path:
    """A working folder shared by the session so each dataset is generated once."""
    return tmp_path_factory.mktemp("home")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, bench_home, data_root, tmp_path):
    """Every test gets the real data root, the shared cache, and a private result store."""
    monkeypatch.setenv("BENCHMARK_DATA_ROOT", str(data_root))
    monkeypatch.setenv("BENCHMARK_HOME", str(bench_home))
    monkeypatch.setenv("BENCHMARK_RESULTS", str(tmp_path / "runs"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
