"""Which stored records count: the one rule that ``status`` and ``report`` both apply.

A record is *paper evidence* for a suite when it finished, carries the tag ``profile = "paper"``,
is tagged with that suite (``tags.suite``, or one of ``tags.suites`` when several suites shared
the run) and its code fingerprint still matches the code (:func:`benchmark.provenance.stale_reason`
returns None). Only paper evidence fills a paper table cell or a paper figure point, and only paper
evidence counts as done in ``status``'s paper rows.

Every other record gets exactly one class saying why it does not count, checked in this order:
``unfinished`` (not status done), ``untagged`` (run outside a suite, e.g. ``run --method``),
``stale`` (code changed since it ran), ``quick`` (the smoke budget) or ``other`` (another
profile, e.g. ``demo`` or ``diagnostic``). Reports list them in their own section, never beside a paper's
number.
"""
from __future__ import annotations

from typing import Any, Iterable

PAPER, STALE, QUICK, OTHER, UNTAGGED, UNFINISHED = "paper", "stale", "quick", "other", "untagged", "unfinished"
CLASSES = (PAPER, STALE, QUICK, OTHER, UNTAGGED, UNFINISHED)
LABELS = {
    PAPER: "paper profile, current code: paper evidence",
    STALE: "stale: the code changed since it ran",
    QUICK: "quick profile: a smoke budget, not the papers' protocol",
    OTHER: "another profile (e.g. demo, diagnostic), not the papers' protocol",
    UNTAGGED: "untagged: run outside a suite (e.g. run --method)",
    UNFINISHED: "unfinished",
}


def _given(v: Any) -> bool:
    return isinstance(v, str) and bool(v)


def record_suites(record: dict[str, Any]) -> tuple[str, ...]:
    """The suites a record was run for: its ``suite`` tag and every name in its ``suites`` tag."""
    tags = record.get("tags") or {}
    names = [tags["suite"]] if _given(tags.get("suite")) else []
    if _given(tags.get("suites")):
        names += [s for s in tags["suites"].split(",") if s and s not in names]
    return tuple(names)


def run_class(record: dict[str, Any], stale: str | None) -> str:
    """The class of one record (see the module docstring); ``stale`` is its
    :func:`benchmark.provenance.stale_reason` (None when the code still matches)."""
    if record.get("status", "done") != "done":
        return UNFINISHED
    profile = (record.get("tags") or {}).get("profile")
    if not record_suites(record) or not _given(profile):
        return UNTAGGED
    if _given(stale):
        return STALE
    if profile == "paper":
        return PAPER
    return QUICK if profile == "quick" else OTHER


def profile_class(profile: str) -> str:
    """The class a fresh, finished record of a suite's ``profile`` has."""
    return PAPER if profile == "paper" else QUICK if profile == "quick" else OTHER


def counts_for(record: dict[str, Any], stale: str | None, suite: str, profile: str = "paper") -> bool:
    """Whether ``record`` counts as done for ``suite`` under ``profile`` (for "paper": whether it is
    paper evidence for that suite)."""
    return run_class(record, stale) == profile_class(profile) and suite in record_suites(record)


# ---------------------------------------------------------------------------------- run frames
def _stale_values(runs) -> list[str | None]:
    if "stale" in runs.columns:
        return [v if _given(v) else None for v in runs["stale"]]
    from .provenance import stale_reason
    return [stale_reason(r) for r in runs["record"]]


def classify(runs):
    """``runs`` (``ResultStore.query()``, optionally with :func:`benchmark.provenance.mark_stale`'s
    ``stale`` column; without it staleness is computed here) with a ``class`` column added."""
    runs = runs.copy()
    if runs.empty:
        runs["class"] = []
        return runs
    runs["class"] = [run_class(r, s) for r, s in zip(runs["record"], _stale_values(runs))]
    return runs


def paper_evidence(runs, suites: Iterable[str] | None = None):
    """The rows of ``runs`` that are paper evidence for any of ``suites`` (for any suite when None)."""
    if runs.empty:
        return runs
    classes = runs["class"] if "class" in runs.columns else classify(runs)["class"]
    keep = classes == PAPER
    if suites is not None:
        wanted = set(suites)
        keep &= runs["record"].map(lambda r: bool(wanted & set(record_suites(r))))
    return runs[keep]


def not_evidence(runs):
    """The rows of ``runs`` that are paper evidence for no suite, with their ``class``."""
    runs = runs if "class" in runs.columns else classify(runs)
    return runs[runs["class"] != PAPER] if not runs.empty else runs
