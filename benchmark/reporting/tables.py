"""Tables beside the papers' numbers: pure functions (run frame, references, spec) → frame → text.

:func:`gap_frame` is the long form: one row per (method row, setting column) cell with our mean ±
std over seeds, the paper's value, Δ = ours − paper, the tolerance and a status. The renderers turn
it into markdown (tabulate) and LaTeX (booktabs) laid out like the paper's table, each cell
``ours mean ± std (paper, Δ)``, our best per column in bold, missing runs as "—" (never dropped).
:func:`summary_frame` counts, per paper, cells within tolerance, outside it and not yet run.
"""
from __future__ import annotations

import math
from typing import Iterable

import pandas as pd
from tabulate import tabulate

from ..selection import LABELS
from .reevaluated import METRIC_PREFIX as REEVAL_METRIC
from .reevaluated import missing_note
from .runs import aggregate, cell_runs, match, spec_runs
from .spec import ReportSpec, SpecError

DASH = "—"
BIAS_MARK = "§"
WITHIN, OUTSIDE, NOT_RUN, NO_SELECTION, NO_REFERENCE = "within", "outside", "not run", "no selection", "no reference"
STATUSES = (WITHIN, OUTSIDE, NOT_RUN, NO_SELECTION, NO_REFERENCE)
GAP_COLUMNS = ["col_index", "row_index", "panel", "column", "column_paper", "row", "row_paper", "method", "metric",
               "ours_mean", "ours_std", "n", "paper_value", "paper_std", "delta", "tolerance", "status",
               "best", "run_ids", "profiles", "selection", "criterion", "note"]


def uses_bias_labels(method: str) -> bool | None:
    """Whether a registered method trains with bias labels (None if it is not registered)."""
    import sys

    from ..catalogue import load, method_entry
    entry = method_entry(load(), method)  # plain data: no plug-in (torch) import on an unchanged tree
    if entry is not None:
        return entry["bias_labels"]
    if "benchmark.registry" in sys.modules:  # e.g. a method registered by an import, not an entry point
        from ..registry import METHODS
        try:
            return bool(METHODS.get(method).uses_bias_labels)
        except Exception:  # an unregistered name (a spec may name methods that do not exist yet)
            return None
    return None


def spec_references(refs: pd.DataFrame, spec: ReportSpec) -> pd.DataFrame:
    """The reference rows of the spec's artefact (empty when it has none); a named artefact that is
    not in the registry is an error."""
    if not spec.artefact:
        return refs.iloc[0:0]
    ref = refs[(refs["paper"] == spec.paper) & (refs["artefact"] == spec.artefact)]
    if ref.empty:
        raise SpecError(f"{spec.name}: no reference numbers for paper={spec.paper!r} artefact={spec.artefact!r}")
    return ref


def gap_frame(runs: pd.DataFrame, refs: pd.DataFrame, spec: ReportSpec, selection: str | None = None) -> pd.DataFrame:
    """One row per cell of ``spec``: ours (mean, std, n over seeds) vs the paper, Δ and status.

    Only paper evidence fills a cell (:func:`.runs.spec_runs`, :mod:`benchmark.evidence`): quick,
    untagged and stale runs never do.

    Args:
        runs: ``ResultStore.query()``.
        refs: ``benchmark.references.load_references()``.
        spec: a table spec.
        selection: a :mod:`benchmark.selection` strategy name; None = the spec's (the paper's).
    """
    selection = selection or spec.selection
    base = spec_runs(runs, spec)
    ref = spec_references(refs, spec)
    ref_by_cell = {(r.row, r.column): r for r in ref.itertuples()}
    out = []
    for ci, col in enumerate(spec.columns):
        col_runs = match(base, col.filters)
        for ri, row in enumerate(spec.rows):
            agg = aggregate(cell_runs(col_runs, row, col), selection, col.metric, spec.scale)
            values, note, mean, std = agg.values, agg.note, agg.mean, agg.std
            r = ref_by_cell.get((row.paper, col.paper))
            paper = float(r.value) if r is not None else math.nan
            paper_std = float(r.std) if r is not None else math.nan
            tol = float(r.effective_tolerance) if r is not None else math.nan
            if not values:
                status = NOT_RUN
            elif not agg.n:
                status = NO_SELECTION
                why = (f"no run can be selected by {selection}" if all(v.selected is None for v in values)
                       else missing_note(spec) if col.metric.startswith(REEVAL_METRIC) else f"metric {col.metric} absent")
                note = "; ".join(x for x in (note, why) if x)
            elif math.isnan(paper) or math.isnan(tol):
                status = NO_REFERENCE
            else:
                status = WITHIN if abs(mean - paper) <= tol + 1e-9 else OUTSIDE
            criteria = sorted({v.selected.criterion for v in values if v.selected is not None})
            out.append({
                "col_index": ci, "row_index": ri, "panel": col.panel, "column": col.label, "column_paper": col.paper,
                "row": row.label, "row_paper": row.paper, "method": row.method, "metric": col.metric,
                "ours_mean": mean, "ours_std": std, "n": agg.n, "paper_value": paper,
                "paper_std": paper_std, "delta": mean - paper, "tolerance": tol, "status": status,
                "best": False, "run_ids": tuple(sorted(v.run_id for v in values)),
                "profiles": "+".join(sorted({v.profile or "untagged" for v in values})),
                "selection": selection, "criterion": ", ".join(criteria), "note": note,
            })
    df = pd.DataFrame(out, columns=GAP_COLUMNS)
    return _mark_best(df, spec)


def _mark_best(df: pd.DataFrame, spec: ReportSpec) -> pd.DataFrame:
    if df.empty:
        return df
    shown = df["ours_mean"].round(spec.digits)
    best = shown.groupby(df["col_index"]).transform("max" if spec.higher_is_better else "min")
    df["best"] = shown.notna() & (shown == best)
    return df


# ----------------------------------------------------------------------------------------------- text
def fmt(v: float, digits: int, sign: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return DASH
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def cell_parts(c, digits: int) -> tuple[str, str]:
    """(ours, "(paper, Δ)") strings of one gap-frame row; ours is "—" when not run, and says its
    number of seeds otherwise (``49.08 ± 0.78 (n=3)``)."""
    if c.n:
        ours = ours_text(c.ours_mean, c.ours_std, c.n, digits)
    else:
        ours = DASH
    if math.isnan(c.paper_value):
        return ours, ""
    if c.n:
        return ours, f"({fmt(c.paper_value, digits)}, {fmt(c.delta, digits, sign=True)})"
    return ours, f"({fmt(c.paper_value, digits)})"


def ours_text(mean: float, std: float, n: int, digits: int) -> str:
    """``mean ± std (n=k)`` (no ± for one seed)."""
    return fmt(mean, digits) + (f" ± {fmt(std, digits)}" if n > 1 else "") + f" (n={n})"


def row_label(label: str, method: str) -> str:
    """A table row's label: the paper's name (our method's if it differs) and § if it uses bias labels."""
    shown = label if label == method else f"{label} ({method})"
    return shown + (BIAS_MARK if uses_bias_labels(method) else "")


def _grid(gap: pd.DataFrame, spec: ReportSpec, panel: str) -> tuple[list[str], list[list]]:
    """Headers and body of one panel; body cells are (ours, "(paper, Δ)", bold) triples."""
    cols = [(i, c) for i, c in enumerate(spec.columns) if c.panel == panel]
    cells = {(r.col_index, r.row_index): r for r in gap.itertuples()}
    body = []
    for ri, row in enumerate(spec.rows):
        line: list = [row_label(row.label, row.method)]
        for i, _ in cols:
            c = cells[(i, ri)]
            ours, paper = cell_parts(c, spec.digits)
            line.append((ours, paper, bool(c.best and c.n)))
        body.append(line)
    return [c.label for _, c in cols], body


def units(scale: float) -> str:
    """The paper's units implied by a spec's scale (100: percent; 1: fractions)."""
    return "percent" if scale == 100 else "fractions"


def counts(gap: pd.DataFrame) -> dict[str, int]:
    return {s: int((gap["status"] == s).sum()) for s in STATUSES}


def _runs_line(gap: pd.DataFrame) -> str:
    run_ids = {r for ids in gap["run_ids"] for r in ids}
    profiles = sorted({p for p, n in zip(gap["profiles"], gap["n"]) if p and n})
    k = counts(gap)
    return (f"Runs: {len(run_ids)} (budget profile: {', '.join(profiles) or 'paper, none stored yet'}). Cells: {k[WITHIN]} within "
            f"tolerance, {k[OUTSIDE]} outside, {k[NOT_RUN]} not yet run"
            + (f", {k[NO_SELECTION]} not selectable" if k[NO_SELECTION] else "")
            + (f", {k[NO_REFERENCE]} without a paper value" if k[NO_REFERENCE] else "") + ".")


def selection_line(spec: ReportSpec, selection: str, paper_protocol: str = "") -> str:
    """The selection sentence: the protocol used, the spec's default when overridden, the paper's own."""
    other = "" if selection == spec.selection else f"; this spec's default is `{spec.selection}`"
    line = f"Selection: {LABELS[selection]} (`{selection}`{other})."
    if paper_protocol:
        line += f" The paper: {paper_protocol}."
    return line


def paper_protocol(refs: pd.DataFrame, spec: ReportSpec) -> str:
    ref = spec_references(refs, spec)
    stated = [s for s in ref["selection"].unique() if s] if not ref.empty else []
    return "; ".join(stated) if stated else ("not stated" if spec.artefact else "")


def _notes(gap: pd.DataFrame, spec: ReportSpec) -> list[str]:
    notes = list(spec.notes)
    for r in gap.itertuples():
        if r.note:
            notes.append(f"{r.row} / {r.column}: {r.note}")
    return notes


def to_markdown(gap: pd.DataFrame, spec: ReportSpec, protocol: str = "", heading: str = "###") -> str:
    """The table as GitHub markdown, one sub-table per panel, with its legend and notes."""
    selection = gap["selection"].iloc[0] if not gap.empty else spec.selection
    out = [f"{heading} {spec.title} — paper profile", "",
           selection_line(spec, selection, protocol),
           f"Cells: ours mean ± std (n = seeds) over paper-profile runs of the current code (paper, Δ = ours − paper), "
           f"in {units(spec.scale)}; "
           f"**bold**: our best in the column; {DASH}: not yet run; {BIAS_MARK}: the method trains with bias labels.",
           _runs_line(gap), ""]
    for panel in spec.panels:
        headers, body = _grid(gap, spec, panel)
        body = [[line[0], *(f"{f'**{o}**' if b else o} {p}".strip() for o, p, b in line[1:])] for line in body]
        if panel:
            out += [f"**{panel}**", ""]
        out += [tabulate(body, headers=["Method", *headers], tablefmt="github", disable_numparse=True), ""]
    notes = _notes(gap, spec)
    if notes:
        out += ["Notes:", *[f"- {n}" for n in notes], ""]
    return "\n".join(out).rstrip() + "\n"


_LATEX_CHARS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                "±": r"$\pm$", "→": r"$\rightarrow$", "—": "---", "−": "$-$", "Δ": r"$\Delta$", "σ": r"$\sigma$",
                "²": r"$^2$", "§": r"\S{}", "†": r"$\dagger$", "|": r"$|$", "≤": r"$\leq$", "×": r"$\times$"}


def latex_escape(s: str) -> str:
    return "".join(_LATEX_CHARS.get(ch, ch) for ch in str(s))


def to_latex(gap: pd.DataFrame, spec: ReportSpec, protocol: str = "") -> str:
    """The table as LaTeX (booktabs; ``\\usepackage{booktabs,graphicx}``), one tabular per panel
    inside one table environment, each scaled to the line width."""
    selection = gap["selection"].iloc[0] if not gap.empty else spec.selection
    caption = (f"{latex_escape(spec.title)} (paper profile). Ours: mean $\\pm$ std over $n$ seeds, paper-profile runs "
               f"of the current code (paper, $\\Delta$ = ours $-$ paper); "
               f"bold: our best per column; --- not yet run. Selection: {latex_escape(LABELS[selection])} "
               f"(\\texttt{{{latex_escape(selection)}}}).")
    out = [f"% generated by `python -m benchmark report` from spec {spec.name}; needs \\usepackage{{booktabs,graphicx}}",
           "\\begin{table}[t]", "\\centering", f"\\caption{{{caption}}}",
           f"\\label{{tab:{spec.name}}}"]
    for k, panel in enumerate(spec.panels):
        headers, body = _grid(gap, spec, panel)
        n = len(headers)
        if k:
            out.append("\\medskip")
        out += ["\\resizebox{\\linewidth}{!}{%", f"\\begin{{tabular}}{{l{'c' * n}}}", "\\toprule"]
        if panel:
            out += [f" & \\multicolumn{{{n}}}{{c}}{{{latex_escape(panel)}}} \\\\", f"\\cmidrule(lr){{2-{n + 1}}}"]
        out += ["Method & " + " & ".join(latex_escape(h) for h in headers) + " \\\\", "\\midrule"]
        for line in body:
            cells = [latex_escape(line[0])] + [_latex_cell(*c) for c in line[1:]]
            out.append(" & ".join(cells) + " \\\\")
        out += ["\\bottomrule", "\\end{tabular}}"]
    out.append("\\end{table}")
    return "\n".join(out) + "\n"


def _latex_cell(ours: str, paper: str, bold: bool) -> str:
    ours = f"\\textbf{{{latex_escape(ours)}}}" if bold else latex_escape(ours)
    return f"{ours} {latex_escape(paper)}".strip()


# -------------------------------------------------------------------------------------------- summary
SUMMARY_COLUMNS = ["paper", "spec", "selection", "profiles", "cells", WITHIN, OUTSIDE, NOT_RUN, NO_SELECTION]


def summary_frame(gaps: Iterable[tuple[ReportSpec, pd.DataFrame]]) -> pd.DataFrame:
    """Per paper artefact (and selection): cells within tolerance, outside, not yet run."""
    rows = []
    for spec, gap in gaps:
        k = counts(gap)
        profiles = sorted({p for p, n in zip(gap["profiles"], gap["n"]) if p and n})
        rows.append({"paper": spec.paper, "spec": spec.name,
                     "selection": gap["selection"].iloc[0] if not gap.empty else spec.selection,
                     "profiles": ", ".join(profiles) or DASH,
                     "cells": int((gap["paper_value"].notna()).sum()), WITHIN: k[WITHIN], OUTSIDE: k[OUTSIDE],
                     NOT_RUN: k[NOT_RUN], NO_SELECTION: k[NO_SELECTION]})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def summary_markdown(summary: pd.DataFrame, paper: str) -> str:
    sub = summary[summary["paper"] == paper]
    body = [list(r)[1:] for r in sub.itertuples(index=False)]
    body.append(["total", "", "", int(sub["cells"].sum()), int(sub[WITHIN].sum()), int(sub[OUTSIDE].sum()),
                 int(sub[NOT_RUN].sum()), int(sub[NO_SELECTION].sum())])
    headers = ["Artefact", "Selection", "Profile", "Paper cells", "Within tolerance", "Outside", "Not yet run",
               "Not selectable"]
    return tabulate(body, headers=headers, tablefmt="github", disable_numparse=True) + "\n"


def summary_latex(summary: pd.DataFrame, paper: str) -> str:
    sub = summary[summary["paper"] == paper]
    out = ["\\begin{tabular}{lllrrrrr}", "\\toprule",
           "Artefact & Selection & Profile & Paper cells & Within & Outside & Not run & Not selectable \\\\",
           "\\midrule"]
    for r in sub.itertuples(index=False):
        out.append(" & ".join(latex_escape(str(v)) for v in r[1:]) + " \\\\")
    out += ["\\midrule", f"total & & & {int(sub['cells'].sum())} & {int(sub[WITHIN].sum())} & "
            f"{int(sub[OUTSIDE].sum())} & {int(sub[NOT_RUN].sum())} & {int(sub[NO_SELECTION].sum())} \\\\",
            "\\bottomrule", "\\end{tabular}"]
    return "\n".join(out) + "\n"


def gap_list(gap: pd.DataFrame, spec: ReportSpec) -> pd.DataFrame:
    """The cells that have both ours and the paper's number, with Δ, tolerance, status and budget."""
    sub = gap[gap["status"].isin([WITHIN, OUTSIDE])]
    d = spec.digits
    return pd.DataFrame({
        "spec": spec.name, "method": sub["row"] + " (" + sub["method"] + ")",
        "column": [f"{p} / {c}" if p else c for p, c in zip(sub["panel"], sub["column"])],
        "ours": [ours_text(m, s, n, d) for m, s, n in zip(sub["ours_mean"], sub["ours_std"], sub["n"])],
        "paper": [fmt(v, d) for v in sub["paper_value"]], "delta": [fmt(v, d, True) for v in sub["delta"]],
        "tolerance": [fmt(v, d) for v in sub["tolerance"]], "status": sub["status"], "profile": sub["profiles"],
        "n": sub["n"],
    })


def gap_list_markdown(lists: Iterable[pd.DataFrame]) -> str:
    frames = [f for f in lists if not f.empty]
    if not frames:
        return "No cell has both our number and the paper's yet.\n"
    df = pd.concat(frames, ignore_index=True)
    headers = ["Artefact", "Method", "Column", "Ours", "Paper", "Δ", "Tolerance", "Status", "Profile", "Seeds"]
    return tabulate(df.astype(str).values.tolist(), headers=headers, tablefmt="github", disable_numparse=True) + "\n"


def selection_comparison(gaps: dict[str, pd.DataFrame], spec: ReportSpec) -> pd.DataFrame:
    """Cells with any of our numbers, one column per selection: "ours (Δ)" side by side."""
    names = list(gaps)
    first = gaps[names[0]]
    keep = pd.Series(False, index=first.index)
    for g in gaps.values():
        keep |= g["n"].reindex(first.index).fillna(0) > 0
    d = spec.digits
    out = pd.DataFrame({"method": first["row"], "column": [f"{p} / {c}" if p else c for p, c in
                                                           zip(first["panel"], first["column"])],
                        "paper": [fmt(v, d) for v in first["paper_value"]]})
    for name, g in gaps.items():
        out[name] = [f"{fmt(m, d)} ({fmt(x, d, True)})" if n and not math.isnan(x) else (fmt(m, d) if n else DASH)
                     for m, x, n in zip(g["ours_mean"], g["delta"], g["n"])]
    return out[keep.values].reset_index(drop=True)


def selection_comparison_markdown(comp: pd.DataFrame) -> str:
    if comp.empty:
        return "No runs yet.\n"
    headers = ["Method", "Column", "Paper", *[f"{c} (Δ)" for c in comp.columns[3:]]]
    return tabulate(comp.values.tolist(), headers=headers, tablefmt="github", disable_numparse=True) + "\n"


# ------------------------------------------------------------------------------------------- overview
def mean_std(values: pd.Series) -> str:
    v = values.dropna()
    if v.empty:
        return DASH
    if len(v) == 1:
        return f"{v.iloc[0]:.4f} (n=1)"
    return f"{v.mean():.4f} ± {v.std(ddof=1):.4f} (n={len(v)})"


def varying_params(df: pd.DataFrame) -> list[str]:
    """Dataset-parameter and budget columns whose value differs between rows."""
    cols = [c for c in df.columns if c.startswith("p.") and c != "p.seed"] + ["epochs", "max_train"]
    return [c for c in cols if c in df.columns and df[c].astype(str).nunique() > 1]


def overview_table(df: pd.DataFrame, metric: str = "test.acc", dataset: str | None = None) -> str:
    """Markdown: the given runs regardless of specs — one table per dataset, rows = methods (with
    their :mod:`benchmark.evidence` class when ``df`` has a ``class`` column), columns = settings
    (e.g. σ²), cells = mean ± std (n) over seeds of ``metric`` at the last epoch. Runs differing
    only by seed are pooled. No cell is marked best: these runs are compared with nothing."""
    if df.empty:
        return "No stored runs here."
    df = df[df["status"] == "done"] if "status" in df.columns else df
    if "class" in df.columns:
        df = df.assign(method=[f"{m} [{c}]" for m, c in zip(df["method"], df["class"])])
    if dataset is not None:
        df = df[df["dataset"] == dataset]
    if metric not in df.columns:
        raise ValueError(f"no metric column {metric!r}; available: "
                         f"{sorted(c for c in df.columns if '.' in c and not c.startswith(('p.', 'hp.', 'tag.')))}")
    out = []
    for ds, sub in df.groupby("dataset", sort=True):
        cols = varying_params(sub)
        key = pd.Series([", ".join(map(str, vals)) for vals in sub[cols].itertuples(index=False)] if cols
                        else "all", index=sub.index)
        label = "; ".join(c.removeprefix("p.") for c in cols) or "setting"
        sub = sub.assign(_setting=key)
        table = sub.groupby(["method", "_setting"])[metric].apply(mean_std).unstack("_setting").fillna(DASH)
        table.index.name = "method"
        table.columns.name = None
        out.append(f"### {ds} — {metric} (last epoch; columns: {label})\n\n"
                   + table.to_markdown(tablefmt="github", disable_numparse=True))
    return "\n\n".join(out)
