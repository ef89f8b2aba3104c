"""What reproduces and what doesn't: per paper, a short list generated from the store.

Two sources, both rendered by the same functions into report.md, summary.md, the console and the
README block (so they cannot say different things):

* the paper tables' cells (:func:`table_findings`): within tolerance, outside it, not yet run —
  from the gap frames, which read paper evidence only (:mod:`benchmark.evidence`);
* the project's *documented* findings (:func:`documented_findings`): claims written as data in
  ``results/papers/<paper>/findings.toml``, each with how it is backed (a run filter: suites,
  methods, dataset filters, a metric and an optional ``by`` column). Each prints with the numbers of
  the paper-evidence records that back it, or "not yet measured" when there are none.

``findings.toml``::

    [[finding]]
    text = "LNL trained from scratch ends near vanilla"   # the claim, in one line
    paper = "Figure 4: LNL above the baseline at every σ²"  # what the paper says
    source = "tests/test_lnl_vs_vanilla.py (xfail reason)"   # where the project found it
    spec = "lnl.figure4"                                     # optional: the report artefact
    suites = ["lnl.figure4.scratch"]
    methods = ["vanilla", "lnl"]
    metric = "test.acc"                                      # read at the last epoch
    scale = 100                                              # optional (default 1)
    by = "p.sigma2"                                          # optional: one number per value
    filters = { "p.sigma2" = 0.02 }                          # optional
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pandas as pd

from ..evidence import paper_evidence
from .runs import aggregate, match
from .spec import ReportSpec, SpecError
from .tables import NO_REFERENCE, NOT_RUN, OUTSIDE, WITHIN, fmt, ours_text

KINDS = ("within", "outside", "not_run", "documented")
#: At most this many within / outside cells are listed by name per paper (the rest are counted).
NOTABLE = 5


@dataclass(frozen=True)
class Finding:
    """One line of a paper's "What reproduces and what doesn't".

    Attributes:
        kind: "within" | "outside" | "not_run" (cells of the paper tables) or "documented" (a
            claim from ``findings.toml``).
        text: the line, with its numbers.
        run_ids: the paper-evidence records it rests on (empty: not run / not yet measured).
        spec: the report spec (artefact) it belongs to, when it has one.
        paper: what the paper says (documented findings).
        source: where the project found it (documented findings).
    """

    kind: str
    text: str
    run_ids: tuple[str, ...] = ()
    spec: str | None = None
    paper: str = ""
    source: str = ""

    @property
    def measured(self) -> bool:
        return bool(self.run_ids)


@dataclass(frozen=True)
class Claim:
    """A documented finding as written in ``findings.toml`` (see the module docstring)."""

    text: str
    paper: str
    source: str
    suites: tuple[str, ...]
    methods: tuple[str, ...]
    metric: str
    scale: float = 1.0
    by: str | None = None
    spec: str | None = None
    filters: dict = field(default_factory=dict)


def load_claims(paper_dir: Path) -> list[Claim]:
    """The claims of ``<paper_dir>/findings.toml`` (none when the file is absent)."""
    path = Path(paper_dir) / "findings.toml"
    if not path.is_file():
        return []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path}: not valid TOML ({e}); fix the file") from None
    out = []
    for i, f in enumerate(data.get("finding", [])):
        missing = [k for k in ("text", "paper", "source", "suites", "methods", "metric") if k not in f]
        unknown = sorted(set(f) - {"text", "paper", "source", "suites", "methods", "metric", "scale", "by", "spec",
                                   "filters"})
        if missing or unknown:
            raise SpecError(f"{path}: finding {i + 1}: " + "; ".join(
                ([f"missing {', '.join(missing)}"] if missing else []) + ([f"unknown {', '.join(unknown)}"] if unknown else []))
                + " (fields: see benchmark/reporting/findings.py)")
        out.append(Claim(f["text"], f["paper"], f["source"], tuple(f["suites"]), tuple(f["methods"]), f["metric"],
                         float(f.get("scale", 1.0)), f.get("by"), f.get("spec"), dict(f.get("filters", {}))))
    return out


def backing(runs: pd.DataFrame, claim: Claim) -> tuple[str, tuple[str, ...]]:
    """The numbers of the paper-evidence records that back ``claim`` ("" and () when none)."""
    base = match(paper_evidence(runs, claim.suites), claim.filters)
    if not base.empty:
        base = base[base["method"].isin(claim.methods)]
    if base.empty:
        return "", ()
    by = claim.by if claim.by and claim.by in base.columns else None
    label = (claim.by or "").split(".", 1)[-1]
    digits = 2 if claim.scale == 100 else 4
    parts, used = [], set()
    for key, grp in base.groupby(by, sort=True) if by else [(None, base)]:
        numbers = []
        for method in claim.methods:
            agg = aggregate(grp[grp["method"] == method], "last", claim.metric, claim.scale)
            if agg.n:
                used.update(v.run_id for v in agg.values)
                numbers.append(f"{method} {ours_text(agg.mean, agg.std, agg.n, digits)}")
        if numbers:
            where = "" if key is None else f"{label}={key:g}: " if isinstance(key, (int, float)) else f"{label}={key}: "
            parts.append(where + ", ".join(numbers))
    return "; ".join(parts), tuple(sorted(used))


def documented_findings(runs: pd.DataFrame, claims: Iterable[Claim]) -> list[Finding]:
    """One :class:`Finding` per claim, with its backing numbers or "not yet measured"."""
    out = []
    for c in claims:
        numbers, run_ids = backing(runs, c)
        where = ", ".join(c.suites)
        if run_ids:
            text = (f"{c.text} — backed by {len(run_ids)} stored paper-evidence record(s) ({c.metric}, last epoch): "
                    f"{numbers}.")
        else:  # a claim without current records is a reading to check, not a result
            text = (f"not yet measured: {c.text} (the project's reading, from {c.source}; no paper-profile record "
                    f"of the current code in {where}).")
        out.append(Finding("documented", text, run_ids, c.spec, c.paper, c.source))
    return out


def table_findings(tables: Iterable[tuple[ReportSpec, pd.DataFrame]]) -> list[Finding]:
    """Per cell with both numbers a "within"/"outside" finding (outside ones by decreasing |Δ|,
    the gaps a reader should see first); per spec with cells not run, one "not_run" finding.
    Tables are read once per spec (the first selection given)."""
    within, outside, not_run, seen = [], [], [], set()
    for spec, gap in tables:
        if spec.name in seen:
            continue
        seen.add(spec.name)
        for c in gap[gap["status"].isin([WITHIN, OUTSIDE])].itertuples():
            d = spec.digits
            column = f"{c.panel} / {c.column}" if c.panel else c.column
            text = (f"{spec.name} {c.row} / {column}: ours {ours_text(c.ours_mean, c.ours_std, c.n, d)} vs paper "
                    f"{fmt(c.paper_value, d)} (Δ {fmt(c.delta, d, sign=True)}, tolerance {fmt(c.tolerance, d)})")
            if c.status == WITHIN:
                within.append(Finding("within", text, tuple(c.run_ids), spec.name))
            else:
                outside.append((abs(c.delta), Finding("outside", text, tuple(c.run_ids), spec.name)))
        k = int((gap["status"] == NOT_RUN).sum())
        if k:
            not_run.append(Finding("not_run", f"{spec.name}: {k} of {len(gap)} cells not yet run", (), spec.name))
    outside.sort(key=lambda pair: -pair[0])
    return within + [f for _, f in outside] + not_run


def counts_line(tables: Iterable[tuple[ReportSpec, pd.DataFrame]]) -> str:
    """Cells (paper profile) within tolerance / outside / not yet run / ours without a paper number."""
    k = {s: 0 for s in (WITHIN, OUTSIDE, NOT_RUN, NO_REFERENCE)}
    seen = set()
    for spec, gap in tables:
        if spec.name in seen:
            continue
        seen.add(spec.name)
        for s in k:
            k[s] += int((gap["status"] == s).sum())
    return (f"Paper-table cells (paper-profile runs of the current code): {k[WITHIN]} within tolerance, "
            f"{k[OUTSIDE]} outside, {k[NOT_RUN]} not yet run"
            + (f", {k[NO_REFERENCE]} with our number but no paper number" if k[NO_REFERENCE] else "") + ".")


def findings_markdown(counts: str, findings: list[Finding], heading: str = "###") -> str:
    """The "What reproduces and what doesn't" block of one paper."""
    out = [f"{heading} What reproduces and what doesn't", "", counts, ""]
    for kind, title in ((WITHIN, "Within tolerance"), (OUTSIDE, "Outside tolerance (largest gaps first)")):
        picked = [f for f in findings if f.kind == kind]
        if picked:
            out += [f"{title}:", *[f"- {f.text}" for f in picked[:NOTABLE]]]
            if len(picked) > NOTABLE:
                out.append(f"- … and {len(picked) - NOTABLE} more (see the tables below)")
            out.append("")
    not_run = [f for f in findings if f.kind == "not_run"]
    if not_run:
        out += ["Not yet run: " + "; ".join(f.text for f in not_run) + ".", ""]
    documented = [f for f in findings if f.kind == "documented"]
    if documented:
        out += ["Documented findings of this project (results/papers/<paper>/findings.toml):",
                *[f"- {f.text} Paper: {f.paper}. Source: {f.source}." for f in documented], ""]
    return "\n".join(out)


def readme_lines(title: str, paper: str, counts: str, findings: list[Finding]) -> list[str]:
    """The README block's lines for one paper: counts, then each documented finding, one line each."""
    out = [f"- **{title}** (`{paper}`): {counts.split(': ', 1)[1]}"]
    out += [f"  - {f.text}" for f in findings if f.kind == "documented"]
    return out
