"""Fixed costs of a run: the evaluation schedule (``eval_every``)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.engine import run
from benchmark.pack import run_pack
from benchmark.planner import expand
from benchmark.reporting.spec import load_specs
from benchmark.selection import STRATEGIES, select
from benchmark.spec import RunSpec, make_spec
from benchmark.store import ResultStore
from benchmark.suites import SUITES

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(max_train=256, max_eval=128)


def test_eval_every_is_in_the_run_id_only_when_set():
    every = make_spec("vanilla", "colored_mnist", seed=3, epochs=4)
    assert "eval_every" not in every.to_dict()
    assert make_spec("vanilla", "colored_mnist", seed=3, epochs=4, eval_every=1).run_id == every.run_id
    sparse = make_spec("vanilla", "colored_mnist", seed=3, epochs=4, eval_every=3)
    assert sparse.to_dict()["eval_every"] == 3 and sparse.run_id != every.run_id
    assert RunSpec.from_dict(sparse.to_dict()) == sparse
    assert [e for e in range(1, 5) if sparse.evaluates(e)] == [3, 4]
    with pytest.raises(ValueError, match="eval_every"):
        make_spec("vanilla", "colored_mnist", eval_every=0)


def test_stored_lff_records_keep_their_run_ids():
    records = [json.loads(p.read_text()) for p in sorted((REPO / "results" / "runs").glob("*.json"))]
    lff = [r for r in records if r["tags"] == {**r["tags"], "suite": "lff.colored_mnist", "profile": "paper"}]
    assert lff
    for rec in lff:
        assert RunSpec.from_dict(rec["spec"]).run_id == rec["run_id"]
    planned = {r.spec.run_id for r in expand([SUITES.get("lff.colored_mnist")()], "paper")[0]}
    assert {r["run_id"] for r in lff} <= planned


def _split_epochs(record: dict) -> list[int]:
    return [row["epoch"] for row in record["history"] if isinstance(row.get("test"), dict)]


def test_run_evaluates_only_its_epochs_and_the_last(tmp_path, bench_home):
    spec = make_spec("lff", "colored_mnist_lff", epochs=3, eval_every=2, **SMALL)
    rec = run(spec, store=ResultStore(tmp_path), home=bench_home, device="cpu", progress=False).record
    assert [row["epoch"] for row in rec["history"]] == [1, 2, 3]
    assert _split_epochs(rec) == [2, 3]
    assert all(row["train.loss"] > 0 for row in rec["history"])
    assert rec["final"]["test"] == rec["history"][-1]["test"]
    assert select(rec, "last").epoch == 3
    with pytest.raises(ValueError, match="eval_every=2"):
        select(rec, "biased_val")


def test_pack_evaluates_only_its_epochs_and_the_last(tmp_path, bench_home):
    specs = [make_spec("vanilla", "colored_mnist_lff", epochs=3, eval_every=2, seed=s, **SMALL) for s in (0, 1)]
    results = run_pack(specs, store=ResultStore(tmp_path), home=bench_home, device="cpu", progress=False)
    assert [r.record["tags"]["pack_size"] for r in results] == [2, 2]  # the pack's loop, not lone runs
    assert [_split_epochs(r.record) for r in results] == [[2, 3], [2, 3]]


def test_sparse_suites_feed_only_last_epoch_tables():
    sparse = [name for name in SUITES.names() if SUITES.get(name).eval_every != 1]
    assert "lnl.table1" in sparse and "lff.colored_mnist" not in sparse
    readers = [(name, spec) for spec in load_specs() for name in sparse if name in spec.suite]
    assert {name for name, _ in readers} == set(sparse)  # each has a report
    for name, spec in readers:
        assert spec.selection == "last", (name, spec.name)
        assert spec.kind == "table", (name, spec.name)  # no per-epoch curve


def test_unbiased_val_finds_its_split_past_unevaluated_rows():
    split = {"acc": 0.5, "group_acc": [[1.0, 0.0], [None, 0.5]]}
    history = [{"epoch": 1}, {"epoch": 2, "val": split}, {"epoch": 3, "val": {**split, "group_acc": [[1.0, 1.0]]}}]
    picked = STRATEGIES["unbiased_val"](history)
    assert (picked.epoch, picked.criterion, picked.score) == (3, "val.balanced_acc", 1.0)


def _method_and_test_loader(method: str, hparams: dict | None):
    import torch

    from benchmark.engine import build_loaders, build_method
    spec = make_spec(method, "colored_mnist_lff", epochs=1, max_eval=300, hparams=hparams)
    dataset, loaders = build_loaders(spec, torch.device("cpu"))
    torch.manual_seed(0)
    return build_method(spec, dataset.info), loaders["test"]


@pytest.mark.parametrize("method, hparams", [("lnl", None), ("denoise", {"inner": "lnl"})])
def test_lnl_evaluation_computes_features_once_with_unchanged_numbers(method, hparams):
    import torch

    from benchmark.engine import eval_batch_size, evaluate
    from benchmark.metrics import SplitMeter
    from benchmark.nets import bias_correct
    model, loader = _method_and_test_loader(method, hparams)
    lnl = model.inner if method == "denoise" else model
    calls = []
    lnl.net.f.register_forward_hook(lambda *_: calls.append(1))
    got = evaluate(model, loader, lnl.info.num_classes, lnl.info.num_bias_classes)
    batches = list(loader.batches(torch.arange(len(loader)), eval_batch_size(loader)))
    assert len(calls) == len(batches)  # f(x) once per batch, not once more for the bias heads
    # the reference: logits from predict(x), each bias head on a second computation of f(x)
    model.eval()
    meter = SplitMeter(lnl.info.num_classes, lnl.info.num_bias_classes, loader.device)
    with torch.no_grad():
        for batch in batches:
            logits = model.predict(batch.x)
            meter.add(logits.argmax(1), batch.y, batch.b, batch.aligned,
                      loss=torch.nn.functional.cross_entropy(logits, batch.y, reduction="none"))
            meter.add_extra({f"bias_head_acc.{spec.name}": bias_correct(head(lnl.features(batch.x)),
                                                                        batch.bias_target(spec.key), spec)
                             for head, spec in zip(lnl.heads, lnl.info.bias_heads)})
    want = meter.result()
    assert any(k.startswith("bias_head_acc") for k in got)
    assert got == want


class _SlowMirror:
    """Takes ``delay`` seconds per record, as a slow tracking store does; notes when each was sent."""

    def __init__(self, delay: float):
        self.delay, self.sent = delay, {}

    def log_record(self, record):
        import time
        time.sleep(self.delay)
        self.sent[record["run_id"]] = time.time()


def test_a_slow_mirror_keeps_no_worker_waiting(tmp_path, bench_home):
    from datetime import datetime

    from benchmark.executors import LocalExecutor, Task, assign_slots, make_settings
    store = ResultStore(tmp_path / "runs")
    specs = [make_spec("vanilla", "colored_mnist_lff", epochs=1, max_train=96, max_eval=96, seed=s) for s in (0, 1)]
    tasks = [Task(s, {"suite": "test.mirror"}, f"seed={s.seed}") for s in specs]
    mirror = _SlowMirror(delay=4.0)
    summary = LocalExecutor(assign_slots([], workers=1), progress=False).run(
        tasks, make_settings(store.root, bench_home, specs=specs), mirror=mirror)
    assert [o.status for o in summary.outcomes] == ["done", "done"]
    assert set(mirror.sent) == {s.run_id for s in specs}  # every finished run mirrored
    second = store.get(specs[1].run_id)
    started = datetime.fromisoformat(second["created"]).timestamp() - second["wall_time_s"]
    assert started < mirror.sent[specs[0].run_id] - 2.0  # began while the first record was being sent
