"""The MLflow mirror: a real tracking server on loopback, the embedded default store, a
failing MLflow that loses nothing, a layout that reads like the runs (the committed paper-budget
records mirrored into a scratch store), and `benchmark ui` serving the experiment it prints."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from benchmark import make_spec
from benchmark.engine import run
from benchmark.store import ResultStore
from benchmark.tracking import ADHOC, KEY_METRICS, PREFIX, VIEW_KEY, MLflowMirror
from servers import free_port, serve_mlflow

SPEC = dict(dataset_params={"sigma2": 0.02}, epochs=2, max_train=256, max_eval=512)


@pytest.fixture
def mlflow_server(tmp_path):
    with serve_mlflow(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "artifacts") as url:
        yield url


def _find(client: MlflowClient, run_id: str):
    exp = client.get_experiment_by_name(ADHOC)
    (found,) = client.search_runs([exp.experiment_id], f"tags.run_id = '{run_id}'")
    return found


def test_runs_are_mirrored_to_a_tracking_server(mlflow_server, tmp_path):
    spec = make_spec("lnl", "colored_mnist", **SPEC)
    rec = run(spec, store=ResultStore(tmp_path / "runs"), mirror=MLflowMirror(mlflow_server), progress=False).record
    client = MlflowClient(tracking_uri=mlflow_server)
    found = _find(client, spec.run_id)
    assert found.data.tags["method"] == "lnl" and found.data.tags["dataset"] == "colored_mnist"
    assert found.data.tags["dataset_fingerprint"] == rec["dataset_fingerprint"]
    assert found.data.params["data.sigma2"] == "0.02" and found.data.params["hp.lambda_entropy"] == "0.01"
    assert found.data.metrics["test.acc"] == pytest.approx(rec["final"]["test"]["acc"], abs=1e-6)
    assert (found.info.end_time - found.info.start_time) / 1000 == pytest.approx(rec["wall_time_s"], abs=1.0)
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


REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "results" / "runs"


def _shipped(suite: str | None, n: int) -> list[Path]:
    """``n`` committed records of ``suite`` (None: records made outside a suite)."""
    out = [p for p in sorted(SHIPPED.glob("*.json"))
           if json.loads(p.read_text()).get("tags", {}).get("suite") == suite]
    assert len(out) >= n, f"results/runs holds {len(out)} record(s) of suite {suite}"
    return out[:n]


@pytest.fixture
def shipped_store(tmp_path) -> ResultStore:
    """A scratch store with committed records: 2 of lff.colored_mnist, 1 of lnl.figure4, 1 adhoc."""
    root = tmp_path / "shipped"
    root.mkdir()
    for p in _shipped("lff.colored_mnist", 2) + _shipped("lnl.figure4", 1) + _shipped(None, 1):
        shutil.copy(p, root / p.name)
    return ResultStore(root)


def test_stored_records_read_like_the_runs(shipped_store, tmp_path):
    uri = f"sqlite:///{tmp_path / 'layout.db'}"
    result = MLflowMirror(uri).sync(shipped_store)
    records = {r["run_id"]: r for r in shipped_store.records()}
    assert sorted(result.sent) == sorted(records) and not result.failed
    client = MlflowClient(tracking_uri=uri)
    exps = {e.name: e for e in client.search_experiments(filter_string=f"name LIKE '{PREFIX}%'")}
    assert set(exps) == {PREFIX + "lff.colored_mnist", PREFIX + "lnl.figure4", ADHOC}  # one per suite
    assert "LfF Colored MNIST" in exps[PREFIX + "lff.colored_mnist"].tags["mlflow.note.content"]
    view = json.loads(exps[ADHOC].tags[f"mlflow.sharedViewState.{VIEW_KEY}"])
    assert {f"metrics.`{m}`" for m in KEY_METRICS} | {"tags.`suite`", "tags.`profile`", "tags.`seed`"} <= set(
        view["selectedColumns"])
    runs = client.search_runs([e.experiment_id for e in exps.values()])
    assert len(runs) == len(records)
    for run_ in runs:
        rec = records[run_.data.tags["run_id"]]
        spec, tags, params = rec["spec"], run_.data.tags, run_.data.params
        assert exps[PREFIX + rec["tags"]["suite"] if rec["tags"] else ADHOC].experiment_id == run_.info.experiment_id
        # Duration (end - start) is the training's wall time, and the run ends when the record was stored
        assert (run_.info.end_time - run_.info.start_time) / 1000 == pytest.approx(rec["wall_time_s"], abs=1.0)
        assert run_.info.end_time / 1000 == pytest.approx(datetime.fromisoformat(rec["created"]).timestamp(), abs=1.0)
        for split, values in rec["final"].items():  # the key metrics where the record has them
            for k in ("acc", "conflicting_acc", "aligned_acc"):
                if k in values and values[k] == values[k]:  # NaN (e.g. no aligned samples) is not logged
                    assert run_.data.metrics[f"{split}.{k}"] == pytest.approx(values[k], abs=1e-6)
        assert "test.acc" in run_.data.metrics
        assert tags["suite"] == rec["tags"].get("suite", "adhoc") and tags["profile"] == rec["tags"].get(
            "profile", "untagged")
        assert (tags["seed"], tags["method"], tags["dataset"]) == (str(spec["seed"]), spec["method"], spec["dataset"])
        assert tags["mlflow.runName"].startswith(f"{spec['method']} · ") and f"seed {spec['seed']}" in tags[
            "mlflow.runName"]
        assert ("paper_cell" in tags) == (rec["tags"].get("profile") == "paper")
        # one value per name: the budget actually run, no method default beside it
        assert params["epochs"] == str(spec["epochs"]) and "hp.epochs" not in params
        for name, value in params.items():
            bare = name.split(".", 1)[1] if name.startswith("hp.") else None
            assert bare not in params or params[bare] == value, name
    lff = [r for r in runs if r.data.tags["suite"] == "lff.colored_mnist"]
    assert all("conflicting ratio" in r.data.tags["mlflow.runName"] for r in lff)


def test_old_single_experiment_is_resent_then_retired(shipped_store, tmp_path):
    """Runs that earlier versions wrote into one ``biasbench`` experiment are sent again in the
    suite layout, then that experiment is soft-deleted (restorable)."""
    uri = f"sqlite:///{tmp_path / 'legacy.db'}"
    client = MlflowClient(tracking_uri=uri)
    old = client.create_experiment("biasbench")
    rec = next(iter(shipped_store.records()))
    client.set_terminated(client.create_run(old, tags={"run_id": rec["run_id"]}).info.run_id)
    result = MLflowMirror(uri).sync(shipped_store)
    assert rec["run_id"] in result.sent and not result.failed
    assert client.get_experiment(old).lifecycle_stage == "deleted"
    assert MLflowMirror(uri).mirrored_ids() == {r["run_id"] for r in shipped_store.records()}


def test_ui_mirrors_the_store_and_serves_the_experiment_it_prints(shipped_store, tmp_path):
    db = tmp_path / "ui.db"
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "benchmark", "ui", "--port", str(port), "--suite",
                             "lff.colored_mnist", "--results-dir", str(shipped_store.root),
                             "--tracking-uri", f"sqlite:///{db}"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        first = proc.stdout.readline()
        m = re.search(rf"MLflow UI on (http://127\.0\.0\.1:{port})/#/experiments/(\d+)/runs\?\S*viewStateShareKey=", first)
        assert m, first
        base, exp_id = m.groups()
        # the records were mirrored before the server started (first use), one experiment per suite
        client = MlflowClient(tracking_uri=f"sqlite:///{db}")
        assert client.get_experiment(exp_id).name == PREFIX + "lff.colored_mnist"
        assert len(client.search_runs([exp_id])) == 2
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/ajax-api/2.0/mlflow/experiments/get?experiment_id={exp_id}",
                                            timeout=2) as r:
                    served = json.load(r)["experiment"]
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.3)
        assert served["name"] == PREFIX + "lff.colored_mnist"
        assert any(t["key"] == f"mlflow.sharedViewState.{VIEW_KEY}" for t in served["tags"])
        with urllib.request.urlopen(base + "/", timeout=5) as r:
            assert r.status == 200 and b"<div id=\"root\"" in r.read()
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def test_ui_for_a_suite_without_experiment_is_one_error_line(tmp_path, capsys):
    from benchmark.cli import main
    rc = main(["ui", "--suite", "lff.colored_mnst", "--results-dir", str(tmp_path / "empty"),
               "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}"])
    err = capsys.readouterr().err
    assert rc == 2 and "error: no MLflow experiment for suite 'lff.colored_mnst'" in err and "Traceback" not in err


def test_every_suite_setting_has_its_own_mlflow_name():
    # run names and paper_cell tags name the setting in few characters; two settings of one suite must
    # never read the same (pgd.table2's label-noise columns once all read "0.99 bias ratio")
    from benchmark.suites import SUITES
    from benchmark.tracking import _describe
    for name in SUITES.names():
        described = [_describe(s, name) for s in SUITES.get(name).settings]
        assert len(set(described)) == len(described), (name, described)
