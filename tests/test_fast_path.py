"""Fixed costs and the GPU fast path's CPU-checkable parts: precision in the run id, opt-ins, eval batch."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmark.data import Split
from benchmark.engine import EVAL_BATCH, Loader, eval_batch_size, fast_path, run
from benchmark.spec import RunSpec, make_spec
from benchmark.store import ResultStore

REPO = Path(__file__).resolve().parents[1]


def test_precision_is_in_the_run_id_only_when_set():
    fp32 = make_spec("vanilla", "colored_mnist", seed=3, epochs=1)
    assert "precision" not in fp32.to_dict()
    assert make_spec("vanilla", "colored_mnist", seed=3, epochs=1, precision="fp32").run_id == fp32.run_id
    bf16 = make_spec("vanilla", "colored_mnist", seed=3, epochs=1, precision="bf16")
    assert bf16.to_dict()["precision"] == "bf16" and bf16.run_id != fp32.run_id
    assert RunSpec.from_dict(bf16.to_dict()) == bf16
    with pytest.raises(ValueError, match="precision"):
        make_spec("vanilla", "colored_mnist", precision="fp16")


def test_stored_records_keep_their_run_ids():
    records = sorted((REPO / "results" / "runs").glob("*.json"))[:50]
    assert records
    for path in records:
        rec = json.loads(path.read_text())
        assert RunSpec.from_dict(rec["spec"]).run_id == rec["run_id"], path.name


def test_bf16_run_trains_and_records_its_precision(tmp_path, bench_home):
    spec = make_spec("lff", "colored_mnist_lff", epochs=1, max_train=256, max_eval=128, precision="bf16")
    rec = run(spec, store=ResultStore(tmp_path), home=bench_home, device="cpu", progress=False).record
    assert rec["spec"]["precision"] == "bf16"
    assert 0.0 <= rec["final"]["test"]["acc"] <= 1.0 and rec["history"][0]["train.loss"] > 0


def test_fast_path_options(monkeypatch):
    split = Split(torch.zeros(4, 3, 28, 28, dtype=torch.uint8), torch.zeros(4, dtype=torch.long),
                  torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.bool))
    loader = Loader(split, (0.5,) * 3, (0.5,) * 3, torch.device("cpu"))
    assert eval_batch_size(loader) == EVAL_BATCH
    method = torch.nn.Linear(2, 2)
    monkeypatch.setenv("BENCHMARK_FAST", "channels_last,compile")
    assert fast_path(method, {"train": loader}, torch.device("cpu")) is method  # GPU only
    assert not loader.channels_last
    monkeypatch.setenv("BENCHMARK_FAST", "warp_speed")
    with pytest.raises(ValueError, match="warp_speed"):
        fast_path(method, {}, torch.device("cpu"))
