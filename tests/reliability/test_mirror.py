"""The MLflow mirror: idempotent (each record one MLflow run however often it is sent, a
half-written run completed), driven by the store (what MLflow lacks is sent by the next
run/mirror), bounded when the server is down, and safe when processes create the embedded
store at once."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

from benchmark.tracking import ADHOC, HTTP_DEFAULTS

from .helpers import assert_one_error, cli, store_hash


def mlflow_runs(uri: str) -> dict[str, list]:
    """Our run id -> the MLflow runs carrying it."""
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(ADHOC)
    out: dict[str, list] = {}
    for r in client.search_runs([exp.experiment_id], max_results=1000) if exp else []:
        out.setdefault(r.data.tags.get("run_id"), []).append(r)
    return out


def test_the_next_run_mirrors_what_mlflow_lacks_and_mirror_twice_logs_each_run_once(stored, tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    # two records are stored but MLflow never saw them (e.g. a scheduler killed right after storing)
    rc, out, err = cli(["run", "--method", "vanilla", "--dataset", "colored_mnist", "--sigma2", "0.02", "--epochs", "1",
                        "--max-train", "64", "--seed", "3", "--tracking-uri", uri, "--no-progress",
                        "--results-dir", str(stored.root)])
    assert rc == 0, err
    ids = sorted(r["run_id"] for r in stored.records())
    assert len(ids) == 3 and sorted(mlflow_runs(uri)) == ids
    for _ in range(2):
        rc, out, err = cli(["mirror", "--tracking-uri", uri, "--results-dir", str(stored.root)])
        assert rc == 0 and "mirrored 0 record(s)" in out and "3 already there" in out, out + err
    runs = mlflow_runs(uri)
    assert sorted(runs) == ids and all(len(v) == 1 and v[0].info.status == "FINISHED" for v in runs.values())
    assert all("test.acc" in v[0].data.metrics for v in runs.values())


def test_a_mirror_killed_mid_run_is_completed_not_duplicated(stored, tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    marker = tmp_path / "fired"
    env = {**os.environ, "BENCHMARK_FAILPOINT": "mirror.mid", "BENCHMARK_FAILPOINT_FILE": str(marker)}
    proc = subprocess.Popen([sys.executable, "-m", "benchmark", "mirror", "--tracking-uri", uri,
                             "--results-dir", str(stored.root)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert marker.exists(), proc.stderr.read()
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    (half,) = [v[0] for v in mlflow_runs(uri).values()]
    assert half.info.status == "RUNNING" and not half.data.metrics  # killed between create_run and the metrics
    rc, out, err = cli(["mirror", "--tracking-uri", uri, "--results-dir", str(stored.root)])
    assert rc == 0, err
    runs = mlflow_runs(uri)
    assert len(runs) == 2 and all(len(v) == 1 and v[0].info.status == "FINISHED" for v in runs.values())
    assert runs[half.data.tags["run_id"]][0].info.run_id == half.info.run_id  # the same MLflow run, completed
    assert all("test.acc" in v[0].data.metrics for v in runs.values())


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def http_defaults():
    """The mirror sets MLflow's HTTP timeouts in this process's environment; undo that after."""
    saved = {k: os.environ.get(k) for k in HTTP_DEFAULTS}
    for k in HTTP_DEFAULTS:
        os.environ.pop(k, None)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_a_dead_server_costs_seconds_and_mirror_says_it_failed(stored, http_defaults):
    uri = f"http://127.0.0.1:{_closed_port()}"
    before = store_hash(stored.root)
    t0 = time.time()
    rc, out, err = cli(["mirror", "--tracking-uri", uri, "--results-dir", str(stored.root)])
    took = time.time() - t0
    assert_one_error(rc, err, "2 record(s) not mirrored")
    assert err.count("warning:") == 1 and "unreachable" in err
    assert took < 30, took  # MLflow's own defaults: 7 retries with backoff, minutes per record
    assert store_hash(stored.root) == before


SYNC = """
import sys
from benchmark.store import ResultStore
from benchmark.tracking import MLflowMirror
r = MLflowMirror(sys.argv[1]).sync(ResultStore(sys.argv[2]))
sys.exit(1 if r.failed else 0)
"""


@pytest.mark.slow  # two MLflow imports and a schema creation: ~25 s on a loaded 2-core machine
def test_processes_creating_the_embedded_store_at_once_do_not_wedge_it(stored, tmp_path):
    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    procs = [subprocess.Popen([sys.executable, "-c", SYNC, uri, str(stored.root)], stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    errs = [p.communicate(timeout=240)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    runs = mlflow_runs(uri)
    assert len(runs) == 2 and all(len(v) == 1 and v[0].info.status == "FINISHED" for v in runs.values())


@pytest.mark.slow
def test_a_server_that_never_answers_is_given_up_on(stored, http_defaults):
    with socket.socket() as s:  # accepts connections (the kernel's backlog), never replies
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        uri = f"http://127.0.0.1:{s.getsockname()[1]}"
        t0 = time.time()
        rc, out, err = cli(["mirror", "--tracking-uri", uri, "--results-dir", str(stored.root)])
        took = time.time() - t0
    assert_one_error(rc, err, "not mirrored")
    assert took < 60, took  # MLflow's own defaults: 120 s timeout × 8 attempts


@pytest.mark.slow
def test_mirror_against_a_real_server_is_idempotent(stored, tmp_path):
    from servers import serve_mlflow
    with serve_mlflow(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "artifacts") as uri:
        for _ in range(2):
            rc, out, err = cli(["mirror", "--tracking-uri", uri, "--results-dir", str(stored.root)])
            assert rc == 0, err
        runs = mlflow_runs(uri)
        assert len(runs) == 2 and all(len(v) == 1 and v[0].info.status == "FINISHED" for v in runs.values())
