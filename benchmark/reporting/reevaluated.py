"""Which stored re-evaluations the report specs read, and what a report says where one is missing.

Re-evaluations (predictions of a finished run's kept weights on re-coloured test sets) are
computed after training by ``python -m benchmark reeval`` (:mod:`benchmark.reeval`) and stored
beside the run in the result store; ``ResultStore.query()`` hands them to reports as
``record["reeval"][<name>]``. Reporting only reads them:

* a table column reads one through the metric path ``record:reeval.<name>.<key>``
  (PGD Table 12: ``record:reeval.random_colour.acc``);
* a ``fixed_bias_confusion`` figure (LNL Figure 5) reads ``fixed_colour_confusion``.

This module is plain data and pandas: no torch, no engine, no plug-in.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from .runs import cell_runs, match, method_runs, spec_runs
from .spec import ReportSpec, SpecError

STEP = "reeval"  # the post-run step's name: outputs are record["reeval"][name]
METRIC_PREFIX = f"record:{STEP}."
#: The re-evaluations that exist, by name, with what they compute.
NAMES = {
    "random_colour": "accuracy on test digits coloured with RGB ~ U(0, 1)^3 (PGD Table 12)",
    "fixed_colour_confusion": "confusion matrices on test digits coloured around each fixed mean colour "
                              "(LNL Figure 5)",
}
#: Figure kinds that read a re-evaluation.
FIGURE_NEEDS = {"fixed_bias_confusion": "fixed_colour_confusion"}


def spec_needs(spec: ReportSpec) -> set[str]:
    """Names of the re-evaluations ``spec`` reads (empty for most specs).

    Raises:
        SpecError: a column names a re-evaluation that does not exist.
    """
    if spec.kind != "table":
        return {FIGURE_NEEDS[spec.figure]} if spec.figure in FIGURE_NEEDS else set()
    names = set()
    for col in spec.columns:
        if col.metric.startswith(METRIC_PREFIX):
            name = col.metric[len(METRIC_PREFIX):].split(".")[0]
            if name not in NAMES:
                raise SpecError(f"{spec.name}: unknown re-evaluation {name!r} in metric {col.metric!r}; "
                                f"known: {', '.join(sorted(NAMES))}")
            names.add(name)
    return names


def needed(runs: pd.DataFrame, specs: list[ReportSpec]) -> dict[str, set[str]]:
    """run id -> names of the re-evaluations some spec reads from that run."""
    out: dict[str, set[str]] = {}
    for spec in specs:
        names = spec_needs(spec)
        if not names:
            continue
        base = spec_runs(runs, spec)
        if base.empty:
            continue
        if spec.kind == "table":  # the cells that read it, as gap_frame finds them (rows × re-evaluated columns)
            parts = [cell_runs(match(base, col.filters), row, col) for col in spec.columns
                     if col.metric.startswith(METRIC_PREFIX) for row in spec.rows]
        else:
            parts = [method_runs(base, row) for row in spec.rows]
        for part in parts:
            for run_id in part.get("run_id", []):
                out.setdefault(run_id, set()).update(names)
    return out


def stored(record: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The stored re-evaluation ``name`` of a run (as ``ResultStore.query()`` attaches it), or None."""
    return (record.get(STEP) or {}).get(name)


def command(spec: ReportSpec) -> str:
    """The command that computes what ``spec`` reads."""
    return "python -m benchmark reeval" + "".join(f" --suite {s}" for s in spec.suite)


def missing_note(spec: ReportSpec) -> str:
    """What a cell or figure says where a run has no stored re-evaluation."""
    return f"not re-evaluated: run `{command(spec)}`"


def missing(runs: pd.DataFrame, specs: list[ReportSpec]) -> list[str]:
    """One note per spec whose runs lack a stored re-evaluation it reads (with the command to run)."""
    notes = []
    for spec in specs:
        if not spec_needs(spec):
            continue
        want = needed(runs, [spec])
        records = runs.set_index("run_id")["record"] if want else {}
        lacking = sorted(rid for rid, names in want.items() if any(stored(records[rid], n) is None for n in names))
        if lacking:
            notes.append(f"{spec.name}: {len(lacking)} of {len(want)} run(s) {missing_note(spec)} "
                         f"(e.g. {lacking[0]})")
    return notes
