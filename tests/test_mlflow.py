"""The MLflow mirror: a real tracking server on loopback, the embedded default store, and a
failing MLflow that loses nothing."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from mlflow.tracking import MlflowClient

from benchmark import make_spec
from benchmark.engine import run
from benchmark.store import ResultStore
from benchmark.tracking import EXPERIMENT, MLflowMirror

SPEC = dict(dataset_params={"sigma2": 0.02}, epochs=2, max_train=256, max_eval=512)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--default-artifact-root", str(tmp_path / "artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"mlflow server did not start on {url}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def _find(client: MlflowClient, run_id: str):
    exp = client.get_experiment_by_name(EXPERIMENT)
    (found,) = client.search_runs([exp.experiment_id], f"tags.run_id = '{run_id}'")
    return found


def test_runs_are_mirrored_to_a_tracking_server(mlflow_server, tmp_path):
    spec = make_spec("lnl", "colored_mnist", **SPEC)
    rec = run(spec, store=ResultStore(tmp_path / "runs"), mirror=MLflowMirror(mlflow_server), progress=False).record
    client = MlflowClient(tracking_uri=mlflow_server)
    found = _find(client, spec.run_id)
    assert found.data.tags["method"] == "lnl" and found.data.tags["dataset"] == "colored_mnist"
    assert found.data.tags["dataset_fingerprint"] == rec["dataset_fingerprint"]
    assert found.data.params["p.sigma2"] == "0.02" and found.data.params["hp.lambda_entropy"] == "0.01"
    assert found.data.metrics["final.test.acc"] == pytest.approx(rec["final"]["test"]["acc"])
    history = client.get_metric_history(found.info.run_id, "test.acc")
    assert [m.step for m in history] == [1, 2]
    bias_head = client.get_metric_history(found.info.run_id, "test.bias_head_acc.color")
    assert len(bias_head) == 2


def test_embedded_store_is_the_default(tmp_path):
    uri = os.environ["MLFLOW_TRACKING_URI"]  # the conftest points it at a per-test SQLite file
    spec = make_spec("vanilla", "colored_mnist", **SPEC)
    run(spec, store=ResultStore(tmp_path / "runs"), mirror=MLflowMirror(), progress=False)
    assert uri.startswith("sqlite:///") and os.path.exists(uri[len("sqlite:///"):])
    assert _find(MlflowClient(tracking_uri=uri), spec.run_id).data.tags["method"] == "vanilla"


def test_a_failing_mlflow_loses_nothing(tmp_path):
    spec = make_spec("vanilla", "colored_mnist", **SPEC)
    store = ResultStore(tmp_path / "runs")
    with pytest.warns(RuntimeWarning, match=f"MLflow at .* missed run {spec.run_id}"):
        rec = run(spec, store=store, mirror=MLflowMirror("unknown-scheme://nowhere"), progress=False).record
    assert store.get(spec.run_id) == rec
