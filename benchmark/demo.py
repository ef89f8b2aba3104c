"""The README's main job: a few CPU minutes that show a published effect, beside the published numbers.

``python -m benchmark demo`` runs the ``demo`` profile of the ``lff.colored_mnist`` suite (vanilla
and LfF on the LfF protocol's Colored MNIST with 1 % bias-conflicting training digits, three seeds,
the first 30 of the paper's 100 epochs; see :data:`benchmark.suites.lff_colored_mnist.DEMO`) through
the ordinary scheduler, then prints :func:`demo_table`: per method, the accuracy on bias-conflicting
(minority), bias-aligned (majority) and all (unbiased) test digits for

* the runs just made (``profile=demo``),
* the shipped paper-budget runs of the same cell (``profile=paper``, current code only), and
* the closest published cell: PGD's Table 1, Colored MNIST at bias ratio 99 % (= 1 % conflicting),
  where PGD reports vanilla and LfF under its own protocol. LfF's own table is not transcribed yet
  (``results/papers/lff/README.md``), so no LfF-paper number is printed.

Every number comes from the result store or ``results/papers``; the closing lines are generated
from them.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import pandas as pd
from tabulate import tabulate

SUITE = "lff.colored_mnist"
CONFLICTING_RATIO = 0.01
METHODS = (("vanilla", "Vanilla"), ("lff", "LfF"))
METRICS = (("test.conflicting_acc", "minority (conflicting)"), ("test.aligned_acc", "majority (aligned)"),
           ("test.acc", "unbiased"))
#: PGD Table 1 cells (its row name, its column prefix) printed as the published reference.
PAPER_ARTEFACT = ("pgd", "table1")
PAPER_COLUMN = "Colored MNIST/bias ratio 99%"
PAPER_NOTE = ("PGD paper, Table 1, Colored MNIST at bias ratio 99 % (its own protocol: Simple ConvNet-1, colour "
              "noise, SGD, model chosen on a biased validation split; no unbiased column)")


@dataclass(frozen=True)
class Cell:
    """Mean ± std over seeds of one metric (in %), and how many seeds."""

    mean: float
    std: float
    n: int
    digits: int = 1

    def text(self) -> str:
        if not self.n or math.isnan(self.mean):
            return "—"
        d = self.digits
        return f"{self.mean:.{d}f}" + (f" ± {self.std:.{d}f}" if self.n > 1 and not math.isnan(self.std) else "")


def _cell(values: list[float]) -> Cell:
    vals = [100 * v for v in values if isinstance(v, (int, float)) and not math.isnan(v)]
    if not vals:
        return Cell(math.nan, math.nan, 0)
    return Cell(statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else math.nan, len(vals))


def _runs(frame: pd.DataFrame, method: str, profile: str) -> pd.DataFrame:
    """``frame`` with :func:`benchmark.evidence.classify`'s ``class`` column. The cell's runs of ``profile``: for "paper" exactly the paper evidence the report reads
    (:mod:`benchmark.evidence`: finished, current code), for "demo" the finished demo runs of current code."""
    from .evidence import paper_evidence, profile_class
    if frame.empty or "tag.suite" not in frame.columns or "tag.profile" not in frame.columns:
        return frame.iloc[0:0]
    pool = paper_evidence(frame, [SUITE]) if profile == "paper" else frame[
        (frame["class"] == profile_class(profile)) & (frame["tag.suite"] == SUITE) & (frame["tag.profile"] == profile)]
    sel = pool[pool["method"] == method]
    if "p.conflicting_ratio" in sel.columns:
        sel = sel[(sel["p.conflicting_ratio"] - CONFLICTING_RATIO).abs() < 1e-9]
    return sel


def _budget(runs: pd.DataFrame) -> str:
    epochs = sorted({int(e) for e in runs["epochs"]}) if not runs.empty else []
    return "/".join(map(str, epochs)) if epochs else "—"


def demo_rows(frame: pd.DataFrame, refs: pd.DataFrame) -> list[dict]:
    """One dict per (method, source): label, epochs, n, and a :class:`Cell` per metric."""
    from .evidence import classify
    frame = classify(frame) if not frame.empty else frame  # once: the class of every record
    rows = []
    for method, paper_row in METHODS:
        for profile, source in (("demo", "this demo"), ("paper", "paper budget, shipped records")):
            runs = _runs(frame, method, profile)
            rows.append({"method": paper_row, "source": source, "epochs": _budget(runs),
                         **{m: _cell(list(runs[m])) if m in runs.columns else _cell([]) for m, _ in METRICS}})
        ref = refs[(refs["paper"] == PAPER_ARTEFACT[0]) & (refs["artefact"] == PAPER_ARTEFACT[1])
                   & (refs["row"] == paper_row)] if not refs.empty else refs
        by_col = {c: (v, s) for c, v, s in zip(ref.get("column", []), ref.get("value", []), ref.get("std", []))}
        cells = {}
        for m, _ in METRICS:
            key = {"test.conflicting_acc": "Minor", "test.aligned_acc": "Major"}.get(m)
            v = by_col.get(f"{PAPER_COLUMN}/{key}") if key else None
            cells[m] = Cell(float(v[0]), float(v[1]), 3, digits=2) if v else Cell(math.nan, math.nan, 0)
        rows.append({"method": paper_row, "source": "PGD paper, Table 1 (99 %)", "epochs": "100", **cells})
    return rows


def demo_table(frame: pd.DataFrame, refs: pd.DataFrame) -> str:
    """The main job's closing table and the lines that say what it shows (all generated)."""
    rows = demo_rows(frame, refs)
    body = [[r["method"], r["source"], r["epochs"], max(r[m].n for m, _ in METRICS), *[r[m].text() for m, _ in METRICS]]
            for r in rows]
    head = ["method", "numbers from", "epochs", "n (seeds)", *[f"{label} %" for _, label in METRICS]]
    out = ["Colored MNIST, LfF protocol (official MLP, Adam 1e-3, batch 256), 1 % bias-conflicting training "
           "digits: test accuracy, mean ± std over seeds",
           tabulate(body, head, tablefmt="simple", disable_numparse=True), ""]
    out += _findings(rows)
    out += [f"Paper reference: {PAPER_NOTE}. LfF's own table is not transcribed yet (results/papers/lff/README.md)."]
    return "\n".join(out)


def _findings(rows: list[dict]) -> list[str]:
    get = {(r["method"], r["source"]): r for r in rows}
    lines = []
    for source, what in (("this demo", "This demo"), ("paper budget, shipped records", "The paper-budget runs")):
        v, l = get[("Vanilla", source)], get[("LfF", source)]
        minor, major = "test.conflicting_acc", "test.aligned_acc"
        if not (v[minor].n and l[minor].n):
            lines.append(f"{what}: not measured (no stored run of both methods).")
            continue
        lines.append(
            f"{what} ({v['epochs']} epochs): vanilla learns the colour — {v[major].mean:.1f} % on bias-aligned digits, "
            f"{v[minor].mean:.1f} % on conflicting ones; LfF raises conflicting-digit accuracy to {l[minor].mean:.1f} % "
            f"({l[minor].mean - v[minor].mean:+.1f} points) and gives up aligned accuracy ({l[major].mean:.1f} %).")
    return lines


def paper_budget_cost(frame: pd.DataFrame) -> str:
    """How long the suite's paper profile took, from its stored records' wall times."""
    from .evidence import paper_evidence
    if frame.empty or "tag.suite" not in frame.columns:
        return "not measured"
    sel = paper_evidence(frame, [SUITE])
    if sel.empty:
        return "not measured"
    per = sel.groupby("method")["wall_time_s"].agg(["min", "median"])
    parts = ", ".join(f"{m} {row['min'] / 60:.1f} / {row['median'] / 60:.1f} min" for m, row in per.iterrows())
    return (f"{len(sel)} stored runs; wall time per run, fastest / median, on the shared machine that made them: "
            f"{parts}")
