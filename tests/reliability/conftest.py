"""Fixtures of the fault-injection tests: real records from tiny real runs."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmark.engine import run
from benchmark.store import ResultStore

from .helpers import tiny_spec


@pytest.fixture(scope="session")
def record_source(tmp_path_factory, bench_home, data_root) -> Path:
    """A store with two real records (vanilla, seeds 0 and 1, a tiny budget), made once."""
    root = tmp_path_factory.mktemp("record_source")
    store = ResultStore(root)
    for seed in (0, 1):
        run(tiny_spec(seed), store=store, home=bench_home, data_root=data_root, progress=False, keep_model=False)
    return root


@pytest.fixture
def stored(record_source, tmp_path) -> ResultStore:
    """A private copy of the two-record store."""
    root = tmp_path / "runs"
    shutil.copytree(record_source, root)
    return ResultStore(root)
