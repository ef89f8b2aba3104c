"""Files under --home cannot run code: a pickle payload planted in the dataset cache or in a
run's checkpoint is refused (weights_only loads), with a warning, and the file is rebuilt or
the run restarts; nothing executes."""
from __future__ import annotations

import os

import pytest
import torch

from benchmark.engine import checkpoint_path, run
from benchmark.executors import checkpoint_epoch
from benchmark.planner import cache_file
from benchmark.registry import DATASETS
from benchmark.store import ResultStore

from .helpers import tiny_spec


class Payload:
    """Pickles to a call of os.system: loading it with weights_only=False runs the command."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _plant(path, marker) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"splits": Payload(marker), "fingerprint": "x", "method": Payload(marker), "rng": Payload(marker),
                "history": [], "epoch": 1}, path)


def test_the_payload_is_real(tmp_path):
    """The planted file does run its command when loaded unsafely (so the tests below mean something)."""
    marker = tmp_path / "ran"
    _plant(tmp_path / "f.pt", marker)
    torch.load(tmp_path / "f.pt", weights_only=False)
    assert marker.exists()


def test_a_planted_dataset_cache_does_not_run_and_is_rebuilt(tmp_path, bench_home, data_root):
    params = {"sigma2": 0.02}
    genuine = DATASETS.get("colored_mnist")().build(params, data_root=data_root, cache_dir=bench_home / "cache")
    home = tmp_path / "home"
    path = cache_file("colored_mnist", params, home)
    marker = tmp_path / "ran"
    _plant(path, marker)
    with pytest.warns(RuntimeWarning, match="damaged or not a plain tensor file"):
        rebuilt = DATASETS.get("colored_mnist")().build(params, data_root=data_root, cache_dir=home / "cache")
    assert not marker.exists()
    assert rebuilt.fingerprint == genuine.fingerprint
    # the rebuilt cache is a genuine one: it loads with weights_only=True
    assert torch.load(path, weights_only=True)["fingerprint"] == genuine.fingerprint


def test_a_planted_checkpoint_does_not_run_and_the_run_starts_over(tmp_path, bench_home, data_root):
    home = tmp_path / "home"
    (home).mkdir()
    os.symlink(bench_home / "cache", home / "cache")
    spec = tiny_spec(7)
    ckpt = checkpoint_path(spec, home)
    marker = tmp_path / "ran"
    _plant(ckpt, marker)
    assert checkpoint_epoch(spec, home) is None and not marker.exists()  # the scheduler's peek is safe too
    with pytest.warns(RuntimeWarning, match="checkpoint .* is damaged or not a plain tensor file"):
        rec = run(spec, store=ResultStore(tmp_path / "runs"), home=home, data_root=data_root, progress=False,
                  keep_model=False).record
    assert not marker.exists()
    assert (ckpt.parent / (ckpt.name + ".damaged")).is_file() and not ckpt.exists()
    (tmp_path / "refhome").mkdir()
    os.symlink(bench_home / "cache", tmp_path / "refhome" / "cache")
    ref = run(spec, store=ResultStore(tmp_path / "ref"), home=tmp_path / "refhome", data_root=data_root,
              progress=False, keep_model=False).record
    assert rec["final"] == ref["final"]
