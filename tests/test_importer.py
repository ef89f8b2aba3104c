"""Portable records (issue 14, item 4): runs without MLflow, and ``import`` of records made elsewhere.

The records are real: two tiny vanilla runs on real Colored MNIST (1 epoch, 256 training and 500
evaluation samples), made in a subprocess where ``mlflow`` cannot be imported (``sys.modules``
entry set to None, which is how Python blocks a module: ``import mlflow`` raises ImportError).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

import pytest

from benchmark.cli import main
from benchmark.importer import check_record
from benchmark.store import ResultStore

MAKE = """
import json, sys, warnings
sys.modules["mlflow"] = None  # MLflow absent, as on the GPU machines
from benchmark.engine import run
from benchmark.spec import make_spec
from benchmark.store import ResultStore
from benchmark.tracking import MLflowMirror
store = ResultStore(sys.argv[1])
out = {}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for seed, mirror in ((0, None), (1, MLflowMirror())):  # --no-mlflow, then the default mirror
        spec = make_spec("vanilla", "colored_mnist", dataset_params={"sigma2": 0.02}, seed=seed, epochs=1,
                         max_train=256, max_eval=500)
        run(spec, store=store, device="cpu", mirror=mirror, progress=False)
        out[f"mlflow_loaded_after_seed{seed}"] = sys.modules.get("mlflow") is not None
out["warnings"] = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A folder with two real records made without MLflow, and what that process saw."""
    folder = tmp_path_factory.mktemp("gpu-out") / "runs"
    proc = subprocess.run([sys.executable, "-c", MAKE, str(folder)], capture_output=True, text=True, timeout=300,
                          env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr[-2000:]
    return folder, json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_run_works_without_mlflow_installed(made):
    folder, seen = made
    records = sorted(folder.glob("*.json"))
    assert len(records) == 2
    assert seen["mlflow_loaded_after_seed0"] is False and seen["mlflow_loaded_after_seed1"] is False
    assert len(seen["warnings"]) == 1 and "MLflow is not installed" in seen["warnings"][0]
    for p in records:
        assert check_record(json.loads(p.read_text())) is None


def test_import_adds_records_unchanged(made, tmp_path, capsys):
    folder, _ = made
    dest = tmp_path / "store"
    assert main(["import", str(folder), "--no-mlflow", "--results-dir", str(dest)]) == 0
    out = capsys.readouterr().out
    assert out.count("added ") == 2 and "imported 2 record(s)" in out and "vanilla on colored_mnist" in out
    for p in folder.glob("*.json"):
        assert json.loads((dest / p.name).read_text()) == json.loads(p.read_text())


def test_import_again_reports_already_stored(made, tmp_path, capsys):
    folder, _ = made
    dest = tmp_path / "store"
    main(["import", str(folder), "--no-mlflow", "--results-dir", str(dest)])
    capsys.readouterr()
    assert main(["import", str(folder), "--no-mlflow", "--results-dir", str(dest)]) == 0
    out = capsys.readouterr().out
    assert "imported 0 record(s)" in out and "2 already stored; 0 refused" in out


def test_conflicting_and_forged_records_are_refused_and_nothing_stored_changes(made, tmp_path, capsys):
    folder, _ = made
    dest = tmp_path / "store"
    main(["import", str(folder), "--no-mlflow", "--results-dir", str(dest)])
    before = {p.name: p.read_bytes() for p in dest.glob("*.json")}
    other = tmp_path / "other"
    other.mkdir()
    first, second = sorted(folder.glob("*.json"))
    rec = json.loads(first.read_text())
    rec["final"]["test"]["acc"] += 0.01  # same run id, different result
    (other / first.name).write_text(json.dumps(rec))
    forged = json.loads(second.read_text())
    forged["spec"]["seed"] = 7  # claims a run it did not do: the id no longer hashes the spec
    (other / "forged.json").write_text(json.dumps(forged))
    capsys.readouterr()
    assert main(["import", str(other), "--no-mlflow", "--results-dir", str(dest)]) == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 2
    assert any("conflicts with the stored record" in e and "different final" in e for e in errors)
    assert any("is not the hash of its spec" in e for e in errors)
    assert {p.name: p.read_bytes() for p in dest.glob("*.json")} == before


def test_missing_source_is_one_error_line(tmp_path, capsys):
    assert main(["import", str(tmp_path / "nope"), "--no-mlflow", "--results-dir", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "does not exist" in err[0]
    assert not (tmp_path / "s").exists()


def test_import_from_archive(made, tmp_path, capsys):
    folder, _ = made
    archive = tmp_path / "runs.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="runs")
    dest = tmp_path / "store"
    assert main(["import", str(archive), "--no-mlflow", "--results-dir", str(dest)]) == 0
    assert "imported 2 record(s)" in capsys.readouterr().out
    assert {p.name for p in dest.glob("*.json")} == {p.name for p in folder.glob("*.json")}


def test_import_brings_the_post_run_outputs_of_its_records(made, tmp_path, capsys):
    folder, _ = made
    archive = tmp_path / "runs.tar.gz"
    made_store = ResultStore(folder)
    rid = sorted(r["run_id"] for r in made_store.records())[0]
    out_path = made_store.put_output(rid, "reeval", "fixed_colour_confusion", {"counts": [[[1]]], "n": 1})
    try:
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(folder, arcname="runs")
    finally:
        out_path.unlink()  # the module's folder stays as the other tests expect it
    dest = tmp_path / "store"
    assert main(["import", str(archive), "--no-mlflow", "--results-dir", str(dest)]) == 0
    assert "stored 1 post-run output(s) beside their records; 0 skipped" in capsys.readouterr().out
    rec = ResultStore(dest).query().set_index("run_id").loc[rid, "record"]
    assert rec["reeval"]["fixed_colour_confusion"]["counts"] == [[[1]]]
    # an output of a record that is not stored (or of another training of it) is skipped
    other = tmp_path / "other"
    ResultStore(other).root.mkdir()
    (other / "_outputs" / "reeval").mkdir(parents=True)
    (other / "_outputs" / "reeval" / f"{'f' * 16}.random_colour.json").write_text('{"record_created": "x", "acc": 1}')
    assert main(["import", str(other), "--no-mlflow", "--results-dir", str(dest)]) == 0
    assert "0 post-run output(s) beside their records; 1 skipped" in capsys.readouterr().out


@pytest.mark.slow
def test_import_mirrors_the_added_records_to_mlflow(made, tmp_path, capsys):
    folder, _ = made
    dest = tmp_path / "store"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["import", str(folder), "--tracking-uri", uri, "--results-dir", str(dest)]) == 0
    assert "mirrored 2 to MLflow" in capsys.readouterr().out
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("biasbench/adhoc")
    ids = {r.data.tags["run_id"] for r in client.search_runs([exp.experiment_id])}
    assert ids == {p.stem for p in folder.glob("*.json")} == {p.stem for p in ResultStore(dest).root.glob("*.json")}
