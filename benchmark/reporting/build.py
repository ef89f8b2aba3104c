"""Assemble the whole report (every spec, grouped by paper) and write it out.

``build_report`` is a pure function of (run frame, references, specs, options) except for figures
that re-evaluate saved weights (LNL Figure 5, cached). ``write_report`` writes markdown, LaTeX,
figures (PNG + PDF), a provenance CSV and, on request, one PDF (:mod:`.pdf`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..references import DEFAULT_ROOT, load_meta
from ..selection import LABELS
from ..store import code_version, now_iso
from .figures import FigureContext, FigureResult, make_figure
from .reeval import REEVAL_PREFIX, REEVALUATIONS, attach_reevaluations
from .runs import match, spec_runs
from .spec import ReportSpec, SpecError
from .tables import (gap_frame, gap_list, gap_list_markdown, overview_table, paper_protocol, selection_comparison,
                     selection_comparison_markdown, summary_frame, summary_latex, summary_markdown, to_latex,
                     to_markdown)

PAPER_ORDER = ("lnl", "blind_eye", "pgd")


@dataclass
class TableResult:
    spec: ReportSpec
    selection: str
    gap: pd.DataFrame
    protocol: str

    @property
    def markdown(self) -> str:
        return to_markdown(self.gap, self.spec, self.protocol, heading="###")

    @property
    def latex(self) -> str:
        return to_latex(self.gap, self.spec, self.protocol)


@dataclass
class PaperSection:
    paper: str
    title: str
    citation: str
    tables: list[TableResult] = field(default_factory=list)
    figures: list[FigureResult] = field(default_factory=list)
    summary: pd.DataFrame | None = None
    comparisons: dict[str, pd.DataFrame] = field(default_factory=dict)


@dataclass
class Report:
    sections: list[PaperSection]
    selections: list[str] | None
    profile: str
    generated: str
    code: dict
    store: str
    n_runs: int
    provenance: pd.DataFrame
    overview: str
    notes: list[str] = field(default_factory=list)
    stale: pd.DataFrame = field(default_factory=pd.DataFrame)
    include_stale: bool = False


def _natural(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _paper_key(paper: str):
    return (PAPER_ORDER.index(paper) if paper in PAPER_ORDER else len(PAPER_ORDER), paper)


def build_report(runs: pd.DataFrame, refs: pd.DataFrame, specs: list[ReportSpec], *,
                 selections: list[str] | None = None, profile: str = "any", untagged: bool = False,
                 ctx: FigureContext | None = None, store: str = "", generated: str | None = None,
                 metric: str = "test.acc", dataset: str | None = None, papers_root: Path | None = None,
                 include_stale: bool = False) -> Report:
    """Every table (once per selection; None = each spec's own protocol) and figure, by paper.

    Args:
        runs: ``ResultStore.query()``.
        refs: ``load_references()``.
        specs: ``load_specs()``.
        selections: strategies to render side by side; None = the paper's protocol per spec.
        profile: "paper", "quick" or "any".
        untagged: also read runs without a suite tag.
        ctx: figure context (data root and home for re-evaluations).
        store: the store's path, for the provenance line.
        generated: timestamp to print (default: now).
        metric, dataset: for the overview table of every stored run.
        include_stale: let stale records (a ``stale`` reason column, see
            ``benchmark.provenance.mark_stale``) fill cells and figures; by default they are only
            listed in their own section.
    """
    stored, stale = runs, stale_frame(runs)
    if not include_stale and not stale.empty:
        runs = runs[~runs["run_id"].isin(stale["run_id"])]
    ctx = ctx or FigureContext()
    ctx.profile, ctx.untagged = profile, untagged
    notes: list[str] = []
    if ctx.reevaluate:
        runs, notes = attach_reevaluations(runs, _reevaluations_needed(runs, specs, profile, untagged), ctx.home,
                                           ctx.data_root, ctx.device)
    sections: dict[str, PaperSection] = {}
    for paper in sorted({s.paper for s in specs}, key=_paper_key):
        meta = load_meta(Path(papers_root or DEFAULT_ROOT) / paper)
        sections[paper] = PaperSection(paper, meta.get("title", paper), meta.get("citation", ""))
    for spec in sorted(specs, key=lambda s: (s.kind != "table", _natural(s.name))):
        sec = sections[spec.paper]
        if spec.kind == "table":
            protocol = paper_protocol(refs, spec)
            gaps = {}
            for sel in selections or [spec.selection]:
                gaps[sel] = gap_frame(runs, refs, spec, sel, profile, untagged)
                sec.tables.append(TableResult(spec, sel, gaps[sel], protocol))
            if len(gaps) > 1:
                sec.comparisons[spec.name] = selection_comparison(gaps, spec)
        else:
            sec.figures.append(make_figure(runs, spec, (selections or [spec.selection])[0], ctx))
    for sec in sections.values():
        sec.summary = summary_frame((t.spec, t.gap) for t in sec.tables)
    read_by: dict[str, set[str]] = {}
    for sec in sections.values():
        for t in sec.tables:
            for r in (r for ids in t.gap["run_ids"] for r in ids):
                read_by.setdefault(r, set()).add(t.spec.name)
        for f in sec.figures:
            for r in f.run_ids:
                read_by.setdefault(r, set()).add(f.spec.name)
    return Report(list(sections.values()), selections, profile, generated or now_iso(), code_version(), store,
                  int((runs["status"] == "done").sum()) if "status" in runs.columns else len(runs),
                  provenance(stored, {r: sorted(v) for r, v in read_by.items()}), overview_table(runs, metric, dataset),
                  notes, stale, include_stale)


def stale_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs whose ``stale`` column gives a reason: run id, method, dataset, suite, profile, reason."""
    cols = ["run_id", "method", "dataset", "suite", "profile", "reason"]
    if runs.empty or "stale" not in runs.columns:
        return pd.DataFrame(columns=cols)
    sub = runs[runs["stale"].map(lambda v: isinstance(v, str) and bool(v))]
    return pd.DataFrame({"run_id": sub["run_id"], "method": sub["method"], "dataset": sub["dataset"],
                         "suite": sub.get("tag.suite", ""), "profile": sub.get("tag.profile", ""),
                         "reason": sub["stale"]}, columns=cols).reset_index(drop=True)


def _reevaluations_needed(runs: pd.DataFrame, specs: list[ReportSpec], profile: str, untagged: bool) -> dict[str, set[str]]:
    """run id -> names of the re-evaluations (``record:reeval.<name>...`` metrics) some table reads."""
    needed: dict[str, set[str]] = {}
    for spec in specs:
        for col in spec.columns if spec.kind == "table" else ():
            if not col.metric.startswith(REEVAL_PREFIX):
                continue
            name = col.metric[len(REEVAL_PREFIX):].split(".")[0]
            if name not in REEVALUATIONS:
                raise SpecError(f"{spec.name}: unknown re-evaluation {name!r}; known: {sorted(REEVALUATIONS)}")
            for run_id in match(spec_runs(runs, spec, profile, untagged), col.filters).get("run_id", []):
                needed.setdefault(run_id, set()).add(name)
    return needed


def provenance(runs: pd.DataFrame, read_by: dict[str, list[str]]) -> pd.DataFrame:
    """One line per stored run: id, what it was, budget, code version, when and where, and
    ``read_by``: the specs whose tables or figures read it (";"-separated; empty when no spec reads
    it, e.g. a plug-in's run without a spec of its own, a stale record or an untagged run)."""
    cols = ["run_id", "method", "dataset", "seed", "epochs", "max_train", "suite", "profile", "commit", "created",
            "device", "wall_time_s", "read_by"]
    if runs.empty:
        return pd.DataFrame(columns=cols)
    out = []
    for rec in runs.sort_values("run_id")["record"]:
        code = rec.get("code") or {}
        commit = (code.get("commit") or "unknown")[:10] + ("+dirty" if code.get("dirty") else "")
        tags = rec.get("tags") or {}
        s = rec["spec"]
        out.append([rec["run_id"], s["method"], s["dataset"], s["seed"], s["epochs"], s.get("max_train"),
                    tags.get("suite", ""), tags.get("profile", ""), commit, rec.get("created", ""),
                    rec.get("device", ""), rec.get("wall_time_s"), ";".join(sorted(read_by.get(rec["run_id"], [])))])
    return pd.DataFrame(out, columns=cols)


def _selection_text(report: Report) -> str:
    if not report.selections:
        return "each artefact's own protocol (the paper's, as its spec states)"
    return ", ".join(f"`{s}` ({LABELS[s]})" for s in report.selections)


def summary_text(report: Report) -> str:
    """Per paper: the summary table and the list of cells with both numbers (within / outside)."""
    out = []
    if not report.stale.empty:
        out += [f"{len(report.stale)} stored record(s) are stale (code changed since they ran) and "
                + ("fill cells (--include-stale)." if report.include_stale else "are left out of every cell and figure;")
                + " see report.md, 'Stale records'.", ""]
    for sec in report.sections:
        if sec.summary is None or sec.summary.empty:
            continue
        out += [f"## {sec.title} (`{sec.paper}`)", "", summary_markdown(sec.summary, sec.paper),
                gap_list_markdown(gap_list(t.gap, t.spec) for t in sec.tables)]
    return "\n".join(out)


def report_markdown(report: Report, figure_dir: str = "figures") -> str:
    """The whole report as one markdown document (figures linked from ``figure_dir``)."""
    code = report.code
    out = ["# Reproduction report", "",
           f"Generated {report.generated} by biasbench {code.get('package')} at commit "
           f"{(code.get('commit') or 'unknown')[:10]}{' (with local changes)' if code.get('dirty') else ''}. "
           f"Result store: `{report.store}` ({report.n_runs} finished runs). Selection: {_selection_text(report)}. "
           f"Budget profile: {report.profile}.", "",
           "Each table cell: ours mean ± std over seeds (paper, Δ = ours − paper). A cell is *within tolerance* "
           "when |Δ| ≤ max(the paper's tolerance, 2 × its std) (see results/papers/<paper>/README.md).", ""]
    for sec in report.sections:
        out += [f"## {sec.title} (`{sec.paper}`)", ""]
        if sec.citation:
            out += [f"*{sec.citation}*", ""]
        if sec.tables:
            out += ["### Summary", "", summary_markdown(sec.summary, sec.paper),
                    "Cells with both numbers:", "", gap_list_markdown(gap_list(t.gap, t.spec) for t in sec.tables)]
        for t in sec.tables:
            out += [t.markdown]
        for name, comp in sec.comparisons.items():
            out += [f"### {name}: selection protocols side by side", "", selection_comparison_markdown(comp)]
        for f in sec.figures:
            out += [f"### {f.spec.title}", ""]
            if f.figure is not None:
                out += [f"![{f.spec.name}]({figure_dir}/{f.spec.name}.{f.selection}.png)", "",
                        f"Selection: {LABELS[f.selection]}. Runs: {len(f.run_ids)}.", ""]
            out += [f"- {n}" for n in f.notes] + ([""] if f.notes else [])
    if report.notes:
        out += ["## Re-evaluation notes", "", *[f"- {n}" for n in report.notes], ""]
    if not report.stale.empty:
        use = "used in cells, marked here" if report.include_stale else "not used in any cell or figure"
        out += [f"## Stale records ({len(report.stale)}: code changed since they ran; {use})", "",
                "`python -m benchmark run --suite S --rerun-stale` retrains them.", "",
                report.stale.to_markdown(index=False, tablefmt="github"), ""]
    out += ["## Provenance: every stored run (`read_by`: the specs that read it)", ""]
    if report.provenance.empty:
        out += ["No stored run.", ""]
    else:
        out += [report.provenance.to_markdown(index=False, tablefmt="github"), ""]
    out += ["## Every stored run (last epoch, all suites)", "", report.overview, ""]
    return "\n".join(out)


def write_report(report: Report, out_dir: str | Path, pdf: bool = False) -> list[Path]:
    """Write markdown, LaTeX, figures and provenance under ``out_dir`` (and ``report.pdf``)."""
    out = Path(out_dir)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    written = []
    for sec in report.sections:
        for t in sec.tables:
            for ext, text in (("md", t.markdown), ("tex", t.latex)):
                p = out / "tables" / f"{t.spec.name}.{t.selection}.{ext}"
                p.write_text(text, encoding="utf-8")
                written.append(p)
        if sec.tables:
            p = out / "tables" / f"summary.{sec.paper}.tex"
            p.write_text(summary_latex(sec.summary, sec.paper), encoding="utf-8")
            written.append(p)
        for f in sec.figures:
            written += f.save(out / "figures")
    for name, text in (("report.md", report_markdown(report)), ("summary.md", summary_text(report))):
        (out / name).write_text(text, encoding="utf-8")
        written.append(out / name)
    report.provenance.to_csv(out / "runs.csv", index=False)
    written.append(out / "runs.csv")
    if pdf:
        from .pdf import write_pdf
        written.append(write_pdf(report, out / "report.pdf"))
    return written
