"""What counts as paper evidence (benchmark.evidence): status and report agree by construction, the
committed store's report holds no quick/untagged/stale run in a paper table or figure, documented
findings print their backing records or "not yet measured", and the README block is up to date.

Fast: no training; synthetic records are written through ResultStore, and the committed store
(results/runs) is read as it is.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark import make_spec
from benchmark.evidence import PAPER, QUICK, STALE, UNFINISHED, UNTAGGED, classify, record_suites
from benchmark.planner import expand, select_suites, status_text, suite_count
from benchmark.provenance import fingerprint, mark_stale
from benchmark.references import load_references
from benchmark.reporting import build_report, gap_frame, load_specs
from benchmark.reporting.build import readme_block, readme_findings, report_markdown, update_readme
from benchmark.reporting.findings import documented_findings, load_claims
from benchmark.reporting.spec import SpecError, parse_spec
from benchmark.store import ResultStore
from benchmark.suites import SUITES, Profile, Setting, Suite, register_suite

REPO = Path(__file__).resolve().parents[1]
SUITE = "test.evidence_grid"


class EvidenceGrid(Suite):
    """Test-only: vanilla on one σ², two seeds at the paper profile, one at the quick profile."""

    methods = ("vanilla",)
    settings = (Setting("colored_mnist", {"sigma2": 0.02}),)
    profiles = {"paper": Profile(seeds=(0, 1), epochs=2, max_train=64, max_eval=64),
                "quick": Profile(seeds=(0, 1), epochs=1, max_train=32, max_eval=32)}


@pytest.fixture(autouse=True)
def _suite():
    register_suite(SUITE)(EvidenceGrid)
    try:
        yield
    finally:
        SUITES._classes.pop(SUITE, None)  # test-only: the registry has no public removal


SPEC = parse_spec({
    "title": "Test table", "paper": "lnl", "kind": "table", "suite": SUITE, "selection": "last", "scale": 100,
    "filters": {"dataset": "colored_mnist"},
    "rows": [{"method": "vanilla", "paper": "Baseline"}],
    "columns": [{"paper": "0.02", "label": "σ²=0.02", "metric": "test.acc", "filters": {"p.sigma2": 0.02}}],
}, "test.evidence_table")


def record(spec, tags: dict, *, acc: float, fresh: bool = True, status: str = "done") -> dict:
    """A finished-run record as the engine writes it (two epochs of history), without training."""
    history = [{"epoch": e, "test": {"acc": acc - 0.1 * (2 - e)}, "val": {"acc": acc}} for e in (1, 2)]
    return {"run_id": spec.run_id, "status": status, "spec": spec.to_dict(), "tags": tags, "history": history,
            "final": {"test": {"acc": acc}}, "wall_time_s": 1.0, "device": "cpu",
            "code": {"fingerprint": fingerprint(spec)} if fresh else {}}


@pytest.fixture
def mixed_store(tmp_path) -> tuple[ResultStore, dict[str, str]]:
    """One record of each class; returns the store and run id -> class."""
    store = ResultStore(tmp_path / "runs")
    paper = [r.spec for r in expand([SUITES.get(SUITE)()], "paper")[0]]
    quick = [r.spec for r in expand([SUITES.get(SUITE)()], "quick")[0]]
    tags = {"suite": SUITE, "profile": "paper"}
    extra = make_spec("vanilla", "colored_mnist", dataset_params={"sigma2": 0.02}, seed=7, epochs=2, max_train=64)
    unfinished = make_spec("vanilla", "colored_mnist", dataset_params={"sigma2": 0.02}, seed=8, epochs=2,
                           max_train=64)
    outside_plan = make_spec("vanilla", "colored_mnist", dataset_params={"sigma2": 0.02}, seed=9, epochs=2,
                             max_train=64, max_eval=64)  # e.g. from an earlier grid of the suite: paper evidence all the same
    written = {
        paper[0].run_id: (record(paper[0], tags, acc=0.61), PAPER),
        paper[1].run_id: (record(paper[1], tags, acc=0.99, fresh=False), STALE),  # no fingerprint: stale
        quick[0].run_id: (record(quick[0], {"suite": SUITE, "profile": "quick"}, acc=0.98), QUICK),
        extra.run_id: (record(extra, {}, acc=0.97), UNTAGGED),
        unfinished.run_id: (record(unfinished, tags, acc=0.96, status="failed"), UNFINISHED),
        outside_plan.run_id: (record(outside_plan, tags, acc=0.41), PAPER),
    }
    for rec, _ in written.values():
        store.put(rec)
    return store, {rid: cls for rid, (_, cls) in written.items()}


def test_status_and_report_count_the_same_runs(mixed_store):
    store, classes = mixed_store
    runs = classify(mark_stale(store.query()))
    assert dict(zip(runs["run_id"], runs["class"])) == classes
    paper_ids = {r for r, c in classes.items() if c == PAPER}

    # status: its done count for the paper profile is paper evidence (the record outside the
    # suite's current plan is named on its own line, and counted there)
    records = {r["run_id"]: (r, s) for r, s in zip(runs["record"], runs["stale"])}
    suite = SUITES.get(SUITE)()
    planned = [r.run_id for r in expand([suite], "paper")[0]]
    count = suite_count(suite, "paper", planned, 0, records)
    assert len(count.done_ids) == 1 and len(count.extra_ids) == 1 and [i for i, _ in count.stale_ids] == [planned[1]]
    assert set(count.done_ids) | set(count.extra_ids) == paper_ids
    text = status_text(store, select_suites([SUITE]), ["paper", "quick"])
    paper_row = next(line for line in text.splitlines() if line.startswith(SUITE) and " paper " in line)
    assert paper_row.split()[2:5] == ["2", "1", "1"]  # runs, done, stale
    assert f"not in its current plan (the report reads them): {count.extra_ids[0]}" in text

    # report: the one cell reads exactly the same runs, and lists every other run apart
    gap = gap_frame(runs, load_references(), SPEC)
    assert set(gap["run_ids"].iloc[0]) == paper_ids
    assert gap["n"].iloc[0] == 2 and round(gap["ours_mean"].iloc[0], 6) == 51.0  # (61 + 41) / 2
    report = build_report(mark_stale(store.query()), load_references(), [SPEC])
    assert dict(zip(report.smoke["run_id"], report.smoke["class"])) == {r: c for r, c in classes.items() if c != PAPER}
    read = report.provenance[report.provenance["read_by"] != ""]
    assert set(read["run_id"]) == paper_ids and set(report.provenance["run_id"]) == set(classes)
    md = report_markdown(report)
    tables, smoke = md.split("## Smoke and untagged runs — not the papers' protocol", 1)
    assert "51.00 ± 14.14 (n=2)" in tables and "paper profile" in tables
    assert all(r in smoke for r in classes if r not in paper_ids) and "**" not in smoke  # nothing bold there


@pytest.fixture(scope="module")
def committed_report():
    """The report of the committed store (results/runs) with every committed spec, as `report` builds it."""
    runs = mark_stale(ResultStore(REPO / "results" / "runs").query())
    return runs, build_report(runs, load_references(), load_specs(),
                              generated="2000-01-01T00:00:00+00:00")


def test_committed_store_fills_paper_tables_and_figures_with_paper_evidence_only(committed_report):
    runs, report = committed_report
    runs = classify(runs)
    by_id = dict(zip(runs["run_id"], runs["record"]))
    cls = dict(zip(runs["run_id"], runs["class"]))
    assert {QUICK, STALE, UNTAGGED} & set(cls.values())  # the store does hold runs that must stay out
    read = 0
    for sec in report.sections:
        for t in sec.tables:
            suites = set(t.spec.suite)
            for ids in t.gap["run_ids"]:
                for r in ids:
                    read += 1
                    assert cls[r] == PAPER and suites & set(record_suites(by_id[r]))
        for f in sec.figures:
            assert all(cls[r] == PAPER for r in f.run_ids), f.spec.name
    assert read > 0  # the committed LfF paper-profile records fill cells
    assert set(report.smoke["run_id"]) == {r for r, c in cls.items() if c != PAPER}


def test_readme_findings_block_is_what_the_committed_store_generates(committed_report):
    _, report = committed_report
    assert readme_findings(REPO / "README.md") == readme_block(report), (
        "README.md's findings block is out of date: run `python -m benchmark report --update-readme`")


def test_update_readme_rewrites_only_between_the_markers(tmp_path):
    path = tmp_path / "README.md"
    path.write_text("# T\n\nintro\n<!-- findings:begin -->\nold\n<!-- findings:end -->\nrest\n", encoding="utf-8")
    assert update_readme(path, "- new line\n")
    assert path.read_text(encoding="utf-8") == "# T\n\nintro\n<!-- findings:begin -->\n- new line\n<!-- findings:end -->\nrest\n"
    assert readme_findings(path) == "- new line\n"
    assert not update_readme(path, "- new line\n")  # unchanged: not rewritten
    path.write_text("# no markers\n", encoding="utf-8")
    with pytest.raises(SpecError, match="findings:begin"):
        update_readme(path, "x\n")


CLAIMS = """
[[finding]]
text = "Vanilla reaches {acc} here"
paper = "the paper says so"
source = "this test"
suites = ["%s"]
methods = ["vanilla"]
metric = "test.acc"
scale = 100
by = "p.sigma2"

[[finding]]
text = "A claim nothing backs"
paper = "the paper says so"
source = "this test"
spec = "test.evidence_table"
suites = ["no.such_suite"]
methods = ["vanilla"]
metric = "test.acc"
""" % SUITE


def test_documented_findings_print_their_backing_or_not_yet_measured(mixed_store, tmp_path):
    store, classes = mixed_store
    (tmp_path / "findings.toml").write_text(CLAIMS, encoding="utf-8")
    claims = load_claims(tmp_path)
    backed, unbacked = documented_findings(classify(mark_stale(store.query())), claims)
    paper_ids = tuple(sorted(r for r, c in classes.items() if c == PAPER))
    assert backed.kind == "documented" and backed.run_ids == paper_ids  # not the stale, quick or untagged ones
    assert "backed by 2 stored paper-evidence record(s)" in backed.text
    assert "sigma2=0.02: vanilla 51.00 ± 14.14 (n=2)" in backed.text
    assert unbacked.run_ids == () and "not yet measured" in unbacked.text and unbacked.spec == "test.evidence_table"
    # the same claims in a paper's folder land in its report section
    papers = tmp_path / "papers" / "lnl"
    papers.mkdir(parents=True)
    (papers / "meta.json").write_text(json.dumps({"title": "T", "citation": "C"}), encoding="utf-8")
    (papers / "findings.toml").write_text(CLAIMS, encoding="utf-8")
    report = build_report(mark_stale(store.query()), load_references(), [SPEC],
                          papers_root=tmp_path / "papers")
    (sec,) = report.sections
    assert [f.kind for f in sec.findings] == ["documented", "documented"]  # the one cell has no paper value
    assert "Vanilla reaches" in sec.findings_markdown and "not yet measured" in sec.findings_markdown
    (tmp_path / "findings.toml").write_text('[[finding]]\ntext = "x"\n', encoding="utf-8")
    with pytest.raises(SpecError, match="missing paper, source, suites, methods, metric"):
        load_claims(tmp_path)
