"""Kill points: SIGKILL a worker, or the parent of ``run --suite``, at a named point (while the
data is generated, mid-epoch, while a checkpoint or a record is written, right after a record
lands, while mirroring); rerun; every spec ends with exactly one valid record whose metrics equal
an uninterrupted run's, no damaged file is left to quarantine, and MLflow holds each run once.

The points are :mod:`benchmark.failpoints`: the process reaching the armed point writes its pid
and waits, and the test kills it (or its scheduler) there.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from benchmark.claims import ClaimBoard
from benchmark.engine import run
from benchmark.executors import assign_slots
from benchmark.spec import RunSpec
from benchmark.store import ResultStore
from benchmark.tracking import PREFIX

SUITE = '''
"""Test-only suites for the kill-point tests: 2-epoch vanilla runs, two seeds or one."""
from benchmark.suites import Profile, Setting, Suite, register_suite


@register_suite("test.killpoints")
class KillPoints(Suite):
    """Test-only."""

    methods = ("vanilla",)
    settings = (Setting("colored_mnist", {"sigma2": 0.02}),)
    profiles = {"quick": Profile(seeds=(0, 1), epochs=2, max_train=256, max_eval=64)}


@register_suite("test.killpoints1")
class KillPointsOne(KillPoints):
    """Test-only."""

    profiles = {"quick": Profile(seeds=(0,), epochs=2, max_train=256, max_eval=64)}
'''

TIMING = {"train_time_s", "images_per_s"}
# (point, who reaches it): "worker" points run in a worker process, "parent" ones in the scheduler
POINTS = [("data.generated", "parent"), ("save.tmp", "parent"), ("epoch.mid", "worker"), ("checkpoint.tmp", "worker"),
          ("record.tmp", "worker"), ("record.stored", "worker"), ("mirror.mid", "parent")]


def _script(tmp_path: Path, runs: Path, home: Path, data_root: Path, uri: str, suite: str = "test.killpoints") -> str:
    (tmp_path / "bb_killpoints_suite.py").write_text(SUITE)
    return textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import bb_killpoints_suite
        from benchmark.cli import main
        sys.exit(main(["run", "--suite", {suite!r}, "--profile", "quick", "--workers", "1",
                       "--tracking-uri", {uri!r}, "--no-progress", "--results-dir", {str(runs)!r},
                       "--home", {str(home)!r}, "--data-root", {str(data_root)!r}]))
    """)


def _home(tmp_path: Path, bench_home: Path, fresh_cache: bool) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    if not fresh_cache:  # share the session's dataset cache (generation is not what is tested)
        (bench_home / "cache").mkdir(exist_ok=True)
        (home / "cache").symlink_to(bench_home / "cache", target_is_directory=True)
    return home


def kill_and_rerun(tmp_path: Path, bench_home: Path, data_root: Path, point: str, victim: str,
                   suite: str = "test.killpoints") -> dict:
    """Arm ``point``, SIGKILL ``victim`` ("worker" or "parent") when it is reached, rerun if the
    parent died; return what a check needs."""
    runs = tmp_path / "runs"
    home = _home(tmp_path, bench_home, fresh_cache=point.startswith(("data.", "save.")))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    script = _script(tmp_path, runs, home, data_root, uri, suite)
    marker = tmp_path / "fired"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "BENCHMARK_FAILPOINT": point, "BENCHMARK_FAILPOINT_FILE": str(marker)}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.time() + 240
    while not (marker.exists() and marker.read_text()) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), f"{point} never reached:\n" + proc.stdout.read().decode()
    pid = int(marker.read_text())
    parent_killed = victim == "parent" or pid == proc.pid
    os.kill(proc.pid if parent_killed else pid, signal.SIGKILL)
    if parent_killed:
        proc.wait(timeout=60)  # reap it as a shell would (its workers hold its stdout until they die)
    first_out = proc.communicate(timeout=240)[0].decode()
    out = first_out
    if parent_killed:
        assert proc.returncode == -signal.SIGKILL
        board = ClaimBoard(runs)  # the workers die with their parent: wait until their claims are stale
        deadline = time.time() + 30
        while not all(c["stale"] for c in board.claims()) and time.time() < deadline:
            time.sleep(0.2)
        rerun = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONUNBUFFERED": "1"},
                               capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        out += rerun.stdout + rerun.stderr
    else:  # the scheduler retries the run whose worker died, in the same command
        assert proc.returncode == 0, first_out
    return {"runs": runs, "home": home, "uri": uri, "out": out, "first_out": first_out}


def check_outcome(result: dict, references: dict) -> int:
    """Exactly the planned records, valid, equal to uninterrupted runs; nothing quarantined, no
    claims, no checkpoints left; MLflow holds each run once. Returns the records checked."""
    runs = result["runs"]
    store = ResultStore(runs)
    records = {r["run_id"]: r for r in store.records()}
    assert sorted(records) == sorted(references), result["out"]
    assert not (runs / "_quarantine").exists(), result["out"]
    assert "Traceback" not in result["out"], result["out"]
    for run_id, rec in records.items():
        ref = references[run_id]
        assert [{k: v for k, v in row.items() if k not in TIMING} for row in rec["history"]] == \
            [{k: v for k, v in row.items() if k not in TIMING} for row in ref["history"]]
        assert rec["final"] == ref["final"]
    assert ClaimBoard(runs).claims() == []
    assert not list((result["home"] / "checkpoints").glob("*.pt"))
    client = MlflowClient(tracking_uri=result["uri"])
    mlflow_runs = client.search_runs([e.experiment_id for e in client.search_experiments(
        filter_string=f"name LIKE '{PREFIX}%'")])  # one experiment per suite
    assert sorted(r.data.tags["run_id"] for r in mlflow_runs) == sorted(references)
    assert all(r.info.status == "FINISHED" for r in mlflow_runs)
    return len(records)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, bench_home, data_root):
    """``reference(seed)``: the record of an uninterrupted run of the suites' spec with that seed
    (run once per module, with the worker's thread count)."""
    from benchmark import make_spec
    root, done = tmp_path_factory.mktemp("kill_refs"), {}

    def get(seed: int) -> dict:
        if seed not in done:
            spec = make_spec("vanilla", "colored_mnist", dataset_params={"sigma2": 0.02}, seed=seed, epochs=2,
                             max_train=256, max_eval=64)
            threads = torch.get_num_threads()
            torch.set_num_threads(assign_slots([], workers=1)[0].threads)
            try:
                done[seed] = run(spec, store=ResultStore(root / "runs"), home=bench_home, data_root=data_root,
                                 progress=False, keep_model=False).record
            finally:
                torch.set_num_threads(threads)
        return done[seed]
    return get


@pytest.fixture(scope="module")
def references(reference):
    """Both specs of ``test.killpoints``: run id -> uninterrupted record."""
    return {r["run_id"]: r for r in (reference(0), reference(1))}


def test_worker_killed_while_writing_a_checkpoint_resumes_to_the_same_numbers(tmp_path, bench_home, data_root,
                                                                              reference):
    # the 3rd checkpoint of the worker: epoch 2 of the run (0 = after prepare, 1 = epoch 1)
    result = kill_and_rerun(tmp_path, bench_home, data_root, "checkpoint.tmp@3", "worker", suite="test.killpoints1")
    assert "worker process died" in result["out"] and "retry" in result["out"]
    assert "resumed from epoch 1" in result["out"], result["out"]
    ref = reference(0)
    assert RunSpec.from_dict(ref["spec"]).run_id == ref["run_id"]
    assert check_outcome(result, {ref["run_id"]: ref}) == 1


@pytest.mark.slow
@pytest.mark.parametrize("draw", range(4))
def test_random_kill_points(tmp_path, bench_home, data_root, references, draw):
    seed = int(os.environ.get("KILL_SEED", time.time_ns() % 10**6)) + draw
    rng = random.Random(seed)
    point, where = rng.choice(POINTS)
    if point == "epoch.mid":  # once per run (epoch 2): which run
        point = f"{point}@{rng.randint(1, 2)}"
    if point == "checkpoint.tmp":  # three per run (after prepare, epochs 1 and 2): which one
        point = f"{point}@{rng.randint(1, 6)}"
    victim = "parent" if where == "parent" else rng.choice(["worker", "parent"])
    print(f"kill seed {seed}: {point} -> SIGKILL {victim}")
    result = kill_and_rerun(tmp_path, bench_home, data_root, point, victim)
    assert check_outcome(result, references) == 2


EVERY = [(p, v) for p, where in POINTS for v in (("worker", "parent") if where == "worker" else ("parent",))]


@pytest.mark.slow
@pytest.mark.parametrize("point,victim", EVERY, ids=[f"{p}-{v}" for p, v in EVERY])
def test_every_kill_point(tmp_path, bench_home, data_root, references, point, victim):
    if point == "checkpoint.tmp":
        point = "checkpoint.tmp@3"  # epoch 2 of the first run
    result = kill_and_rerun(tmp_path, bench_home, data_root, point, victim)
    assert check_outcome(result, references) == 2


@pytest.mark.slow
def test_two_schedulers_on_one_store_and_one_fresh_home(tmp_path, bench_home, data_root, references):
    """Both generate the data, create the embedded MLflow store and claim runs at the same time."""
    runs, home, uri = tmp_path / "runs", _home(tmp_path, bench_home, fresh_cache=True), f"sqlite:///{tmp_path / 'h' / 'mlflow.db'}"
    script = _script(tmp_path, runs, home, data_root, uri)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert check_outcome({"runs": runs, "home": home, "uri": uri, "out": "".join(outs)}, references) == 2
