"""From the store's run frame to the numbers a report cell or a figure reads.

Everything here is a pure function of ``ResultStore.query()``'s frame (one row per run, the full
record in its ``record`` column) and a spec.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..evidence import paper_evidence
from ..selection import Selected, balanced_acc, selected_row
from .spec import UNSET, ReportSpec


def _is_unset(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA


def _equal(a: Any, b: Any) -> bool:
    if _is_unset(a):
        return b == UNSET
    if isinstance(b, bool) or isinstance(a, (bool, np.bool_)):
        return isinstance(a, (bool, np.bool_)) and isinstance(b, bool) and bool(a) == b
    if isinstance(b, (int, float)) and isinstance(a, (int, float, np.number)):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return str(a) == str(b)


def match(df: pd.DataFrame, filters: dict[str, Any]) -> pd.DataFrame:
    """Rows of ``df`` matching every filter; a filter on a column the frame lacks matches only
    ``"<unset>"`` (so specs may name parameters of datasets that have no runs yet)."""
    if df.empty or not filters:
        return df
    mask = pd.Series(True, index=df.index)
    for col, want in filters.items():
        wants = want if isinstance(want, list) else [want]
        if col not in df.columns:
            if UNSET not in wants:
                return df.iloc[0:0]
            continue
        mask &= df[col].map(lambda v: any(_equal(v, w) for w in wants))
    return df[mask]


def spec_runs(df: pd.DataFrame, spec: ReportSpec) -> pd.DataFrame:
    """The runs a spec may read: paper evidence for one of its suites
    (:func:`benchmark.evidence.paper_evidence`, the rule ``status`` counts by) matching its filters.
    A spec without suites reads the paper evidence of every suite."""
    if df.empty:
        return df
    return match(paper_evidence(df, spec.suite or None), spec.filters)


def method_runs(runs: pd.DataFrame, row) -> pd.DataFrame:
    """The runs of one method row of a figure: the row's method, matching the row's own filters."""
    if runs.empty:
        return runs
    return match(runs[runs["method"] == row.method], row.filters)


def cell_runs(runs: pd.DataFrame, row, col) -> pd.DataFrame:
    """The runs of one (method row, setting column) cell among ``runs`` (already matched to the
    column's filters): the row's method — or, for a column ``wrapped_by`` a wrapper method, runs of
    that wrapper whose ``hp.inner`` is the row's method — matching the row's own filters."""
    if runs.empty:
        return runs
    wrapper = getattr(col, "wrapped_by", None)
    if wrapper:
        if "hp.inner" not in runs.columns:
            return runs.iloc[0:0]
        picked = runs[(runs["method"] == wrapper) & (runs["hp.inner"] == row.method)]
    else:
        picked = runs[runs["method"] == row.method]
    return match(picked, row.filters)


def metric_value(record: dict, row: dict, path: str) -> float | None:
    """One number from a selected history ``row`` (or the record), by path.

    Paths:
        ``<split>.<key>``: a metric of that split at the selected epoch (``test.acc``,
            ``test.conflicting_acc``, ``val.acc``, ``test.bias_head_acc.color``, ...);
        ``<split>.balanced_acc``: mean over the split's (target × bias) groups;
        ``<split>.major_minor_mean``: (aligned_acc + conflicting_acc) / 2 (PGD Table 8 "Avg.");
        ``<split>.class_acc.<k>``: accuracy on target class k, from ``group_acc``/``group_n``;
        ``train.<key>``: a training scalar of that epoch;
        ``record:<a>.<b>...``: a value stored elsewhere in the record (e.g. a bias probe's
            result), independent of the selected epoch.
    Returns None when the value is absent or not a finite number.
    """
    if path.startswith("record:"):
        v: Any = record
        for part in path[len("record:"):].split("."):
            v = v.get(part) if isinstance(v, dict) else None
        return _num(v)
    if path in row:
        return _num(row[path])
    split, _, key = path.partition(".")
    m = row.get(split)
    if not isinstance(m, dict):
        return None
    if key in m:
        return _num(m[key])
    if key == "balanced_acc":
        return balanced_acc(m)
    if key == "major_minor_mean":
        a, c = _num(m.get("aligned_acc")), _num(m.get("conflicting_acc"))
        return None if a is None or c is None else (a + c) / 2
    if key.startswith("class_acc."):
        k = int(key.split(".", 1)[1])
        acc, n = m.get("group_acc") or [], m.get("group_n") or []
        if k >= len(acc):
            return None
        pairs = [(a, c) for a, c in zip(acc[k], n[k]) if a is not None and c]
        total = sum(c for _, c in pairs)
        return sum(a * c for a, c in pairs) / total if total else None
    return None


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def config_key(record: dict) -> str:
    """Everything that defines a run except its seeds: runs sharing it are pooled over seeds."""
    spec = dict(record["spec"])
    spec.pop("seed", None)
    spec["dataset_params"] = {k: v for k, v in (spec.get("dataset_params") or {}).items() if k != "seed"}
    return json.dumps(spec, sort_keys=True)


@dataclass(frozen=True)
class RunValue:
    """One run's number under a selection protocol."""

    run_id: str
    value: float | None
    selected: Selected | None
    config: str
    profile: str
    created: str


def run_values(runs: pd.DataFrame, selection: str, metric: str, scale: float = 1.0) -> list[RunValue]:
    """The metric of every run in ``runs`` at the epoch ``selection`` picks, times ``scale``."""
    out = []
    for rec in runs["record"] if not runs.empty else []:
        picked = selected_row(rec, selection)
        value = None
        if picked is not None:
            v = metric_value(rec, picked[0], metric)
            value = None if v is None else v * scale
        profile = (rec.get("tags") or {}).get("profile") or ""
        out.append(RunValue(rec["run_id"], value, picked[1] if picked else None, config_key(rec), profile,
                            rec.get("created") or ""))
    return out


def choose_config(values: list[RunValue]) -> tuple[list[RunValue], str]:
    """Pool seeds of one configuration; when a cell holds several, keep one and say which rule chose.

    Preference: the highest mean selection
    score (the protocol's own validation criterion, as a hyperparameter search would); then the
    most seeds; then the newest. Returns the kept values and a note ("" when there was no choice).
    """
    groups: dict[str, list[RunValue]] = {}
    for v in values:
        groups.setdefault(v.config, []).append(v)
    if len(groups) <= 1:
        return values, ""

    def rank(vs: list[RunValue]):
        scores = [v.selected.score for v in vs if v.selected is not None and v.selected.score is not None]
        mean_score = sum(scores) / len(scores) if scores and len(scores) == len(vs) else -math.inf
        return mean_score, sum(v.value is not None for v in vs), max(v.created for v in vs)

    best = max(groups.values(), key=rank)
    return best, f"chose 1 of {len(groups)} configurations (selection score, then seeds, newest)"


@dataclass(frozen=True)
class Aggregate:
    """Mean ± std over the seeds of the configuration a cell keeps."""

    mean: float
    std: float
    n: int
    values: tuple[RunValue, ...]
    note: str


def aggregate(runs: pd.DataFrame, selection: str, metric: str, scale: float = 1.0) -> Aggregate:
    """The metric over ``runs`` (one cell or one curve point): choose a configuration, then pool
    its seeds. ``n`` counts runs with a value; ``values`` holds every kept run."""
    values, note = choose_config(run_values(runs, selection, metric, scale))
    nums = [v.value for v in values if v.value is not None]
    mean = sum(nums) / len(nums) if nums else math.nan
    std = float(pd.Series(nums).std(ddof=1)) if len(nums) > 1 else math.nan
    return Aggregate(mean, std, len(nums), tuple(values), note)
