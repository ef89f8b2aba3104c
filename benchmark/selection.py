"""Model selection: which epoch of a finished run a report reads.

Papers differ, and the difference moves numbers by points: LNL reports the last epoch, PGD tunes
on a biased validation set (Sec. 6.2, App. A.1) or, in App. D, on a validation set split into
majority and minority with the bias labels ("oracle"). Each protocol here is a named function of a
record's per-epoch ``history`` (see :mod:`benchmark.engine`: one dict per epoch with one nested dict
of metrics per evaluated split, e.g. ``row["val"]["acc"]``), returning the :class:`Selected` epoch.

Strategies (``STRATEGIES``, in the order reports list them):

* ``last``: the last epoch.
* ``biased_val``: the epoch with the highest accuracy on the biased validation split ``val``
  (a held-out part of the biased training distribution). PGD selects by the lowest validation
  *loss*; records store accuracies, not losses, so we select by accuracy.
* ``unbiased_val``: the epoch with the highest accuracy on an unbiased validation split
  (``val_unbiased`` or ``unbiased_val``) when the dataset has one; otherwise the highest
  bias-balanced accuracy of ``val`` — the mean over its (target × bias) groups, which reweights the
  biased split to the uniform group distribution using the bias labels (PGD App. D's "oracle"
  validation).
* ``oracle``: the epoch with the highest accuracy on ``test`` itself. Optimistic by construction;
  reports label it as test-set selection.

Group-robustness rules (subpopulation shift; groups = target × bias class, see
:mod:`benchmark.metrics`):

* ``worst_group_val``: the highest worst-group accuracy on ``val`` (reads bias labels; the rule of
  GroupDRO, JTT and BalancingGroups' ``min_acc_va``).
* ``align_conflict``: the highest align-conflict score on ``val`` — the mean of its bias-aligned and
  bias-conflicting accuracies (needs only the per-sample aligned flag).
* ``val_loss``: the lowest mean cross-entropy on ``val`` (PGD's stated rule, Sec. 6.2). Records
  store it from this version on (``val.loss``); older records have none, and the rule then
  returns None ("not available") rather than falling back.
* ``oracle_worst_group``: the highest worst-group accuracy on ``test`` itself (test-set selection,
  optimistic: the upper bound a worst-group table is read against).

:func:`select_across` applies any rule across runs — one (run, epoch) among several
hyperparameter trials — which is how ``sweep`` chooses hyperparameters *and* epoch.

Ties go to the earliest epoch. A strategy whose split is absent returns None (the run cannot be
selected under that protocol; reports say so rather than fall back silently).

A run whose spec evaluates only some epochs (``eval_every`` > 1, see :class:`benchmark.spec.RunSpec`)
has rows without split metrics; every rule but ``last`` picks among epochs by those metrics, so
:func:`select` refuses such a run with a ``ValueError`` instead of choosing among the few evaluated
epochs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

UNBIASED_VAL_SPLITS = ("val_unbiased", "unbiased_val")


@dataclass(frozen=True)
class Selected:
    """The epoch a strategy picked.

    Attributes:
        index: position in ``history``.
        epoch: the 1-based epoch number stored in the row.
        criterion: what was maximised, e.g. ``"val.acc"`` or ``"last epoch"``.
        score: the criterion's value at that epoch (None for ``last``).
    """

    index: int
    epoch: int
    criterion: str
    score: float | None


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _argmax(history: list[dict], score: Callable[[dict], float | None], criterion: str) -> Selected | None:
    best = None
    for i, row in enumerate(history):
        s = score(row)
        if _finite(s) and (best is None or s > best[1]):
            best = (i, float(s))
    if best is None:
        return None
    i, s = best
    return Selected(i, int(history[i].get("epoch", i + 1)), criterion, s)


def balanced_acc(split_metrics: dict) -> float | None:
    """Mean accuracy over the (target × bias) groups present in a split (``group_acc`` entries that
    are not None): accuracy under the uniform group distribution."""
    groups = [v for row in split_metrics.get("group_acc") or [] for v in row if _finite(v)]
    return sum(groups) / len(groups) if groups else None


def last(history: list[dict]) -> Selected | None:
    """The last epoch (LNL's protocol: the official trainer reports the final model)."""
    if not history:
        return None
    return Selected(len(history) - 1, int(history[-1].get("epoch", len(history))), "last epoch", None)


def biased_val(history: list[dict]) -> Selected | None:
    """Highest accuracy on the biased validation split ``val``."""
    return _argmax(history, lambda r: (r.get("val") or {}).get("acc"), "val.acc")


def unbiased_val(history: list[dict]) -> Selected | None:
    """Highest accuracy on an unbiased validation split, else bias-balanced accuracy on ``val``."""
    for name in UNBIASED_VAL_SPLITS:
        if any(isinstance(row.get(name), dict) for row in history):
            return _argmax(history, lambda r, n=name: (r.get(n) or {}).get("acc"), f"{name}.acc")
    if any(isinstance(row.get("val"), dict) for row in history):
        return _argmax(history, lambda r: balanced_acc(r.get("val") or {}), "val.balanced_acc")
    return None


def oracle(history: list[dict]) -> Selected | None:
    """Highest accuracy on the test split itself (optimistic; labelled as such in reports)."""
    return _argmax(history, lambda r: (r.get("test") or {}).get("acc"), "test.acc")


def worst_group_val(history: list[dict]) -> Selected | None:
    """Highest worst-group accuracy on ``val`` (groups = target × bias class)."""
    return _argmax(history, lambda r: (r.get("val") or {}).get("worst_group_acc"), "val.worst_group_acc")


def align_conflict(history: list[dict]) -> Selected | None:
    """Highest align-conflict score (mean of aligned and conflicting accuracy) on ``val``."""
    return _argmax(history, lambda r: (r.get("val") or {}).get("align_conflict"), "val.align_conflict")


def val_loss(history: list[dict]) -> Selected | None:
    """Lowest mean cross-entropy on ``val``; None when the records store no validation loss."""
    sel = _argmax(history, lambda r: _neg((r.get("val") or {}).get("loss")), "val.loss (lowest)")
    return None if sel is None else Selected(sel.index, sel.epoch, sel.criterion, -sel.score)


def oracle_worst_group(history: list[dict]) -> Selected | None:
    """Highest worst-group accuracy on the test split itself (optimistic; labelled as such)."""
    return _argmax(history, lambda r: (r.get("test") or {}).get("worst_group_acc"), "test.worst_group_acc")


def _neg(v):
    return -v if _finite(v) else None


STRATEGIES: dict[str, Callable[[list[dict]], Selected | None]] = {
    "last": last, "biased_val": biased_val, "unbiased_val": unbiased_val, "oracle": oracle,
    "worst_group_val": worst_group_val, "align_conflict": align_conflict, "val_loss": val_loss,
    "oracle_worst_group": oracle_worst_group,
}

LABELS = {
    "last": "last epoch",
    "biased_val": "best biased-validation accuracy",
    "unbiased_val": "best unbiased-validation accuracy (bias labels)",
    "oracle": "oracle: best test accuracy (test-set selection, optimistic)",
    "worst_group_val": "best worst-group validation accuracy (bias labels)",
    "align_conflict": "best align-conflict score on validation (mean of aligned and conflicting accuracy)",
    "val_loss": "lowest validation loss (PGD's rule)",
    "oracle_worst_group": "oracle: best test worst-group accuracy (test-set selection, optimistic)",
}

LOWER_IS_BETTER = {"val_loss"}
"""Strategies whose ``Selected.score`` is minimised (the others maximise it)."""


def get_strategy(name: str) -> Callable[[list[dict]], Selected | None]:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown selection {name!r}; known: {', '.join(STRATEGIES)}") from None


def select(record: dict, strategy: str) -> Selected | None:
    """Apply the named strategy to ``record["history"]`` (None if it cannot be applied).

    Raises:
        ValueError: ``strategy`` picks an epoch by its metrics (any rule but ``last``) and the run
            did not evaluate every epoch (its spec's ``eval_every`` > 1).
    """
    rule = get_strategy(strategy)
    every = (record.get("spec") or {}).get("eval_every", 1)
    if strategy != "last" and every != 1:
        raise ValueError(f"selection {strategy!r} compares every epoch's metrics, but run {record.get('run_id')} "
                         f"evaluated only every {every} epochs (spec eval_every={every}); read it with selection "
                         f"'last', or rerun it with eval_every=1")
    return rule(record.get("history") or [])


def selected_row(record: dict, strategy: str) -> tuple[dict, Selected] | None:
    """The history row (all splits' metrics at that epoch) a strategy picks, with the pick."""
    sel = select(record, strategy)
    if sel is None:
        return None
    return record["history"][sel.index], sel


def select_across(records: list[dict], strategy: str) -> tuple[dict, Selected] | None:
    """The (record, epoch) a strategy picks among several runs (e.g. a sweep's hyperparameter
    trials of one method, setting and seed): each run's own pick, then the best score over runs
    (lowest for :data:`LOWER_IS_BETTER`, else highest; ties go to the first record). ``last`` has
    no score and cannot choose between runs. None if no record can be selected under the rule."""
    if strategy == "last":
        raise ValueError("selection 'last' has no score to compare runs by; use a validation rule")
    best = None
    sign = -1.0 if strategy in LOWER_IS_BETTER else 1.0
    for rec in records:
        sel = select(rec, strategy)
        if sel is None or sel.score is None:
            continue
        if best is None or sign * sel.score > sign * best[1].score:
            best = (rec, sel)
    return best
