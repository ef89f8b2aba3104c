"""Paper protocols: one recipe per artefact, a suite for every report spec, code-aware provenance."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.planner import make_plan
from benchmark.provenance import fingerprint, stale_reason
from benchmark.recipes import RECIPE_FIELDS, RECIPES
from benchmark.registry import DATASETS, METHODS
from benchmark.reporting import load_specs
from benchmark.spec import make_spec
from benchmark.store import ResultStore
from benchmark.suites import SUITES

REPO = Path(__file__).resolve().parents[1]


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "benchmark", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


def _plain(v):
    return list(v) if isinstance(v, tuple) else v


def test_every_report_spec_names_a_registered_suite():
    specs = load_specs()
    assert len(specs) >= 19
    missing = sorted({(s.name, suite) for s in specs for suite in s.suite if suite not in SUITES})
    assert missing == []


@pytest.mark.parametrize("name", sorted(n for n in SUITES.names() if not n.startswith("example.")))
def test_every_row_of_a_suite_runs_its_recipe_except_the_documented_exceptions(name):
    suite = SUITES.get(name)()
    for method, fields in suite.exceptions.items():  # every exception gives the paper's reason
        assert method in suite.methods
        for field, (value, why) in fields.items():
            assert field in RECIPE_FIELDS and isinstance(why, str) and len(why) > 20
    checked = 0
    for cell in suite.cells("paper"):
        assert cell.recipe is not None, f"{name}: setting {cell.setting.describe()} has no recipe"
        assert cell.recipe.name in RECIPES
        if cell.method not in METHODS or cell.setting.dataset not in DATASETS:
            continue  # planned and skipped with a line (e.g. blind_eye_faces, which cannot be built here)
        hparams, _ = cell.resolved_hparams(METHODS.get(cell.method))
        inner = hparams.get("inner")  # the de-noising wrapper carries the recipe for its inner method
        spec = make_spec(cell.method, cell.setting.dataset, dataset_params=dict(cell.setting.params),
                         hparams=hparams, seed=cell.seed, backbone=cell.backbone)
        exceptions = suite.exceptions.get(inner or cell.method, {})
        for field, value in cell.recipe.values.items():
            expected = exceptions[field][0] if field in exceptions else value
            assert spec.hparams[field] == _plain(expected), (name, cell.method, field)
        assert spec.epochs == spec.hparams["epochs"]
        if cell.recipe.backbone and not cell.setting.backbone:
            assert spec.backbone == cell.recipe.backbone
        checked += 1
    assert checked > 0 or name.startswith("blind_eye.table1")


def test_lnl_figure4_is_the_official_two_stage_recipe(tmp_path):
    plan = make_plan([SUITES.get("lnl.figure4")()], "paper", store=ResultStore(tmp_path), check_data=False)
    runs = {(r.spec.method, json.dumps(r.spec.dataset_params, sort_keys=True), r.spec.seed): r for r in plan.runs}
    lnl = [r for r in plan.runs if r.spec.method == "lnl"]
    assert len(lnl) == 21
    for r in lnl:
        base = runs[("vanilla", json.dumps(r.spec.dataset_params, sort_keys=True), r.spec.seed)]
        assert r.spec.pretrained == f"run:{base.run_id}" and r.after == base.run_id
        assert r.spec.hparams["lr"] == 0.001 and base.spec.hparams["lr"] == 0.01
        assert r.spec.backbone == base.spec.backbone == "lnl_convnet"
    first, second = plan.waves()
    assert {r.run_id for r in second} == {r.run_id for r in lnl}
    assert all(r.spec.method != "lnl" for r in first)
    scratch = make_plan([SUITES.get("lnl.figure4.scratch")()], "paper", store=ResultStore(tmp_path), check_data=False)
    assert all(r.spec.pretrained is None and r.spec.hparams["lr"] == 0.01 for r in scratch.runs)


def test_dry_run_verbose_shows_each_rows_effective_hyperparameters(tmp_path):
    plan = make_plan([SUITES.get("pgd.table1")(), SUITES.get("lff.colored_mnist")()], "paper",
                     store=ResultStore(tmp_path), check_data=False)
    text = plan.render(verbose=True)
    assert "pgd.table1: recipe pgd.table4.mnist" in text and "lff.colored_mnist: recipe lff.colored_mnist" in text
    for method in SUITES.get("pgd.table1").methods:
        row = next(line for line in text.splitlines() if line.strip().startswith(f"row {method} "))
        assert "lr=0.01," in row and "momentum=0.8," in row and "*" not in row
    lff_row = next(line for line in text.splitlines() if line.strip().startswith("row vanilla (backbone=lff_mlp_official"))
    assert "optimizer=adam" in lff_row and "lr=0.001" in lff_row


def test_lnl_convnet_batchnorm_choice_is_a_recorded_backbone_option():
    from benchmark.nets import BACKBONES
    from benchmark.registry import DATASETS
    info = DATASETS.get("colored_mnist")().info(DATASETS.get("colored_mnist").Params())
    paper, official = BACKBONES.get("lnl_convnet")(info), BACKBONES.get("lnl_convnet_official")(info)
    bn = lambda net: sum(isinstance(m, __import__("torch").nn.BatchNorm2d) for m in net.modules())
    assert bn(paper) == 5 and bn(official) == 1  # input BN + one per conv, against input BN only
    assert make_spec("vanilla", "colored_mnist", backbone="lnl_convnet_official").run_id != \
        make_spec("vanilla", "colored_mnist", backbone="lnl_convnet").run_id


def test_pretrained_imagenet_weights_that_are_absent_skip_the_setting_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    plan = make_plan([SUITES.get("pgd.table10")()], "paper", store=ResultStore(tmp_path / "runs"), check_data=False)
    assert plan.runs == []
    (skip,) = plan.skipped
    assert "resnet18-f37072fd.pth" in skip.reason and str(tmp_path / "torch") in skip.reason


def test_fingerprint_ignores_docstrings_and_sees_code(tmp_path, monkeypatch):
    from benchmark import provenance
    mod = tmp_path / "fp_probe_mod.py"
    mod.write_text('"""Doc."""\n\ndef f():\n    """Say."""\n    return 1\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib
    importlib.import_module("fp_probe_mod")
    first = provenance._module_hash("fp_probe_mod")
    provenance._module_hash.cache_clear()
    mod.write_text('"""Another doc."""\n\ndef f():\n    """Changed words."""\n    # a comment\n    return 1\n')
    assert provenance._module_hash("fp_probe_mod") == first
    provenance._module_hash.cache_clear()
    mod.write_text('"""Doc."""\n\ndef f():\n    return 2\n')
    assert provenance._module_hash("fp_probe_mod") != first
    provenance._module_hash.cache_clear()


def test_records_carry_the_code_fingerprint_of_method_dataset_and_backbone():
    fp = fingerprint(make_spec("lff", "colored_mnist_lff", backbone="lff_mlp_official"))
    assert set(fp["modules"]) == {"benchmark_methods.lff", "benchmark.optim", "benchmark_datasets.colored_mnist_lff",
                                  "benchmark.nets_mnist"}
    assert fp["plugins"] == {} and len(fp["digest"]) == 16
    assert stale_reason({"spec": make_spec("lff", "colored_mnist_lff").to_dict(), "code": {}}).startswith("no code")


def test_a_record_whose_method_code_changed_is_stale_in_status_and_report_and_reruns(tmp_path):
    plugin = tmp_path / "plugin"
    shutil.copytree(REPO / "tests" / "plugin", plugin)
    env = {"PYTHONPATH": str(plugin)}
    runs = tmp_path / "runs"
    common = ["--results-dir", str(runs)]
    res = cli("run", "--suite", "example.smoothing", "--profile", "quick", "--no-mlflow", "--no-progress", *common,
              env=env)
    assert res.returncode == 0, res.stderr
    (record,) = ResultStore(runs).records()
    assert record["code"]["fingerprint"]["plugins"] == {"biasbench-example-plugin": "0.1"}
    assert "biasbench_example_plugin" in record["code"]["fingerprint"]["modules"]
    status = cli("status", "--suite", "example.smoothing", "--profile", "quick", *common, env=env)
    assert status.returncode == 0 and " 1      0 " in status.stdout.split("quick", 1)[1].splitlines()[0] + " "

    source = plugin / "biasbench_example_plugin" / "__init__.py"
    text = source.read_text()
    source.write_text(text.replace("label_smoothing=self.hparams.smoothing", "label_smoothing=self.hparams.smoothing / 2"))
    status = cli("status", "--suite", "example.smoothing", "--profile", "quick", *common, env=env)
    assert status.returncode == 0, status.stderr
    assert f"stale {record['run_id']}" in status.stdout and "code changed: biasbench_example_plugin" in status.stdout
    report = cli("report", "--spec", "lff.colored_mnist", "--out", str(tmp_path / "out"),
                 *common, env=env)
    assert report.returncode == 0, report.stderr
    md = (tmp_path / "out" / "report.md").read_text()
    smoke = md.split("## Smoke and untagged runs — not the papers' protocol", 1)[1]
    assert f"| {record['run_id']} |" in smoke and "| stale " in smoke and "code changed: biasbench_example_plugin" in smoke
    assert "1 stored record(s) are stale" in report.stdout

    again = cli("run", "--suite", "example.smoothing", "--profile", "quick", "--no-mlflow", "--no-progress", *common,
                env=env)
    assert again.returncode == 0 and "everything is cached" in again.stdout  # stale alone does not retrain
    rerun = cli("run", "--suite", "example.smoothing", "--profile", "quick", "--no-mlflow", "--no-progress",
                "--rerun-stale", *common, env=env)
    assert rerun.returncode == 0, rerun.stderr
    (kept,) = (runs / "_stale").glob(f"{record['run_id']}.*.json")
    assert json.loads(kept.read_text())["retired"]["reason"].startswith("code changed")
    (fresh,) = ResultStore(runs).records()
    assert fresh["run_id"] == record["run_id"]
    assert fresh["code"]["fingerprint"]["digest"] != record["code"]["fingerprint"]["digest"]
