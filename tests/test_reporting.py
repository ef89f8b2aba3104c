"""Reports: model selection, report specs, gap tables (golden markdown/LaTeX), figures, the PDF, the CLI.

tests/fixtures/store holds real records of tiny CPU runs (2-3 epochs on 1000-2000 training
samples, evaluated on fixed 2000-sample subsets) made once with ``benchmark.engine.run`` and tagged
as the suite runner tags them (suite lnl.figure4 / pgd.table1, profile quick); nothing in them was
edited. Paper tables and figures read paper evidence only (benchmark.evidence); the rendering tests
read these records re-tagged in memory as paper-profile records of the current code
(``as_paper_evidence``), and ``test_quick_and_stale_records_fill_no_cell`` checks that the records
as stored fill nothing. tests/fixtures/specs holds the specs rendered here (one reduced PGD Table 1 and copies of
four figure specs), so that editing reports/specs does not move the golden files. After an
intended change of the rendering, regenerate the golden files with ``UPDATE_GOLDEN=1``.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

import pandas as pd
import pytest

from benchmark.references import load_references
from benchmark.reporting import build_report, gap_frame, load_spec, load_specs, make_figure
from benchmark.reporting.figures import FIGURES
from benchmark.reporting.pdf import count_pages, report_pages, write_pdf
from benchmark.reporting.runs import metric_value
from benchmark.reporting.spec import SpecError, parse_spec
from benchmark.reporting.tables import (NOT_RUN, OUTSIDE, WITHIN, paper_protocol, selection_comparison,
                                        summary_frame, summary_markdown, to_latex, to_markdown)
from benchmark.selection import STRATEGIES, balanced_acc, select
from benchmark.store import ResultStore

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]
STORE = FIXTURES / "store"
SPECS = FIXTURES / "specs"
GOLDEN = FIXTURES / "golden"
UPDATE = bool(os.environ.get("UPDATE_GOLDEN"))


def as_paper_evidence(df: pd.DataFrame) -> pd.DataFrame:
    """The fixture's records as paper evidence: tagged profile "paper", not stale (in memory only)."""
    df = df.copy()
    records = [copy.deepcopy(r) for r in df["record"]]
    for r in records:
        r["tags"]["profile"] = "paper"
    df["record"], df["tag.profile"], df["stale"] = records, "paper", None
    return df


@pytest.fixture(scope="module")
def stored() -> pd.DataFrame:
    return ResultStore(STORE).query()


@pytest.fixture(scope="module")
def runs(stored) -> pd.DataFrame:
    return as_paper_evidence(stored)


@pytest.fixture(scope="module")
def refs() -> pd.DataFrame:
    return load_references()


@pytest.fixture(scope="module")
def table_spec():
    return load_spec(SPECS / "pgd.table1_cm.toml")


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"missing golden file {path}; run with UPDATE_GOLDEN=1 once"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from its golden file"


# ------------------------------------------------------------------------------------------ selection
HISTORY = [
    {"epoch": 1, "test": {"acc": 0.5}, "val": {"acc": 0.9, "group_acc": [[1.0, 0.0], [None, 1.0]]}},
    {"epoch": 2, "test": {"acc": 0.7}, "val": {"acc": 0.8, "group_acc": [[1.0, 0.6], [None, 1.0]]}},
    {"epoch": 3, "test": {"acc": 0.6}, "val": {"acc": 0.9, "group_acc": [[0.9, 0.5], [None, 0.9]]}},
]


def test_selection_strategies_pick_the_documented_epoch():
    rec = {"history": HISTORY}
    assert select(rec, "last").epoch == 3
    assert select(rec, "biased_val").epoch == 1  # 0.9 at epochs 1 and 3: ties go to the earliest
    assert select(rec, "biased_val").criterion == "val.acc"
    # bias-balanced val accuracy: (1+0+1)/3, (1+.6+1)/3, (.9+.5+.9)/3 -> epoch 2
    sel = select(rec, "unbiased_val")
    assert (sel.epoch, sel.criterion) == (2, "val.balanced_acc")
    assert sel.score == pytest.approx(2.6 / 3)
    assert select(rec, "oracle").epoch == 2
    assert set(STRATEGIES) == {"last", "biased_val", "unbiased_val", "oracle", "worst_group_val", "align_conflict",
                               "val_loss", "oracle_worst_group"}


def test_unbiased_val_prefers_a_dedicated_split_and_absent_splits_give_none():
    hist = [dict(r, val_unbiased={"acc": a}) for r, a in zip(HISTORY, (0.2, 0.1, 0.3))]
    sel = select({"history": hist}, "unbiased_val")
    assert (sel.epoch, sel.criterion) == (3, "val_unbiased.acc")
    no_val = [{"epoch": 1, "test": {"acc": 0.4}}]
    assert select({"history": no_val}, "biased_val") is None
    assert select({"history": no_val}, "unbiased_val") is None
    assert select({"history": []}, "last") is None
    assert balanced_acc({"group_acc": [[None, None]]}) is None
    with pytest.raises(ValueError, match="unknown selection"):
        select({"history": HISTORY}, "best")


def test_metric_paths():
    row = {"train.loss": 0.25,
           "test": {"acc": 0.5, "aligned_acc": 0.9, "conflicting_acc": 0.3,
                    "group_acc": [[1.0, 0.5], [0.0, None]], "group_n": [[3, 1], [2, 0]]}}
    rec = {"probe": {"color": {"acc": 0.42}}}
    assert metric_value(rec, row, "test.acc") == 0.5
    assert metric_value(rec, row, "test.major_minor_mean") == pytest.approx(0.6)
    assert metric_value(rec, row, "test.class_acc.0") == pytest.approx((3 * 1.0 + 1 * 0.5) / 4)
    assert metric_value(rec, row, "test.class_acc.1") == 0.0
    assert metric_value(rec, row, "test.balanced_acc") == pytest.approx(0.5)
    assert metric_value(rec, row, "train.loss") == 0.25
    assert metric_value(rec, row, "record:probe.color.acc") == 0.42
    assert metric_value(rec, row, "val.acc") is None
    assert metric_value(rec, row, "record:probe.gender.acc") is None


# -------------------------------------------------------------------------------------------- specs
def test_checked_in_specs_parse_and_name_real_reference_cells(refs):
    specs = load_specs()
    names = {s.name for s in specs}
    assert {"lnl.figure4", "lnl.table1", "lnl.table2", "blind_eye.table1", "pgd.table1", "pgd.table2",
            "pgd.table3", "pgd.table5", "pgd.table6", "pgd.table10", "pgd.table12", "pgd.table13",
            "lnl.figure5", "pgd.figure2", "pgd.figure13", "lnl.bias_head", "pgd.figure4c"} <= names
    for spec in specs:
        if spec.kind == "figure":
            assert spec.figure in FIGURES, spec.name
            continue
        if spec.artefact is None:  # numbers not transcribed yet: the paper's README must say why
            readme = REPO / "results" / "papers" / spec.paper / "README.md"
            assert "no numbers transcribed" in readme.read_text().lower(), spec.name
            continue
        ref = refs[(refs["paper"] == spec.paper) & (refs["artefact"] == spec.artefact)]
        assert not ref.empty, spec.name
        units = set(ref["units"])
        assert units == {"percent" if spec.scale == 100 else "fraction"}, (spec.name, units, spec.scale)
        cells = set(zip(ref["row"], ref["column"]))
        wanted = {(r.paper, c.paper) for r in spec.rows for c in spec.columns if c.paper}  # unprinted cells: no paper
        assert wanted <= cells, (spec.name, sorted(wanted - cells)[:3])
        assert len({c.paper for c in spec.columns}) == len(spec.columns), spec.name


def test_spec_typos_fail_loudly():
    good = {"title": "t", "paper": "pgd", "kind": "table", "rows": [{"method": "vanilla"}],
            "columns": [{"label": "c"}]}
    assert parse_spec(good, "x").columns[0].metric == "test.acc"
    with pytest.raises(SpecError, match="unknown key"):
        parse_spec({**good, "colums": []}, "x")
    with pytest.raises(SpecError, match="selection"):
        parse_spec({**good, "selection": "best"}, "x")
    with pytest.raises(SpecError, match="unknown key"):
        parse_spec({**good, "rows": [{"method": "vanilla", "filter": {}}]}, "x")
    with pytest.raises(SpecError, match="unknown report spec"):
        load_specs(SPECS, ["no.such.spec"])


# ------------------------------------------------------------------------------------------- tables
def test_golden_markdown_and_latex(runs, refs, table_spec):
    gap = gap_frame(runs, refs, table_spec)
    protocol = paper_protocol(refs, table_spec)
    golden("pgd.table1_cm.biased_val.md", to_markdown(gap, table_spec, protocol))
    golden("pgd.table1_cm.biased_val.tex", to_latex(gap, table_spec, protocol))
    summary = summary_frame([(table_spec, gap)])
    golden("summary.pgd.md", summary_markdown(summary, "pgd"))


def test_missing_runs_are_dashes_never_dropped(runs, refs, table_spec):
    gap = gap_frame(runs, refs, table_spec)
    assert len(gap) == len(table_spec.rows) * len(table_spec.columns)
    lff = gap[gap["method"] == "lff"]
    assert (lff["status"] == NOT_RUN).all() and lff["ours_mean"].isna().all()
    md = to_markdown(gap, table_spec)
    lff_lines = [line for line in md.splitlines() if line.startswith("| LfF")]
    assert len(lff_lines) == 2 and all(line.count("— (") == 3 for line in lff_lines)  # one line per panel
    ran = gap[gap["method"].isin(["vanilla", "pgd"])]
    assert (ran["n"] == 2).all() and (ran["status"] == OUTSIDE).all()  # tiny runs: far from the paper
    # best per column is bold: exactly one cell per column here (two methods ran)
    assert gap.groupby("col_index")["best"].sum().tolist() == [1] * len(table_spec.columns)


def test_cells_within_tolerance_when_the_paper_agrees(runs, refs, table_spec):
    gap = gap_frame(runs, refs, table_spec)
    ours = {(r.row_paper, r.column_paper): r.ours_mean for r in gap.itertuples() if r.n}
    shifted = refs.copy()
    key = list(zip(shifted["row"], shifted["column"]))
    near = [ours.get(k) for k in key]
    mask = (shifted["paper"] == "pgd") & (shifted["artefact"] == "table1") & pd.Series([v is not None for v in near])
    shifted.loc[mask, "value"] = [v + 1.5 for v, m in zip(near, mask) if m]  # inside the 2-point floor
    g = gap_frame(runs, shifted, table_spec)
    counts = g["status"].value_counts().to_dict()
    assert counts == {WITHIN: len(ours), NOT_RUN: len(g) - len(ours)}
    assert g.loc[g["status"] == WITHIN, "delta"].round(6).eq(-1.5).all()
    s = summary_frame([(table_spec, g)]).iloc[0]
    assert (s["within"], s["outside"], s["not run"], s["cells"]) == (len(ours), 0, len(g) - len(ours), len(g))


def test_quick_and_stale_records_fill_no_cell(stored, runs, refs, table_spec):
    from benchmark.provenance import mark_stale
    assert (gap_frame(mark_stale(stored), refs, table_spec)["status"] == NOT_RUN).all()  # quick and stale
    fresh_quick = stored.assign(stale=None)
    assert (gap_frame(fresh_quick, refs, table_spec)["status"] == NOT_RUN).all()  # quick alone
    stale_paper = runs.assign(stale="code changed: test")
    assert (gap_frame(stale_paper, refs, table_spec)["status"] == NOT_RUN).all()  # stale alone
    assert (gap_frame(runs, refs, table_spec)["n"] > 0).any()


def test_configuration_choice(runs, refs, table_spec):
    # a paper-profile twin of one vanilla run with a longer budget: two configurations, one is kept
    row = runs[(runs["method"] == "vanilla") & (runs["dataset"] == "colored_mnist_ratio")
               & (runs["p.bias_ratio"] == 0.995)].iloc[0].copy()
    rec = copy.deepcopy(row["record"])
    rec["run_id"], rec["spec"]["epochs"] = "twin", 100
    row["run_id"], row["record"] = "twin", rec
    both = pd.concat([runs, row.to_frame().T], ignore_index=True)
    cell = gap_frame(both, refs, table_spec).query("method == 'vanilla' and col_index == 0").iloc[0]
    assert "chose 1 of 2 configurations" in cell["note"]
    assert cell["run_ids"] == ("twin",) or "twin" not in cell["run_ids"]  # never a mix of the two
    assert cell["profiles"] == "paper"


def test_selection_changes_numbers_and_compares_side_by_side(runs, refs, table_spec):
    gaps = {s: gap_frame(runs, refs, table_spec, s) for s in ("last", "biased_val", "oracle")}
    val = lambda g: g[(g["method"] == "vanilla") & (g["column"] == "Val")]["ours_mean"]  # noqa: E731
    assert (val(gaps["biased_val"]).values >= val(gaps["last"]).values).all()  # best val accuracy ≥ the last epoch's
    assert set(gaps["oracle"].loc[gaps["oracle"]["n"] > 0, "criterion"]) == {"test.acc"}
    assert set(gaps["last"].loc[gaps["last"]["n"] > 0, "criterion"]) == {"last epoch"}
    comp = selection_comparison(gaps, table_spec)
    assert list(comp.columns) == ["method", "column", "paper", "last", "biased_val", "oracle"]
    assert len(comp) == int((gaps["last"]["n"] > 0).sum())


def test_overview_table_lists_every_stored_run(runs):
    from benchmark.reporting import overview_table
    df = runs.copy()
    first = df.index[df["dataset"] == "colored_mnist"][0]
    df.loc[first, "epochs"] = 99  # a budget that varies within a dataset, beside σ²
    text = overview_table(df)
    assert "### colored_mnist — test.acc (last epoch; columns: sigma2; epochs)" in text
    assert "### colored_mnist_ratio — test.acc (last epoch; columns: bias_ratio)" in text
    assert ", 99 " in text and "| vanilla " in text and "| lnl " in text


# ------------------------------------------------------------------------------------------ figures
def test_figures_are_drawn_from_stored_runs_only(runs, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHMARK_DATA_ROOT", str(tmp_path / "no-data-here"))
    drawn = {}
    for name in ("lnl.figure4", "lnl.bias_head", "pgd.figure13"):
        res = make_figure(runs, load_spec(SPECS / f"{name}.toml"))
        assert res.figure is not None, (name, res.notes)
        assert res.run_ids and set(res.run_ids) <= set(runs["run_id"])
        paths = res.save(tmp_path / "figures")
        assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in paths)
        drawn[name] = res
    ax = drawn["lnl.figure4"].figure.axes[0]
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"Baseline", "BlindEye", "Ours (LNL)"}
    fig5 = make_figure(runs, load_spec(SPECS / "lnl.figure5.toml"))
    assert fig5.figure is None and "not re-evaluated: run `python -m benchmark reeval --suite lnl.figure4`" in fig5.notes[-1]
    empty = make_figure(runs.iloc[0:0], load_spec(SPECS / "lnl.figure4.toml"))
    assert empty.figure is None and "no paper-profile run" in empty.notes[0]
    assert any(t.get_text().startswith("n=") for t in ax.texts)  # every point says its seeds


def test_quick_and_stale_records_draw_no_figure_point(stored, tmp_path):
    from benchmark.provenance import mark_stale
    for name in ("lnl.figure4", "lnl.bias_head", "pgd.figure13"):
        res = make_figure(mark_stale(stored), load_spec(SPECS / f"{name}.toml"))
        assert res.figure is None and res.run_ids == ()


# ---------------------------------------------------------------------------------------------- pdf
def test_pdf_has_the_expected_pages(runs, refs, tmp_path):
    specs = load_specs(SPECS)
    rep = build_report(runs, refs, specs, store=str(STORE),
                       generated="2000-01-01T00:00:00+00:00", papers_root=None)
    path = write_pdf(rep, tmp_path / "report.pdf")
    assert path.read_bytes().startswith(b"%PDF-") and path.read_bytes().rstrip().endswith(b"%%EOF")
    # title 1 + lnl: 3 figure pages (figure 5 is not drawn without stored re-evaluations: a page with its
    # note) + pgd: summary 1 (its 12 cells with both numbers fit), 2 table panels, 1 figure + provenance 1
    expected = 1 + 3 + (1 + 2 + 1) + 1
    assert len(report_pages(rep)) == expected
    assert count_pages(path) == expected


# ---------------------------------------------------------------------------------------------- cli
def test_quick_run_then_report_writes_a_complete_report(tmp_path, capsys):
    from benchmark.cli import main
    from benchmark.engine import run
    from benchmark.spec import make_spec

    store = tmp_path / "runs"
    for method in ("vanilla", "lnl"):
        spec = make_spec(method, "colored_mnist", seed=0, epochs=1, max_train=256, max_eval=200)
        run(spec, store=ResultStore(store), progress=False, tags={"suite": "lnl.figure4", "profile": "quick"})
    # LNL Figure 5 reads paper evidence only, so quick runs are not re-evaluated (test_reeval covers that step)
    assert main(["reeval", "--results-dir", str(store), "--suite", "lnl.figure4"]) == 0
    assert "nothing to re-evaluate" in capsys.readouterr().out
    out = tmp_path / "report"
    short = ["lnl.table1", "lnl.figure4", "lnl.figure5", "lnl.bias_head", "pgd.table1"]
    assert main(["report", "--pdf", "--out", str(out), "--results-dir", str(store), "--spec", *short]) == 0
    printed = capsys.readouterr().out
    assert "What reproduces and what doesn't" in printed and "not yet run" in printed  # findings first
    smoke = printed.split("## Smoke and untagged runs — not the papers' protocol", 1)[1]
    assert "colored_mnist" in smoke and "| lnl [quick]" in smoke  # the quick runs, apart
    assert "pgd.table1" in printed and "Not yet run" in printed  # the per-paper summary
    for name in ("report.md", "summary.md", "runs.csv", "report.pdf", "tables/pgd.table1.biased_val.tex",
                 "tables/lnl.table1.last.md"):
        assert (out / name).is_file(), name
    assert not list(out.glob("figures/*.png"))  # quick runs draw no figure
    md = (out / "report.md").read_text()
    papers, smoke = md.split("## Smoke and untagged runs — not the papers' protocol", 1)
    assert "LNL Figure 4" in papers and "no paper-profile run of the current code" in papers
    ids = [p.stem for p in store.glob("*.json")]
    assert len(ids) == 2 and all(r in smoke and r not in papers for r in ids)
    listed = pd.read_csv(out / "runs.csv", keep_default_na=False)  # every stored run, none read by a paper table
    assert sorted(listed["run_id"]) == sorted(ids) and (listed["read_by"] == "").all()
    # title, lnl summary, 2 lnl.table1 panels, 3 figure pages (not drawn), pgd summary, 3 pgd.table1 panels, provenance
    assert count_pages(out / "report.pdf") == 12
    assert main(["report", "--out", str(tmp_path / "r2"), "--results-dir", str(store), "--spec", "nope"]) == 2


def test_table_findings_list_cells_within_outside_and_not_run(runs, refs, table_spec):
    from benchmark.reporting.findings import counts_line, findings_markdown, table_findings
    gap = gap_frame(runs, refs, table_spec)
    found = table_findings([(table_spec, gap)])
    outside = [f for f in found if f.kind == "outside"]
    assert len(outside) == int((gap["status"] == OUTSIDE).sum()) == 12
    assert all(f.run_ids and f.spec == table_spec.name and "(n=2)" in f.text for f in outside)
    deltas = [abs(float(f.text.split("(Δ ")[1].split(",")[0])) for f in outside]
    assert deltas == sorted(deltas, reverse=True)  # the largest gaps first
    (not_run,) = [f for f in found if f.kind == "not_run"]
    assert not_run.text == f"{table_spec.name}: 6 of 18 cells not yet run" and not_run.run_ids == ()
    line = counts_line([(table_spec, gap)])
    assert "0 within tolerance, 12 outside, 6 not yet run" in line
    md = findings_markdown(line, found)
    assert md.count("\n- ") == 6 and "… and 7 more" in md  # 5 notable outside cells named, the rest counted
