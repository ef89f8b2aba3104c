"""Assemble the whole report (every spec, grouped by paper) and write it out.

``build_report`` is a pure function of (run frame, references, specs, options): re-evaluations
(LNL Figure 5, PGD Table 12) are read from the store, computed beforehand by ``python -m benchmark
reeval``. ``write_report`` writes markdown, LaTeX, figures (PNG + PDF) and a provenance CSV; the PDF
is :func:`.pdf.write_pdf`.

Paper tables and figures read paper evidence only (:mod:`benchmark.evidence`, the rule ``status``
counts by). Every other stored run (quick, untagged, stale, other profiles, unfinished) is listed
in its own section, "Smoke and untagged runs — not the papers' protocol". Each paper's section
opens with "What reproduces and what doesn't" (:mod:`.findings`); :func:`readme_block` is the same
summary for README.md.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..evidence import LABELS as CLASS_LABELS
from ..evidence import classify, not_evidence
from ..references import DEFAULT_ROOT, load_meta
from ..selection import LABELS
from ..store import code_version, now_iso
from .figures import FigureResult, make_figure
from .findings import Finding, counts_line, documented_findings, findings_markdown, load_claims, readme_lines, table_findings
from .reevaluated import missing as missing_reevaluations
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
    findings: list[Finding] = field(default_factory=list)
    counts: str = ""

    @property
    def findings_markdown(self) -> str:
        """The section's "What reproduces and what doesn't" (report.md, summary.md, the console)."""
        return findings_markdown(self.counts, self.findings)


@dataclass
class Report:
    """Everything a report shows.

    Attributes:
        smoke: one row per stored run that is paper evidence for no suite (run id, method, dataset,
            suite, profile, class, reason); :data:`benchmark.evidence.LABELS` names the classes.
        overview: markdown tables of those runs (method × setting, last epoch; no "best").
    """

    sections: list[PaperSection]
    selections: list[str] | None
    generated: str
    code: dict
    store: str
    n_runs: int
    provenance: pd.DataFrame
    overview: str
    notes: list[str] = field(default_factory=list)
    smoke: pd.DataFrame = field(default_factory=pd.DataFrame)


def _natural(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _paper_key(paper: str):
    return (PAPER_ORDER.index(paper) if paper in PAPER_ORDER else len(PAPER_ORDER), paper)


def build_report(runs: pd.DataFrame, refs: pd.DataFrame, specs: list[ReportSpec], *,
                 selections: list[str] | None = None, store: str = "",
                 generated: str | None = None, metric: str = "test.acc", dataset: str | None = None,
                 papers_root: Path | None = None) -> Report:
    """Every table (once per selection; None = each spec's own protocol) and figure, by paper.

    Args:
        runs: ``ResultStore.query()``, best with ``benchmark.provenance.mark_stale``'s ``stale``
            column (without it, staleness is computed here).
        refs: ``load_references()``.
        specs: ``load_specs()``.
        selections: strategies to render side by side; None = the paper's protocol per spec.
        store: the store's path, for the provenance line.
        generated: timestamp to print (default: now).
        metric, dataset: for the overview table of the runs outside the papers' protocol.
        papers_root: where ``results/papers/<paper>/`` (meta.json, findings.toml) live.
    """
    runs = classify(runs)
    notes = missing_reevaluations(runs, specs)
    root = Path(papers_root or DEFAULT_ROOT)
    sections: dict[str, PaperSection] = {}
    for paper in sorted({s.paper for s in specs}, key=_paper_key):
        meta = load_meta(root / paper)
        sections[paper] = PaperSection(paper, meta.get("title", paper), meta.get("citation", ""))
    for spec in sorted(specs, key=lambda s: (s.kind != "table", _natural(s.name))):
        sec = sections[spec.paper]
        if spec.kind == "table":
            protocol = paper_protocol(refs, spec)
            gaps = {}
            for sel in selections or [spec.selection]:
                gaps[sel] = gap_frame(runs, refs, spec, sel)
                sec.tables.append(TableResult(spec, sel, gaps[sel], protocol))
            if len(gaps) > 1:
                sec.comparisons[spec.name] = selection_comparison(gaps, spec)
        else:
            sec.figures.append(make_figure(runs, spec, (selections or [spec.selection])[0]))
    for sec in sections.values():
        sec.summary = summary_frame((t.spec, t.gap) for t in sec.tables)
        pairs = [(t.spec, t.gap) for t in sec.tables]
        sec.counts = counts_line(pairs)
        sec.findings = table_findings(pairs) + documented_findings(runs, load_claims(root / sec.paper))
    read_by: dict[str, set[str]] = {}
    for sec in sections.values():
        for t in sec.tables:
            for r in (r for ids in t.gap["run_ids"] for r in ids):
                read_by.setdefault(r, set()).add(t.spec.name)
        for f in sec.figures:
            for r in f.run_ids:
                read_by.setdefault(r, set()).add(f.spec.name)
    others = not_evidence(runs)
    return Report(list(sections.values()), selections, generated or now_iso(), code_version(), store,
                  int((runs["status"] == "done").sum()) if "status" in runs.columns else len(runs),
                  provenance(runs, {r: sorted(v) for r, v in read_by.items()}), overview_table(others, metric, dataset),
                  notes, smoke_frame(others))


def smoke_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run of a classified frame: run id, method, dataset, suite, profile, class, reason."""
    cols = ["run_id", "method", "dataset", "suite", "profile", "class", "reason"]
    if runs.empty:
        return pd.DataFrame(columns=cols)
    stale = runs["stale"] if "stale" in runs.columns else pd.Series(None, index=runs.index)
    reason = [s if c == "stale" and isinstance(s, str) else CLASS_LABELS[c] for c, s in zip(runs["class"], stale)]
    tags = [r.get("tags") or {} for r in runs["record"]]
    return pd.DataFrame({"run_id": runs["run_id"].values, "method": runs["method"].values,
                         "dataset": runs["dataset"].values, "suite": [t.get("suite", "") for t in tags],
                         "profile": [t.get("profile", "") for t in tags], "class": runs["class"].values,
                         "reason": reason}, columns=cols).sort_values(["class", "run_id"]).reset_index(drop=True)


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


def selection_text(report: Report) -> str:
    if not report.selections:
        return "each artefact's own protocol (the paper's, as its spec states)"
    return ", ".join(f"`{s}` ({LABELS[s]})" for s in report.selections)


def _smoke_line(report: Report) -> list[str]:
    if report.smoke.empty:
        return []
    k = report.smoke["class"].value_counts()
    parts = ", ".join(f"{int(k[c])} {c}" for c in ("quick", "untagged", "stale", "other", "unfinished") if c in k)
    stale = (f"{int(k['stale'])} stored record(s) are stale (code changed since they ran) and are left out of every "
             "cell and figure. ") if "stale" in k else ""
    return [f"{stale}{len(report.smoke)} stored run(s) are not paper evidence ({parts}): listed in report.md, "
            "'Smoke and untagged runs — not the papers' protocol', never in a paper cell or figure.", ""]


def summary_text(report: Report) -> str:
    """Per paper: what reproduces and what doesn't, then the summary table (summary.md, the console)."""
    out = _smoke_line(report)
    for sec in report.sections:
        out += [f"## {sec.title} (`{sec.paper}`)", "", sec.findings_markdown]
        if sec.summary is not None and not sec.summary.empty:
            out += [summary_markdown(sec.summary, sec.paper)]
    return "\n".join(out)


def readme_block(report: Report) -> str:
    """The README's findings block (between :data:`README_BEGIN` and :data:`README_END`): per paper,
    the cell counts and each documented finding, one line each; nothing that changes between two
    builds from the same store (no date, no commit)."""
    lines = ["Generated from the committed store by `python -m benchmark report --update-readme` "
             "(paper-profile runs of the current code only; `python -m benchmark report --html` writes the details "
             "to reports/generated/: report.md and the dashboard site/index.html):", ""]
    for sec in report.sections:
        lines += readme_lines(sec.title, sec.paper, sec.counts, sec.findings)
    return "\n".join(lines) + "\n"


README_BEGIN, README_END = "<!-- findings:begin -->", "<!-- findings:end -->"


def update_readme(path: Path, block: str) -> bool:
    """Replace the text between the README markers by ``block``; True when the file changed.

    Raises:
        SpecError: the file lacks the markers (one of each, begin before end).
    """
    text = path.read_text(encoding="utf-8")
    if text.count(README_BEGIN) != 1 or text.count(README_END) != 1 or text.index(README_BEGIN) > text.index(README_END):
        raise SpecError(f"{path}: needs one '{README_BEGIN}' line followed by one '{README_END}' line; add them "
                        "where the findings should go")
    head, rest = text.split(README_BEGIN, 1)
    tail = rest.split(README_END, 1)[1]
    new = f"{head}{README_BEGIN}\n{block}{README_END}{tail}"
    if new == text:
        return False
    path.write_text(new, encoding="utf-8")
    return True


def readme_findings(path: Path) -> str:
    """The block currently between the markers of ``path`` (as :func:`readme_block` writes it)."""
    text = path.read_text(encoding="utf-8")
    return text.split(README_BEGIN, 1)[1].split(README_END, 1)[0].removeprefix("\n")


def report_markdown(report: Report, figure_dir: str = "figures") -> str:
    """The whole report as one markdown document (figures linked from ``figure_dir``)."""
    code = report.code
    out = ["# Reproduction report", "",
           f"Generated {report.generated} by biasbench {code.get('package')} at commit "
           f"{(code.get('commit') or 'unknown')[:10]}{' (with local changes)' if code.get('dirty') else ''}. "
           f"Result store: `{report.store}` ({report.n_runs} finished runs). Selection: {selection_text(report)}. "
           "Budget profile: **paper** — paper tables and figures read only paper-profile runs of the current code "
           "(`benchmark.evidence`, the rule `status` counts by); every other run is listed at the end, under "
           "'Smoke and untagged runs — not the papers' protocol'.", "",
           "Each table cell: ours mean ± std over n seeds (paper, Δ = ours − paper). A cell is *within tolerance* "
           "when |Δ| ≤ max(the paper's tolerance, 2 × its std) (see results/papers/<paper>/README.md).", ""]
    out += _smoke_line(report)
    for sec in report.sections:
        out += [f"## {sec.title} (`{sec.paper}`)", ""]
        if sec.citation:
            out += [f"*{sec.citation}*", ""]
        out += [sec.findings_markdown]
        if sec.tables:
            out += ["### Summary", "", summary_markdown(sec.summary, sec.paper),
                    "Cells with both numbers:", "", gap_list_markdown(gap_list(t.gap, t.spec) for t in sec.tables)]
        for t in sec.tables:
            out += [t.markdown]
        for name, comp in sec.comparisons.items():
            out += [f"### {name}: selection protocols side by side", "", selection_comparison_markdown(comp)]
        for f in sec.figures:
            out += [f"### {f.spec.title} — paper profile", ""]
            if f.figure is not None:
                out += [f"![{f.spec.name}]({figure_dir}/{f.spec.name}.{f.selection}.png)", "",
                        f"Selection: {LABELS[f.selection]}. Paper-profile runs: {len(f.run_ids)} "
                        "(each point says its n).", ""]
            out += [f"- {n}" for n in f.notes] + ([""] if f.notes else [])
    if report.notes:
        out += ["## Re-evaluation notes", "", *[f"- {n}" for n in report.notes], ""]
    out += ["## Smoke and untagged runs — not the papers' protocol", ""]
    if report.smoke.empty:
        out += ["None: every stored run is paper evidence.", ""]
    else:
        out += ["These runs fill no paper cell and no figure point: quick (smoke budget), untagged (run outside a "
                "suite), stale (code changed since: `python -m benchmark run --suite S --rerun-stale` retrains "
                "them), other profiles (e.g. diagnostic) or unfinished. Their numbers are not comparable with the "
                "papers'.", "",
                "### Their classes", "", report.smoke.to_markdown(index=False, tablefmt="github"), "",
                "### Their numbers (last epoch; mean ± std over seeds, n)", "", report.overview, ""]
    out += ["## Provenance: every stored run (`read_by`: the specs that read it)", ""]
    if report.provenance.empty:
        out += ["No stored run.", ""]
    else:
        out += [report.provenance.to_markdown(index=False, tablefmt="github"), ""]
    return "\n".join(out)


def write_report(report: Report, out_dir: str | Path) -> list[Path]:
    """Write markdown, LaTeX, figures and provenance under ``out_dir``."""
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
    return written
