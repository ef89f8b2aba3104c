"""Figures laid out like the papers', drawn from stored runs only (matplotlib, PNG + PDF).

Each figure kind is a function ``(runs frame, spec, selection, context) -> FigureResult``, listed in
``FIGURES`` and named by a spec's ``figure`` key:

* ``curve``: a metric against a dataset parameter, one line per method (and per metric column),
  mean ± std over seeds — LNL Figure 4 (accuracy vs σ²), PGD Figure 2 (accuracy vs |m|/|D|).
* ``group_matrix``: the (target × bias) accuracy matrix at the selected epoch, one panel per
  method — PGD Figure 13.
* ``fixed_bias_confusion``: confusion matrices on test digits re-coloured around one fixed mean
  colour, one row per method — LNL Figure 5 (stored re-evaluations, see :mod:`.reevaluated`).
* ``bias_head_curve``: the bias head's accuracy per epoch against uniform chance — LNL's claim that
  h falls to chance once f unlearns the bias.
* ``score_histogram``: per-sample score histograms of majority vs minority samples, from a record's
  ``prepare`` metrics — PGD Figure 4(c).

A figure with no runs is not drawn: its result carries ``figure=None`` and a note saying why.
Figures are built with ``matplotlib.figure.Figure`` (no pyplot state), so they can be saved and
placed into the PDF report without a display.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .reevaluated import missing_note
from .reevaluated import stored as stored_reevaluation
from .runs import aggregate, choose_config, method_runs, run_values, spec_runs
from .spec import ReportSpec

DPI = 150


@dataclass
class FigureResult:
    """A drawn figure (or None), what it read, and what the reader should know."""

    spec: ReportSpec
    figure: Figure | None
    notes: list[str] = field(default_factory=list)
    run_ids: tuple[str, ...] = ()
    selection: str = "last"

    def save(self, out_dir: Path) -> list[Path]:
        """Write ``<out_dir>/<spec>.<selection>.png`` and ``.pdf``; nothing when not drawn."""
        if self.figure is None:
            return []
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = [out_dir / f"{self.spec.name}.{self.selection}.{ext}" for ext in ("png", "pdf")]
        for p in paths:
            self.figure.savefig(p, dpi=DPI, metadata={"CreationDate": None} if p.suffix == ".pdf" else None)
        return paths


def _empty(spec: ReportSpec, selection: str, why: str) -> FigureResult:
    return FigureResult(spec, None, [why], (), selection)


def _no_runs_note(spec: ReportSpec) -> str:
    suites = ", ".join(spec.suite) or "any suite"
    return (f"not drawn: no paper-profile run of the current code matches (suite {suites}; "
            f"filters {spec.filters or 'none'})")


def curve(runs: pd.DataFrame, spec: ReportSpec, selection: str) -> FigureResult:
    """Metric(s) against ``figure_options.x`` (a run-frame column, e.g. ``p.sigma2``), one line per
    method row × metric column; x is mapped by ``x_offset + x_scale * x`` (PGD's |m|/|D| % is
    ``100 − 100·bias_ratio``)."""
    opts = spec.figure_options
    x_col = opts["x"]
    base = spec_runs(runs, spec)
    if base.empty or x_col not in base.columns:
        return _empty(spec, selection, _no_runs_note(spec))
    metrics = spec.columns or ()
    if not metrics:
        from .spec import ColumnSpec
        metrics = (ColumnSpec(None, "test", "", "test.acc"),)
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    used: set[str] = set()
    notes = []
    styles = ["-", "--", ":", "-."]
    for ri, row in enumerate(spec.rows):
        sub = method_runs(base, row)
        for mi, col in enumerate(metrics):
            xs, means, stds, ns = [], [], [], []
            for x, grp in sub.groupby(x_col, sort=True) if not sub.empty else []:
                agg = aggregate(grp, selection, col.metric, spec.scale)
                if agg.n:
                    xs.append(float(opts.get("x_offset", 0.0)) + float(opts.get("x_scale", 1.0)) * float(x))
                    means.append(agg.mean)
                    stds.append(0.0 if math.isnan(agg.std) else agg.std)
                    ns.append(agg.n)
                    used.update(v.run_id for v in agg.values)
                if agg.note:
                    notes.append(f"{row.label} at {x_col}={x}: {agg.note}")
            if not xs:
                notes.append(f"{row.label}: no runs")
                continue
            order = np.argsort(xs)
            label = row.label if len(metrics) == 1 else f"{row.label} — {col.label}"
            ax.errorbar(np.array(xs)[order], np.array(means)[order], yerr=np.array(stds)[order], capsize=3,
                        marker="os^vDP*X"[ri % 8], linestyle=styles[mi % len(styles)], color=f"C{ri}", label=label)
            for x, y, n in zip(xs, means, ns):  # every point says how many seeds it pools
                ax.annotate(f"n={n}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=6, color=f"C{ri}")
    if not used:
        return _empty(spec, selection, _no_runs_note(spec))
    if opts.get("x_log"):
        from matplotlib.ticker import NullFormatter
        ax.set_xscale("log")
        ticks = sorted({round(float(x), 9) for line in ax.lines for x in line.get_xdata()})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(opts.get("x_label", x_col))
    ax.set_ylabel(opts.get("y_label", metrics[0].metric))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(_short_title(spec) + "\n(paper profile; n = seeds per point)", fontsize=10)
    return FigureResult(spec, fig, notes, tuple(sorted(used)), selection)


def _short_title(spec: ReportSpec, width: int = 70) -> str:
    """The spec's title wrapped to ``width`` characters per line."""
    import textwrap
    return "\n".join(textwrap.wrap(spec.title, width))


def _matrix(record: dict, row: dict, split: str) -> np.ndarray | None:
    m = (row.get(split) or {}).get("group_acc")
    if not m:
        return None
    return np.array([[np.nan if v is None else v for v in r] for r in m], dtype=float)


def group_matrix(runs: pd.DataFrame, spec: ReportSpec, selection: str) -> FigureResult:
    """(target × bias) accuracy at the selected epoch, averaged over seeds, one heatmap per method."""
    import seaborn as sns
    from ..selection import selected_row
    split = spec.figure_options.get("split", "test")
    base = spec_runs(runs, spec)
    panels, used, notes = [], set(), []
    for row in spec.rows:
        values, note = choose_config(run_values(method_runs(base, row), selection, f"{split}.acc"))
        mats = []
        for v in values:
            rec = base.loc[base["run_id"] == v.run_id, "record"].iloc[0]
            picked = selected_row(rec, selection)
            m = _matrix(rec, picked[0], split) if picked else None
            if m is not None:
                mats.append(m)
                used.add(v.run_id)
        if note:
            notes.append(f"{row.label}: {note}")
        panels.append((row, np.nanmean(np.stack(mats), axis=0) if mats else None, len(mats)))
    if not used:
        return _empty(spec, selection, _no_runs_note(spec))
    n = len(panels)
    fig = Figure(figsize=(3.3 * n + 0.8, 3.6), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, (row, m, k) in zip(axes, panels):
        if m is None:
            ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            ax.set_title(row.label, fontsize=10)
            continue
        small = max(m.shape) <= 10
        sns.heatmap(m, ax=ax, vmin=0.0, vmax=1.0, cmap="RdBu", square=True, cbar=ax is axes[-1],
                    annot=small, fmt=".1f", annot_kws={"fontsize": 6}, linewidths=0.2)
        off = m[~np.eye(*m.shape, dtype=bool)] if m.shape[0] == m.shape[1] else m.ravel()
        ax.set_title(f"{row.label} (n={k}); off-diag. {np.nanmean(off):.2f}", fontsize=9)
        ax.set_xlabel(spec.figure_options.get("x_label", "bias class"), fontsize=8)
        ax.set_ylabel(spec.figure_options.get("y_label", "target class"), fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(_short_title(spec, 140) + " (paper profile)", fontsize=10)
    return FigureResult(spec, fig, notes, tuple(sorted(used)), selection)


def fixed_bias_confusion(runs: pd.DataFrame, spec: ReportSpec, selection: str) -> FigureResult:
    """LNL Figure 5: per method, ten row-normalised confusion matrices (true × predicted digit), one
    per fixed mean colour, from each run's stored ``fixed_colour_confusion`` re-evaluation (summed
    over seeds); panels are titled in the mean colours the re-evaluation stored."""
    base = spec_runs(runs, spec)
    if selection != "last":
        note = [f"re-evaluated from the final weights: the `{selection}` selection does not apply to this figure"]
    else:
        note = []
    rows, used, notes, colours, lacking = [], set(), list(note), None, []
    for row in spec.rows:
        values, cnote = choose_config(run_values(method_runs(base, row), "last", "test.acc"))
        counts = []
        for v in values:
            out = stored_reevaluation(base.loc[base["run_id"] == v.run_id, "record"].iloc[0], "fixed_colour_confusion")
            if out is None:
                lacking.append(v.run_id)
                continue
            counts.append(np.array(out["counts"], dtype=np.int64))
            colours = colours or out.get("colours")
            used.add(v.run_id)
        if cnote:
            notes.append(f"{row.label}: {cnote}")
        rows.append((row, np.sum(counts, axis=0) if counts else None, len(counts)))
    if lacking:
        notes.append(f"{len(lacking)} run(s) {missing_note(spec)}")
    if not used:
        return FigureResult(spec, None, notes or [_no_runs_note(spec)], (), selection)
    k = len(next(c for _, c, _ in rows if c is not None))  # mean colours
    fig = Figure(figsize=(1.25 * k + 0.6, 1.35 * len(rows) + 0.9), layout="constrained")
    axes = fig.subplots(len(rows), k, squeeze=False)
    for r, (row, c, n) in enumerate(rows):
        for j in range(k):
            ax = axes[r, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if c is None:
                ax.set_axis_off()
                if j == 0:
                    ax.text(0, 0.5, f"{row.label}: not run", transform=ax.transAxes, fontsize=8)
                continue
            m = c[j] / np.maximum(c[j].sum(1, keepdims=True), 1)
            ax.imshow(m, vmin=0, vmax=1, cmap="Blues")
            if r == 0:
                colour = tuple(colours[j]) if colours and j < len(colours) and colours[j] else "grey"
                ax.set_title(f"{j}", fontsize=9, color="white", backgroundcolor=colour)
            if j == 0:
                ax.set_ylabel(f"{row.label}\n(n={n})\ntrue", fontsize=8)
            if r == len(rows) - 1:
                ax.set_xlabel("pred.", fontsize=7)
    fig.suptitle(f"{spec.title} — columns: mean colour of digit k in training (paper profile)", fontsize=9)
    return FigureResult(spec, fig, notes, tuple(sorted(used)), "last")


def bias_head_curve(runs: pd.DataFrame, spec: ReportSpec, selection: str) -> FigureResult:
    """Bias-head accuracy per epoch (``<split>.bias_head_acc.<head>`` and ``train.bias_head_acc*``),
    mean ± std over seeds, with the 1/K line of uniform guessing."""
    split = spec.figure_options.get("split", "test")
    base = spec_runs(runs, spec)
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    used, notes, chance = set(), [], {}
    for ri, row in enumerate(spec.rows):
        values, note = choose_config(run_values(method_runs(base, row), "last", "test.acc"))
        series: dict[str, list[list[float]]] = {}
        for v in values:
            rec = base.loc[base["run_id"] == v.run_id, "record"].iloc[0]
            for key, ys in _head_series(rec["history"], split).items():
                series.setdefault(key, []).append(ys)
                used.add(v.run_id)
            chance.update(_head_chance(rec))
        if note:
            notes.append(f"{row.label}: {note}")
        for si, (key, curves) in enumerate(sorted(series.items())):
            length = min(len(c) for c in curves)
            arr = np.array([c[:length] for c in curves], dtype=float)
            epochs = np.arange(1, length + 1)
            mean = np.nanmean(arr, axis=0)
            ax.plot(epochs, mean, color=f"C{ri}", linestyle=["-", "--", ":"][si % 3],
                    marker="o" if length <= 30 else None, markersize=3,
                    label=f"{row.label}: {key} (n={len(curves)})")
            if len(curves) > 1:
                sd = np.nanstd(arr, axis=0, ddof=1)
                ax.fill_between(epochs, mean - sd, mean + sd, color=f"C{ri}", alpha=0.15)
    if not used:
        return _empty(spec, selection, "not drawn: no matching run logged a bias-head accuracy"
                      if not base.empty else _no_runs_note(spec))
    for head, k in sorted(chance.items()):
        ax.axhline(1.0 / k, color="grey", linestyle=":", linewidth=1)
        ax.annotate(f"1/{k} ({head})", (1, 1.0 / k), fontsize=7, color="grey", va="bottom")
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("bias-head accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(_short_title(spec) + " (paper profile)", fontsize=10)
    notes.append("the dotted line is 1/K (uniform guessing over the head's K classes), not the majority-class rate")
    return FigureResult(spec, fig, notes, tuple(sorted(used)), "last")


def _head_series(history: list[dict], split: str) -> dict[str, list[float]]:
    """One value per history row for each bias-head key; NaN where a row lacks it (e.g. an epoch the
    run did not evaluate, ``eval_every`` > 1), so position i is always epoch i + 1."""
    out: dict[str, list[float]] = {}
    for i, row in enumerate(history):
        for k, v in (row.get(split) or {}).items():
            if k.startswith("bias_head_acc"):
                out.setdefault(f"{split}.{k}", [np.nan] * len(history))[i] = np.nan if v is None else float(v)
        for k, v in row.items():
            if k.startswith("train.bias_head_acc") and isinstance(v, (int, float)):
                out.setdefault(k, [np.nan] * len(history))[i] = float(v)
    return out


def _head_chance(record: dict) -> dict[str, int]:
    """Bias-head class counts of the run's dataset from the plug-in catalogue (plain data; empty when
    the dataset is not installed)."""
    from ..catalogue import dataset_entry, load
    entry = dataset_entry(load(), record["spec"]["dataset"])
    return dict(entry.get("bias_heads") or {}) if entry else {}


def score_histogram(runs: pd.DataFrame, spec: ReportSpec, selection: str) -> FigureResult:
    """Histograms stored in ``record["prepare"][<key ending in 'hist'>]`` as
    ``{"edges": [...], "aligned": [...], "conflicting": [...]}`` (counts per bin), majority vs
    minority, normalised to fractions of each group; the first run of each method row."""
    base = spec_runs(runs, spec)
    found = []
    for row in spec.rows:
        sub = method_runs(base, row)
        for rec in sub["record"] if not sub.empty else []:
            for key, h in sorted((rec.get("prepare") or {}).items()):
                if key.endswith("hist") and isinstance(h, dict) and {"edges", "aligned", "conflicting"} <= set(h):
                    found.append((row, key, h, rec["run_id"]))
            if found and found[-1][0] is row:
                break
    if not found:
        why = ("not drawn: no matching run stores score histograms in its `prepare` metrics"
               if not base.empty else _no_runs_note(spec))
        return _empty(spec, selection, why)
    fig = Figure(figsize=(4.0 * len(found), 3.4), layout="constrained")
    axes = fig.subplots(1, len(found), squeeze=False)[0]
    for ax, (row, key, h, run_id) in zip(axes, found):
        edges = np.asarray(h["edges"], dtype=float)
        for name, color in (("aligned", "C0"), ("conflicting", "C3")):
            c = np.asarray(h[name], dtype=float)
            ax.stairs(c / max(c.sum(), 1), edges, color=color, fill=False, linewidth=1.5,
                      label="majority" if name == "aligned" else "minority")
        ax.set_xlabel(f"{key} bin", fontsize=8)
        ax.set_ylabel("fraction of group", fontsize=8)
        ax.set_title(f"{row.label} ({run_id})", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(_short_title(spec) + " (paper profile)", fontsize=10)
    return FigureResult(spec, fig, [], tuple(sorted({f[3] for f in found})), selection)


FIGURES: dict[str, Callable[[pd.DataFrame, ReportSpec, str], FigureResult]] = {
    "curve": curve, "group_matrix": group_matrix, "fixed_bias_confusion": fixed_bias_confusion,
    "bias_head_curve": bias_head_curve, "score_histogram": score_histogram,
}


def make_figure(runs: pd.DataFrame, spec: ReportSpec, selection: str | None = None) -> FigureResult:
    """Draw the figure a spec names, from ``runs`` (``ResultStore.query()``) only."""
    if spec.figure not in FIGURES:
        raise ValueError(f"{spec.name}: unknown figure {spec.figure!r}; known: {sorted(FIGURES)}")
    return FIGURES[spec.figure](runs, spec, selection or spec.selection)
