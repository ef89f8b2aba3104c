"""Executors end to end on CPU: local workers, claims, retries and failure records, SIGKILL and
resume, the SLURM code path through submitit's local executor, GPU slot assignment."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

from benchmark import make_spec
from benchmark.claims import ClaimBoard
from benchmark.engine import checkpoint_path, run
from benchmark.executors import (LocalExecutor, SlurmExecutor, Task, assign_slots, execute, make_settings,
                                 plugin_modules)
from benchmark.store import ResultStore

TINY = dict(epochs=1, max_train=96, max_eval=96)
TIMING_KEYS = {"train_time_s", "images_per_s"}

PLUGIN = '''
"""Test-only plug-ins for tests/test_executors.py (imported by the spawned workers too)."""
from benchmark import register_method
from benchmark_methods.vanilla import Vanilla


@register_method("test_boom")
class Boom(Vanilla):
    """Test-only: raises on its first update."""

    def update(self, batch):
        raise RuntimeError("boom: a test failure")
'''

KILL_SUITE = '''
"""Test-only suite for the SIGKILL test: two 2-epoch vanilla runs."""
from benchmark.suites import Profile, Setting, Suite, register_suite


@register_suite("test.kill")
class Kill(Suite):
    """Test-only."""

    methods = ("vanilla",)
    settings = (Setting("colored_mnist", {"sigma2": 0.02}),)
    profiles = {"quick": Profile(seeds=(0, 1), epochs=2, max_train=MAX_TRAIN, max_eval=64)}
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """A method that raises, registered by a plain import (workers import it too); removed after
    the test so the registry-wide tests never see it."""
    import importlib

    from benchmark.registry import METHODS
    (tmp_path / "bb_exec_plugins.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield importlib.import_module("bb_exec_plugins")
    METHODS._classes.pop("test_boom", None)  # test-only: the registry has no public removal
    sys.modules.pop("bb_exec_plugins", None)


def spec(seed=0, method="vanilla", **kw):
    return make_spec(method, "colored_mnist", dataset_params={"sigma2": 0.02}, seed=seed, **{**TINY, **kw})


def task(s, suite="test.exec"):
    return Task(s, {"suite": suite, "profile": "quick"}, f"{s.method} seed={s.seed}")


def private_home(tmp_path, bench_home) -> Path:
    """A working folder of its own (checkpoints) that shares the session's dataset cache."""
    home = tmp_path / "home"
    home.mkdir()
    (bench_home / "cache").mkdir(exist_ok=True)
    (home / "cache").symlink_to(bench_home / "cache", target_is_directory=True)
    return home


def history_metrics(record):
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in record["history"]]


# --- slots --------------------------------------------------------------------------------------

def test_gpu_slots_round_robin_and_pinning_on_a_simulated_device_list():
    slots = assign_slots(["0", "1"], jobs_per_gpu=2, cpus=16)
    assert [(s.device, s.gpu) for s in slots] == [("cuda", "0"), ("cuda", "1"), ("cuda", "0"), ("cuda", "1")]
    assert all(s.threads == 4 for s in slots) and [s.index for s in slots] == [0, 1, 2, 3]
    assert [s.env() for s in slots[:2]] == [{"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": "1"}]
    # ids as the parent sees them (e.g. its own CUDA_VISIBLE_DEVICES=3,5) pass through unchanged
    assert [s.gpu for s in assign_slots(["3", "5"], jobs_per_gpu=3, workers=4, cpus=8)] == ["3", "5", "3", "5"]
    assert [s.gpu for s in assign_slots(["3", "5"], device="cuda:1", jobs_per_gpu=2, cpus=8)] == ["5", "5"]
    cpu = assign_slots(["0"], device="cpu", workers=2, cpus=2)
    assert [(s.device, s.gpu, s.threads, s.env()) for s in cpu] == [("cpu", None, 1, {})] * 2
    assert [(s.device, s.threads) for s in assign_slots([], cpus=4)] == [("cpu", 4)]
    with pytest.raises(ValueError, match="no CUDA device"):
        assign_slots([], device="cuda")
    with pytest.raises(ValueError, match="only 2 GPU"):
        assign_slots(["0", "1"], device="cuda:2")


# --- claims -------------------------------------------------------------------------------------

def test_claims_are_exclusive_and_stale_ones_are_taken_over(tmp_path):
    board = ClaimBoard(tmp_path / "runs", ttl=60)
    first = board.acquire("abc")
    assert first is not None and board.acquire("abc") is None  # a live owner (this very process)
    assert first.heartbeat() and board.read("abc")["pid"] == os.getpid()
    first.release()
    assert board.read("abc") is None
    # a dead pid on this host: stale at once
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    board.dir.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for rid, info in {"dead": {"host": socket.gethostname(), "pid": dead.pid, "heartbeat": now},
                      "old": {"host": "elsewhere", "pid": 1, "heartbeat": now - 120},
                      "fresh": {"host": "elsewhere", "pid": 1, "heartbeat": now}}.items():
        board.path(rid).write_text(json.dumps({"run_id": rid, "token": rid, "started": now, **info}))
    taken = board.acquire("dead")
    assert taken is not None and board.read("dead")["token"] == taken.token
    assert board.acquire("old") is not None  # another host, heartbeat older than the ttl
    assert board.acquire("fresh") is None  # another host, recent heartbeat: keep off
    # a claim taken over from us is not released by us
    assert not first.heartbeat()
    taken.release()
    assert board.read("dead") is None


# --- local executor -----------------------------------------------------------------------------

def test_local_executor_two_workers_retries_failures_and_honours_claims(tmp_path, plugin, bench_home, capsys):
    store = ResultStore(tmp_path / "runs")
    good = [spec(seed) for seed in (0, 1, 2)]
    held = spec(3)
    boom = spec(0, method="test_boom")
    tasks = [task(s) for s in [boom, *good, held]]
    settings = make_settings(store.root, bench_home, specs=[t.spec for t in tasks])
    assert settings.plugin_modules == ("bb_exec_plugins",)  # workers import what entry points lack
    board = ClaimBoard(store.root)
    other = board.acquire(held.run_id)  # another scheduler is running this one
    try:
        summary = LocalExecutor(assign_slots([], workers=2), retries=1, progress=False).run(tasks, settings)
    finally:
        other.release()
    status = {o.run_id: o.status for o in summary.outcomes}
    assert status == {boom.run_id: "failed", held.run_id: "claimed", **{s.run_id: "done" for s in good}}
    assert summary.attempts == 6  # boom ran twice (one retry), the others once
    for s in good:
        rec = store.get(s.run_id)
        assert rec["tags"] == {"suite": "test.exec", "profile": "quick"} and rec["device"].startswith("cpu")
    assert not store.has(held.run_id) and not store.has(boom.run_id)
    failure = json.loads(board.failure_path(boom.run_id).read_text())
    assert failure["attempts"] == 2 and "boom: a test failure" in failure["traceback"]
    assert failure["spec"]["method"] == "test_boom" and "RuntimeError" in failure["error"]
    assert board.claims() == []  # every claim released
    out = capsys.readouterr().out
    assert "retry" in out and "FAILED" in out and "running elsewhere" in out
    assert "1 failed" in summary.render() and boom.run_id in summary.render()
    # a rerun skips what is stored; the freed run now goes through
    again = LocalExecutor(assign_slots([], workers=1), progress=False).run([task(s) for s in [*good, held]], settings)
    assert {o.run_id: o.status for o in again.outcomes} == {held.run_id: "done", **{s.run_id: "cached" for s in good}}


def test_sigkill_mid_run_then_rerun_resumes_and_stores_each_spec_once(tmp_path, bench_home, data_root):
    max_train = 384
    (tmp_path / "bb_kill_suite.py").write_text(KILL_SUITE.replace("MAX_TRAIN", str(max_train)))
    home, runs = private_home(tmp_path, bench_home), tmp_path / "runs"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import bb_kill_suite
        from benchmark.cli import main
        sys.exit(main(["run", "--suite", "test.kill", "--profile", "quick", "--workers", "2", "--no-mlflow",
                       "--no-progress", "--results-dir", {str(runs)!r}, "--home", {str(home)!r},
                       "--data-root", {str(data_root)!r}]))
    """)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    parent = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)
    ckpts = home / "checkpoints"
    killed_at, deadline, seen = None, time.time() + 120, {}
    while killed_at is None and time.time() < deadline and parent.poll() is None:
        for p in ckpts.glob("*.pt") if ckpts.is_dir() else []:
            try:
                stamp = p.stat().st_mtime_ns
                if seen.get(p) == stamp:
                    continue
                seen[p] = stamp
                epoch = torch.load(p, map_location="cpu", weights_only=False)["epoch"]
            except Exception:  # noqa: BLE001 - being replaced right now
                continue
            if epoch >= 1:
                os.kill(parent.pid, signal.SIGKILL)
                killed_at = p.stem, epoch
                break
        time.sleep(0.05)
    parent.wait(timeout=30)
    assert killed_at is not None, parent.stdout.read().decode()
    killed_id, _ = killed_at
    # the workers died with their parent: their claims turn stale, nothing was stored for the killed run
    board = ClaimBoard(runs)
    deadline = time.time() + 20
    while not all(c["stale"] for c in board.claims()) and time.time() < deadline:
        time.sleep(0.2)
    assert all(c["stale"] for c in board.claims())  # dead workers' claims are stale, or already released
    assert not ResultStore(runs).has(killed_id) and (ckpts / f"{killed_id}.pt").is_file()
    rerun = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"{killed_id}" in rerun.stdout and "resumed from epoch" in rerun.stdout
    records = sorted(runs.glob("*.json"))
    assert len(records) == 2 and killed_id in {p.stem for p in records}
    assert board.claims() == [] and not list(ckpts.glob("*.pt"))
    # a third run would be a no-op: the plan has nothing left to do
    from benchmark.planner import make_plan, select_suites
    from benchmark.suites import SUITES
    sys.path.insert(0, str(tmp_path))
    try:
        import bb_kill_suite  # noqa: F401 - registers test.kill here too
        plan = make_plan(select_suites(["test.kill"]), "quick", store=ResultStore(runs), check_data=False)
    finally:
        sys.path.remove(str(tmp_path))
        SUITES._classes.pop("test.kill", None)  # test-only: keep other tests' `run --all` clean
    assert len(plan.runs) == 2 and not plan.todo
    # the resumed run's numbers equal an uninterrupted run's (same code path, same thread count)
    resumed = ResultStore(runs).get(killed_id)
    from benchmark.spec import RunSpec
    s = RunSpec.from_dict(resumed["spec"])
    threads = torch.get_num_threads()
    torch.set_num_threads(assign_slots([], workers=2)[0].threads)
    try:
        ref = run(s, store=ResultStore(tmp_path / "ref"), home=tmp_path / "refhome", data_root=data_root,
                  progress=False).record
    finally:
        torch.set_num_threads(threads)
    assert history_metrics(resumed) == history_metrics(ref)
    assert resumed["final"] == ref["final"]


# --- SLURM code path through submitit's local executor --------------------------------------------

def test_slurm_executor_runs_two_specs_through_submitit_local(tmp_path, bench_home):
    store = ResultStore(tmp_path / "runs")
    specs = [spec(seed) for seed in (10, 11)]
    settings = make_settings(store.root, bench_home, specs=specs)
    ex = SlurmExecutor(tmp_path / "submitit", cluster="local", gpus_per_job=0, timeout_min=10, retries=0,
                       progress=False)
    assert ex.executor().cluster == "local"
    summary = ex.run([task(s, suite="test.slurm") for s in specs], settings)
    assert [o.status for o in summary.outcomes] == ["done", "done"], summary.render()
    for s in specs:
        rec = store.get(s.run_id)
        assert rec["tags"]["suite"] == "test.slurm" and rec["spec"]["seed"] == s.seed
    assert list((tmp_path / "submitit").rglob("*_submitted.pkl"))  # went through submitit's pickles
    assert ClaimBoard(store.root).claims() == []


@pytest.mark.slow
def test_slurm_preemption_requeues_and_resumes_from_the_checkpoint(tmp_path, bench_home, data_root):
    store = ResultStore(tmp_path / "runs")
    s = spec(20, epochs=3, max_train=1200)
    settings = make_settings(store.root, private_home(tmp_path, bench_home), data_root=data_root, specs=[s])
    ex = SlurmExecutor(tmp_path / "submitit", cluster="local", gpus_per_job=0, timeout_min=10, progress=False)
    (job,) = ex.submit([task(s)], settings)
    ckpt = checkpoint_path(s, tmp_path / "home")
    deadline = time.time() + 180
    while time.time() < deadline and not job.done():
        if ckpt.is_file():
            try:
                if torch.load(ckpt, map_location="cpu", weights_only=False)["epoch"] >= 1:
                    break
            except Exception:  # noqa: BLE001
                pass
        time.sleep(0.2)
    # what SLURM does on preemption: USR2 to the task → SpecJob.checkpoint() → requeue (submitit's
    # local controller restarts the task); the task is the controller's child process
    controller = job._process.pid
    (task_pid,) = [int(p) for p in Path(f"/proc/{controller}/task/{controller}/children").read_text().split()]
    os.kill(task_pid, signal.SIGUSR2)
    outcome = job.result()
    assert outcome.status == "done", outcome.error and outcome.resumed_from and outcome.resumed_from >= 1
    ref = run(s, store=ResultStore(tmp_path / "ref"), home=tmp_path / "refhome", data_root=data_root,
              progress=False).record
    assert history_metrics(store.get(s.run_id)) == history_metrics(ref)


@pytest.mark.slow
def test_two_schedulers_on_one_store_never_run_a_spec_twice(tmp_path, bench_home):
    store = ResultStore(tmp_path / "runs")
    specs = [spec(seed) for seed in (30, 31, 32, 33)]
    settings = make_settings(store.root, bench_home, specs=specs)
    results = []

    def one():
        results.append(LocalExecutor(assign_slots([], workers=1), progress=False).run([task(s) for s in specs], settings))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ran = [o.run_id for summary in results for o in summary.outcomes if o.status == "done"]
    assert sorted(ran) == sorted(s.run_id for s in specs)  # each spec trained exactly once
    assert len(list(store.root.glob("*.json"))) == 4


def test_execute_stores_nothing_twice_and_plugin_modules_skip_entry_points(tmp_path, bench_home):
    store = ResultStore(tmp_path / "runs")
    s = spec(40)
    settings = make_settings(store.root, bench_home, specs=[s])
    assert settings.plugin_modules == () and plugin_modules([s]) == ()
    first = execute(task(s), settings, device="cpu")
    assert first.status == "done" and first.test_acc is not None and first.resumed_from is None
    assert execute(task(s), settings, device="cpu").status == "cached"
