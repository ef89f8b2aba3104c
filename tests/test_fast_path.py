"""Fixed costs and the fast paths: precision in the run id, GPU opt-ins, the CPU fast path (channels-last
conv nets, cheap dropout masks), evaluation batches."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmark.data import Split
from benchmark.dropout import FastDropout
from benchmark.engine import (EVAL_BATCH, EVAL_BATCH_CPU_CONV, Loader, eval_batch_size, fast_path, keep_freed_memory,
                              run)
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
    records = sorted((REPO / "results" / "runs").glob("*.json"))
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


def test_cpu_fast_path_puts_conv_nets_in_channels_last_and_swaps_dropout():
    split = Split(torch.zeros(4, 3, 28, 28, dtype=torch.uint8), torch.zeros(4, dtype=torch.long),
                  torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.bool))
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Dropout(0.5), torch.nn.Flatten(), torch.nn.Linear(8 * 26 * 26, 2))
    loader = Loader(split, (0.5,) * 3, (0.5,) * 3, torch.device("cpu"))
    assert eval_batch_size(loader, conv) == EVAL_BATCH_CPU_CONV < eval_batch_size(loader, torch.nn.Linear(2, 2))
    out = fast_path(conv, {"train": loader}, torch.device("cpu"))
    assert out[0].weight.is_contiguous(memory_format=torch.channels_last) and loader.channels_last
    assert type(out[1]) is FastDropout and out[1].p == 0.5
    batch = loader.batch(torch.arange(4))
    assert batch.x.is_contiguous(memory_format=torch.channels_last)
    assert out(batch.x).shape == (4, 2)
    mlp_loader = Loader(split, (0.5,) * 3, (0.5,) * 3, torch.device("cpu"))
    fast_path(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 28 * 28, 2)), {"train": mlp_loader},
              torch.device("cpu"))
    assert not mlp_loader.channels_last
    assert keep_freed_memory()  # glibc accepted the allocator settings (Linux)


@pytest.mark.parametrize("p", [0.5, 0.25])
def test_fast_dropout_keeps_each_element_with_probability_1_minus_p(p):
    torch.manual_seed(0)
    drop = FastDropout(p).train()
    x = torch.ones(400_000, requires_grad=True)
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - (1 - p)) < 0.005
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / (1 - p)))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the gradient is the same mask and scale
    pairs = torch.stack([kept[:-1], kept[1:]]).float()  # neighbouring elements are independent
    assert abs((pairs[0] * pairs[1]).mean().item() - (1 - p) ** 2) < 0.005
    assert not torch.equal(drop(torch.ones(1000)), drop(torch.ones(1000)))  # a fresh mask each call
    assert torch.equal(drop.eval()(x), x)
