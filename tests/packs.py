"""Helpers of the pack tests: a packed record against the lone run's, a pack stopped after epoch 1.

Tolerance (CPU): the pack computes each run's convolutions and matrix products as one batched
kernel (vmap), whose sums run in another order than the lone run's, so losses (evaluation losses
too) and counts agree to 1e-4, absolute or relative (a summed three-channel bias loss is ~5.8),
and accuracies, training ones included, to 0.01. Everything else in the records is equal: run ids, keys, epochs, dataset
fingerprints.
"""
from __future__ import annotations

from typing import Callable

import pytest
import torch

from benchmark.engine import run
from benchmark.pack import pack_checkpoint_path, run_pack
from benchmark.store import ResultStore

LOSS_TOL, ACC_TOL = 1e-4, 0.01
TIMING = ("train_time_s", "images_per_s")


def _numbers(d: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_numbers(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float)) and key not in TIMING:
            out[prefix + key] = float(value)
    return out


def assert_same_records(packed: dict, alone: dict) -> None:
    assert packed["run_id"] == alone["run_id"]
    assert packed["spec"] == alone["spec"]
    assert set(packed) == set(alone)
    assert packed["dataset_fingerprint"] == alone["dataset_fingerprint"]
    assert len(packed["history"]) == len(alone["history"]) == alone["spec"]["epochs"]
    for row_p, row_a in zip(packed["history"], alone["history"]):
        num_p, num_a = _numbers(row_p), _numbers(row_a)
        assert set(num_p) == set(num_a)
        for key in num_a:
            accuracy = any("acc" in p for p in key.split(".")) or key.endswith("align_conflict")  # else loss/count
            expected = (pytest.approx(num_a[key], abs=ACC_TOL) if accuracy
                        else pytest.approx(num_a[key], abs=LOSS_TOL, rel=LOSS_TOL))
            assert num_p[key] == expected, key


def interrupt_after_first_epoch(specs, store, home, **kw):
    """Train ``specs`` as one pack and stop it after its first epoch, as a kill would; returns the
    pack's checkpoint, which holds epoch 1."""
    class Stop(Exception):
        pass

    def stop(epoch, rows):
        assert len(rows) == len(specs)
        raise Stop

    with pytest.raises(Stop):
        run_pack(specs, store=store, home=home, device="cpu", progress=False, on_epoch=stop, **kw)
    ckpt = pack_checkpoint_path(specs, home)
    assert torch.load(ckpt, weights_only=False)["epoch"] == 1
    return ckpt


def packed_equals_alone(specs, tmp_path, home, check: Callable[[dict, dict], None] | None = None,
                        **run_kw) -> list[dict]:
    """Train ``specs`` as one pack, then each alone; assert the pack really packed them and that every
    packed record equals its lone run's (and ``check(packed, alone)``); returns the packed records."""
    packed = run_pack(specs, store=ResultStore(tmp_path / "packed"), home=home, device="cpu", progress=False, **run_kw)
    assert [r.record["tags"]["pack_size"] for r in packed] == [len(specs)] * len(specs)
    for spec, result in zip(specs, packed):
        alone = run(spec, store=ResultStore(tmp_path / "alone"), home=home, device="cpu", progress=False, **run_kw)
        assert_same_records(result.record, alone.record)
        if check is not None:
            check(result.record, alone.record)
    return [r.record for r in packed]
