"""Re-evaluation as a post-run step, and reports that only read the store.

Real parts: MNIST from the data root, a real suite run (``run --suite pgd.table12 --profile quick``:
one tiny CPU run) through the local executor, the real ``reeval`` command, and a report built in a
fresh Python process whose imported modules are checked.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from benchmark.cli import main
from benchmark.store import ResultStore

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]
HINT = "not re-evaluated: run `python -m benchmark reeval --suite pgd.table12 --suite pgd.table1`"


def test_every_reevaluation_the_reports_name_exists():
    from benchmark.reeval import REEVALUATIONS
    from benchmark.reporting.reevaluated import NAMES
    assert set(REEVALUATIONS) == set(NAMES)


def test_colored_mnist_families_recolour_their_test_sets(data_root):
    from benchmark_datasets.colored_mnist import PALETTE, ColoredMNIST, ColoredMNISTParams
    from benchmark_datasets.colored_mnist_ratio import ColoredMNISTRatio, ColoredMNISTRatioParams
    from benchmark_datasets.colored_mnist_lff import ColoredMNISTLfF

    lnl = ColoredMNIST()
    params = ColoredMNISTParams(sigma2=0.02)
    three = lnl.recoloured_test(params, data_root, "fixed_mean_3")
    assert len(three.split) == 10000 and set(three.split.b.tolist()) == {3}
    assert three.colour == tuple(PALETTE[3])
    # the colour of a digit is its brightest pixel / 255: centred on the fixed mean colour
    colour = three.split.x.flatten(2).max(2).values.float().numpy() / 255
    assert np.allclose(np.median(colour, 0), PALETTE[3], atol=0.03)
    again = lnl.recoloured_test(params, data_root, "fixed_mean_3")
    assert (again.split.x == three.split.x).all()  # seeded by the parameters and the colouring alone
    assert not (lnl.recoloured_test(params, data_root, "fixed_mean_4").split.x == three.split.x).all()

    uniform = ColoredMNISTRatio().recoloured_test(ColoredMNISTRatioParams(), data_root, "uniform")
    assert uniform.colour is None and 0.05 < uniform.split.aligned.float().mean() < 0.2

    with pytest.raises(ValueError, match="offers fixed_mean_0"):
        lnl.recoloured_test(params, data_root, "uniform")
    with pytest.raises(ValueError, match="offers no re-coloured test sets"):
        ColoredMNISTLfF().recoloured_test(None, data_root, "uniform")


def test_outputs_of_a_replaced_record_or_damaged_are_ignored(tmp_path):
    store = ResultStore(tmp_path / "runs")
    shutil.copytree(FIXTURES / "store", store.root)
    rid = sorted(r["run_id"] for r in store.records())[0]
    store.put_output(rid, "reeval", "random_colour", {"acc": 0.25, "n": 4})
    rec = store.query().set_index("run_id").loc[rid, "record"]
    assert rec["reeval"]["random_colour"]["acc"] == 0.25
    assert "reeval" not in json.loads(store.path(rid).read_text())  # the record itself is never rewritten
    assert len(list(store.records())) == len(list((FIXTURES / "store").glob("*.json")))  # not read as records

    path = store.output_path(rid, "reeval", "random_colour")
    path.write_text(json.dumps({**json.loads(path.read_text()), "record_created": "1999-01-01T00:00:00+00:00"}))
    assert "reeval" not in store.query().set_index("run_id").loc[rid, "record"]  # computed from an older record
    path.write_text("{")
    with pytest.warns(RuntimeWarning, match="unreadable"):
        assert "reeval" not in store.query().set_index("run_id").loc[rid, "record"]


def test_reeval_refuses_bad_input_in_one_line(tmp_path, capsys):
    runs = tmp_path / "runs"
    shutil.copytree(FIXTURES / "store", runs)
    ratio = next(r["run_id"] for r in ResultStore(runs).records() if r["spec"]["dataset"] == "colored_mnist_ratio")
    for args, says in ((["--name", "nope"], "no such re-evaluation"),
                       (["--run-id", "zz"], "matches 0 stored runs"),
                       (["--run-id", ratio, "--name", "fixed_colour_confusion"], "no re-evaluation applies")):
        assert main(["reeval", "--results-dir", str(runs), *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and says in err and "Traceback" not in err
    # fixture runs kept no weights: reported per run, exit 1, nothing stored
    assert main(["reeval", "--results-dir", str(runs), "--run-id", ratio]) == 1
    assert "kept no weights" in capsys.readouterr().out and not (runs / "_outputs").exists()


PURE_REPORT = textwrap.dedent("""
    import sys
    from benchmark.provenance import mark_stale
    from benchmark.references import load_references
    from benchmark.reporting import build_report, load_specs, report_markdown
    from benchmark.reporting.pdf import write_pdf
    from benchmark.store import ResultStore
    runs = ResultStore(sys.argv[1]).query()
    report = build_report(runs, load_references(), load_specs(None, ["pgd.table12", "lnl.figure5"]))
    write_pdf(report, sys.argv[2])
    print(report_markdown(report))
    # (the plug-in namespace packages themselves hold no code: the stale check looks up files through them)
    loaded = [m for m in sys.modules if (m.split(".")[0] in ("torch", "benchmark_datasets", "benchmark_methods")
              or m in ("benchmark.engine", "benchmark.registry", "benchmark.data", "benchmark.reeval"))
              and getattr(sys.modules[m], "__file__", None)]
    print("LOADED", loaded)
""")


def test_suite_run_stores_its_reevaluation_and_a_torch_free_report_shows_it(tmp_path, capsys):
    from benchmark.catalogue import load
    from benchmark.reporting import gap_frame, load_specs
    from benchmark.references import load_references

    from benchmark.engine import run
    from benchmark.planner import make_plan, select_suites

    load()  # the plug-in catalogue (plain data) that reports read for method facts, as any command leaves it
    runs = tmp_path / "runs"
    store = ResultStore(runs)
    # a tiny run of Table 12's vanilla cell, tagged as paper evidence (tables read nothing else; the
    # paper budget itself is 100 epochs): the quick profile's spec, the paper profile's tags
    (planned,) = make_plan(select_suites(["pgd.table12"]), "quick", store=store, check_data=False).runs
    run(planned.spec, store=store, progress=False, keep_model=True, tags={"suite": "pgd.table12", "profile": "paper"})
    assert main(["reeval", "--results-dir", str(runs), "--suite", "pgd.table12"]) == 0
    assert "1 computed" in capsys.readouterr().out
    (record,) = store.records()
    out = json.loads(store.output_path(record["run_id"], "reeval", "random_colour").read_text())
    assert out["record_created"] == record["created"] and 0.0 <= out["acc"] <= 1.0
    assert out["n"] == record["spec"]["max_eval"]
    assert main(["reeval", "--results-dir", str(runs), "--suite", "pgd.table12"]) == 0
    assert "0 computed, 1 already stored" in capsys.readouterr().out
    # a bias probe (the other post-run step) is stored the same way: reports read record:probe.<attribute>
    assert main(["probe", "--results-dir", str(runs), "--run-id", record["run_id"], "--epochs", "1",
                 "--max-samples", "400"]) == 0
    probed = store.query().loc[0, "record"]["probe"]["color"]
    assert probed["n"] == 200 and 0.0 <= probed["acc"] <= 1.0 and probed["config"]["max_samples"] == 400

    proc = subprocess.run([sys.executable, "-c", PURE_REPORT, str(runs), str(tmp_path / "r.pdf")],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout  # no torch, engine, registry or plug-in behind a report
    row = next(line for line in proc.stdout.splitlines() if line.startswith("| Vanilla"))
    assert f"{100 * out['acc']:.2f}" in row

    # the same run without its stored output: the cell names the command that fills it
    store.output_path(record["run_id"], "reeval", "random_colour").unlink()
    gap = gap_frame(store.query(), load_references(), load_specs(None, ["pgd.table12"])[0])
    assert HINT in gap.query("method == 'vanilla'").iloc[0]["note"]


def test_a_spec_naming_an_unknown_reevaluation_is_refused():
    import tomllib

    from benchmark.references import load_references
    from benchmark.reporting import SpecError, build_report
    from benchmark.reporting.spec import parse_spec

    data = tomllib.loads((REPO / "reports" / "specs" / "pgd.table12.toml").read_text())
    data["columns"][0]["metric"] = "record:reeval.nope.acc"
    with pytest.raises(SpecError, match="unknown re-evaluation 'nope'"):
        build_report(ResultStore(FIXTURES / "store").query(), load_references(), [parse_spec(data, "pgd.table12")])


def test_reporting_modules_import_each_other_without_cycles():
    import ast
    folder = REPO / "benchmark" / "reporting"
    graph = {}
    for p in folder.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps.add(node.module or "")
        graph[p.stem] = {d.split(".")[0] for d in deps if d}
    assert "pdf" not in graph["build"] and "build" in graph["pdf"]

    def reach(start, seen=()):
        for d in graph.get(start, ()):
            if d in seen:
                continue
            yield d
            yield from reach(d, (*seen, d))
    assert not [m for m in graph if m in set(reach(m))], graph
