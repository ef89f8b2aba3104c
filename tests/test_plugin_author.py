"""The plug-in author's path: a plug-in ships a method, a suite and a report spec (tests/plugin/);
``report`` renders that spec, ``--specs-dir`` adds folders, and ``runs.csv`` lists every stored run."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from benchmark.reporting import SpecError, load_specs
from benchmark.reporting.spec import DEFAULT_SPEC_DIR, plugin_spec_dirs

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "tests" / "plugin"
PLUGIN_SPEC = PLUGIN / "biasbench_example_plugin" / "specs" / "example.smoothing.toml"


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "benchmark", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(PLUGIN), **(env or {})}, timeout=600)


def spec_folder(path: Path, *names: str) -> Path:
    """A folder holding a copy of the plug-in's spec under each of ``names``."""
    path.mkdir()
    for name in names:
        (path / f"{name}.toml").write_text(PLUGIN_SPEC.read_text().replace("Example:", f"{name}:"))
    return path


@pytest.fixture
def plugin_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGIN))  # its *.dist-info makes the entry points visible


def test_plugin_spec_is_found_through_its_entry_point_without_importing_it(plugin_on_path):
    (folder, origin), = [d for d in plugin_spec_dirs() if "biasbench-example-plugin" in d[1]]
    assert folder == PLUGIN_SPEC.parent and "benchmark.report_specs" in origin
    assert "biasbench_example_plugin" not in sys.modules  # located, not imported
    names = [s.name for s in load_specs()]
    assert "example.smoothing" in names and "pgd.table1" in names  # the built-ins stay


def test_specs_dir_adds_folders_and_a_duplicate_name_names_both_files(plugin_on_path, tmp_path):
    one, two = spec_folder(tmp_path / "one", "extra.one"), spec_folder(tmp_path / "two", "extra.two")
    names = {s.name for s in load_specs([one, two], defaults=True)}  # what `report --specs-dir A --specs-dir B` reads
    assert {"extra.one", "extra.two", "example.smoothing", "pgd.table1"} <= names
    assert [s.name for s in load_specs([one, two])] == ["extra.one", "extra.two"]  # folders given: only those
    assert load_specs([one, two], ["extra.two"], defaults=True)[0].title.startswith("extra.two:")
    clash = spec_folder(tmp_path / "clash", "pgd.table1")
    with pytest.raises(SpecError) as err:
        load_specs([one, clash], defaults=True)
    assert str(DEFAULT_SPEC_DIR / "pgd.table1.toml") in str(err.value)
    assert str(clash / "pgd.table1.toml") in str(err.value) and "built-in reports/specs" in str(err.value)


def test_runs_csv_lists_every_stored_run_with_the_specs_that_read_it(tmp_path):
    """On the checked-in fixture store: a spec reading PGD Table 1 runs leaves the LNL Figure 4 runs
    unread; runs.csv still lists them, with an empty ``read_by``."""
    from benchmark.references import load_references
    from benchmark.reporting import build_report, write_report
    from benchmark.store import ResultStore
    from test_reporting import as_paper_evidence  # the fixture records, re-tagged as paper evidence in memory
    runs = as_paper_evidence(ResultStore(REPO / "tests" / "fixtures" / "store").query())
    specs = load_specs(REPO / "tests" / "fixtures" / "specs", ["pgd.table1_cm"])
    write_report(build_report(runs, load_references(), specs), tmp_path)
    csv = pd.read_csv(tmp_path / "runs.csv", keep_default_na=False)
    assert sorted(csv["run_id"]) == sorted(runs["run_id"])
    read = csv.groupby("suite")["read_by"].agg(set).to_dict()
    assert read["lnl.figure4"] == {""} and "pgd.table1_cm" in read["pgd.table1"]


def test_report_renders_the_plugin_spec_and_specs_dir_adds_folders(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "report"
    suite = cli("run", "--suite", "example.smoothing", "--profile", "quick", "--no-mlflow", "--no-progress",
                "--results-dir", str(runs))
    assert suite.returncode == 0, suite.stderr
    extra = spec_folder(tmp_path / "extra", "extra.one")
    rep = cli("report", "--results-dir", str(runs), "--out", str(out), "--specs-dir", str(extra),
              "--spec", "example.smoothing", "extra.one")
    assert rep.returncode == 0, rep.stderr
    # the plug-in's spec renders (a quick run fills no paper cell: it is listed apart, with its number)
    table = (out / "tables" / "example.smoothing.last.md").read_text()
    assert "Label smoothing (label_smoothing)" in table and "paper profile" in table
    assert (out / "tables" / "extra.one.last.md").read_text().startswith("### extra.one:")
    smoke = (out / "report.md").read_text().split("## Smoke and untagged runs", 1)[1]
    assert "label_smoothing" in smoke and "quick" in smoke
    csv = pd.read_csv(out / "runs.csv", keep_default_na=False)
    assert list(csv["method"]) == ["label_smoothing"] and list(csv["read_by"]) == [""]


def test_a_second_spec_of_a_taken_name_is_one_error_line_naming_both_files(plugin_on_path, tmp_path, capsys):
    from benchmark.cli import main
    extra = spec_folder(tmp_path / "extra", "extra.one")
    clash = spec_folder(tmp_path / "clash", "example.smoothing")
    code = main(["report", "--results-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "bad"),
                 "--specs-dir", str(extra), "--specs-dir", str(clash)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: report spec 'example.smoothing' is defined twice")
    assert str(PLUGIN_SPEC) in line and str(clash / "example.smoothing.toml") in line
    assert not (tmp_path / "bad").exists()
    assert main(["report", "--no-default-specs", "--out", str(tmp_path / "bad")]) == 2
    assert "--no-default-specs needs at least one --specs-dir" in capsys.readouterr().err


@pytest.mark.slow
def test_a_plugin_run_no_spec_reads_is_in_runs_csv(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "report"
    lone = cli("run", "--method", "label_smoothing", "--dataset", "colored_mnist", "--sigma2", "0.02", "--epochs", "1",
               "--max-train", "256", "--no-mlflow", "--no-progress", "--results-dir", str(runs))  # untagged
    assert lone.returncode == 0, lone.stderr
    rep = cli("report", "--results-dir", str(runs), "--out", str(out))
    assert rep.returncode == 0, rep.stderr
    csv = pd.read_csv(out / "runs.csv", keep_default_na=False)
    assert list(csv["method"]) == ["label_smoothing"] and list(csv["read_by"]) == [""]


# --- the README's plug-in example, as written --------------------------------------------------------
README_FILES = ["my_package/my_method.py", "my_package/my_dataset.py", "my_package/my_backbone.py",
                "my_package/my_suite.py", "my_package/specs/my.stripes.toml", "pyproject.toml"]


def readme_plugin_package(root: Path) -> Path:
    """Write the README "Plug-ins" section's code blocks, in order, as the package they describe."""
    import re
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Plug-ins"):]
    section = section[:section.index("\n## ", 1)]
    blocks = [body for lang, body in re.findall(r"```(\w+)\n(.*?)```", section, re.S) if lang != "bash"]
    assert len(blocks) == len(README_FILES)
    for name, body in zip(README_FILES, blocks):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(body, encoding="utf-8")
    (root / "my_package" / "__init__.py").write_text("")
    return root


def test_the_readme_plugin_example_parses(tmp_path):
    import ast
    import tomllib

    from benchmark.reporting.spec import load_spec
    root = readme_plugin_package(tmp_path)
    for name in README_FILES[:4]:
        ast.parse((root / name).read_text(), name)
    spec = load_spec(root / "my_package" / "specs" / "my.stripes.toml")
    assert spec.suite == ("my.stripes",) and [r.method for r in spec.rows] == ["vanilla", "my_method"]
    groups = tomllib.loads((root / "pyproject.toml").read_text())["project"]["entry-points"]
    assert set(groups) == {"benchmark.methods", "benchmark.datasets", "benchmark.backbones", "benchmark.suites",
                           "benchmark.report_specs"}


@pytest.mark.slow
def test_the_readme_plugin_example_installs_runs_and_reports(tmp_path):
    root = readme_plugin_package(tmp_path / "pkg")
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(site), str(root)], check=True, capture_output=True, timeout=300)
    env = {"PYTHONPATH": str(site)}
    listed = cli("list", env=env)
    assert all(n in listed.stdout for n in ("my_method", "striped_mnist", "tiny_mlp", "my.stripes")), listed.stdout
    runs, out = tmp_path / "runs", tmp_path / "report"
    res = cli("run", "--suite", "my.stripes", "--profile", "quick", "--no-mlflow", "--no-progress",
              "--results-dir", str(runs), env=env)
    assert res.returncode == 0, res.stderr
    rep = cli("report", "--results-dir", str(runs), "--out", str(out), "--spec", "my.stripes", env=env)
    assert rep.returncode == 0, rep.stderr
    table = (out / "tables" / "my.stripes.last.md").read_text()
    assert "Runs: 4 (budget profile: quick)" in table and "0 not yet run" in table
