"""Fill a time budget with the runs of a plan: cover the table first, never start what cannot finish.

``run --suite S --time-budget 9m`` orders the runs to do in *rounds*: round 0 holds one seed of
every cell (a cell is one method in one setting of a suite, i.e. one entry of the paper's table or
figure), round 1 a second seed of every cell, and so on; a cell whose first seeds are stored
starts at a later round. Within a round the suites keep the order they were named in, and runs go
cheapest first (``--order cheap``) or in the suite's grid order (``--order suite``).

The runs are then laid out on the executor's slots as the executor will dispatch them (each to the
first free slot), each taking its price from :mod:`benchmark.costs` times :data:`SAFETY` (plus,
for the first run of a dataset setting not yet generated here, the time to generate it), after
:data:`STARTUP_S` for starting the workers. A run whose end would fall after the budget is left
out, with the reason; so is a run without any price. While the runs execute, each one is
admitted only if its price — re-estimated from the records stored so far, which now include the
runs just finished on this device — still fits in the time left (:func:`admission`).
"""
from __future__ import annotations

import json
import math
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .planner import Plan, PlannedRun, format_duration

SAFETY = 1.25    # × each price: fixed costs spread over epochs make short runs look cheaper than they are
STARTUP_S = 20.0  # starting the local workers (a fork server that imports torch and the engine): not measured on GPU


def parse_duration(text: str) -> float:
    """Seconds in "9m", "90s", "1h30m", "2h", "540" (seconds) or "0:09:00"; raises ValueError."""
    t = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return float(t)
    if re.fullmatch(r"\d+(:\d{1,2}){1,2}", t):
        parts = [int(p) for p in t.split(":")]
        return float(sum(p * 60 ** i for i, p in enumerate(reversed(parts))))
    m = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m(?:in)?)?\s*(?:(\d+(?:\.\d+)?)s)?", t)
    if not t or not m or not any(m.groups()):
        raise ValueError(f"time budget {text!r}: write e.g. 9m, 90s, 1h30m or 0:09:00")
    h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + s


def cell_of(run: PlannedRun) -> tuple[str, str, str]:
    """The table cell of a run: (suite, method, setting) — every seed of it shares the cell."""
    return (run.suites[0], run.spec.method, run.setting)


@dataclass
class Chosen:
    run: PlannedRun
    round: int
    slot: int
    start_s: float
    end_s: float


@dataclass
class BudgetPlan:
    """Which runs fit in ``budget_s`` on ``slots`` slots, in the order they will start."""

    budget_s: float
    slots: int
    chosen: list[Chosen] = field(default_factory=list)
    left: list[tuple[PlannedRun, int, str]] = field(default_factory=list)  # (run, round, reason)
    cells: int = 0

    @property
    def runs(self) -> list[PlannedRun]:
        return [c.run for c in self.chosen]

    def render(self, verbose: bool = False) -> str:
        end = max((c.end_s for c in self.chosen), default=0.0)
        covered = {cell_of(c.run) for c in self.chosen if c.round == 0}
        first_round = sum(1 for r, rnd, _ in self.left if rnd == 0) + len(covered)
        lines = [f"Time budget {format_duration(self.budget_s)} on {self.slots} slot(s): chose {len(self.chosen)} of "
                 f"{len(self.chosen) + len(self.left)} run(s) to do, planned to end at {format_duration(end)} "
                 f"(prices × {SAFETY:g}, {STARTUP_S:g}s start-up); one seed of {len(covered)} of the "
                 f"{first_round} cell(s) still without a stored seed"]
        for c in self.chosen:
            lines.append(f"  chose  {c.run.run_id}  round {c.round}  {format_duration(c.start_s)}-"
                         f"{format_duration(c.end_s)} slot {c.slot}  {','.join(c.run.suites)}: {c.run.describe()}  "
                         f"[{c.run.estimate_basis}]")
        reasons: dict[str, list[PlannedRun]] = defaultdict(list)
        for run, _, why in self.left:
            reasons[why if verbose else _general(why)].append(run)
        for why, runs in reasons.items():
            if verbose:
                lines.extend(f"  left   {r.run_id}  {','.join(r.suites)}: {r.describe()}: {why}" for r in runs)
            else:
                lines.append(f"  left   {len(runs)} run(s): {why}")
        return "\n".join(lines)


def _general(reason: str) -> str:
    return re.sub(r"needs [0-9:]+, [0-9:]+ left", "does not fit in the time left", reason)


def rounds(plan: Plan) -> dict[str, int]:
    """Round of each run to do: the number of runs of its cell that come before it (stored ones
    first, then the runs to do by seed)."""
    by_cell: dict[tuple, list[PlannedRun]] = defaultdict(list)
    for r in plan.runs:
        by_cell[cell_of(r)].append(r)
    out = {}
    for runs in by_cell.values():
        stored = sum(r.cached for r in runs)
        for i, r in enumerate(sorted((r for r in runs if not r.cached), key=lambda r: (r.spec.seed, r.position))):
            out[r.run_id] = stored + i
    return out


def _setting_key(run: PlannedRun) -> str:
    return json.dumps([run.spec.dataset, run.spec.dataset_params], sort_keys=True)


def fit(plan: Plan, budget_s: float, slots: int = 1, order: str = "cheap", home: Path | None = None) -> BudgetPlan:
    """Choose the runs of ``plan`` that fit in ``budget_s`` seconds (see the module docstring).
    The first chosen run of a dataset setting that is not cached in ``home`` also pays for
    generating it (:func:`benchmark.costs.build_price`)."""
    from .costs import build_price

    rnd = rounds(plan)
    built: set[str] = set()
    suite_rank = {s: i for i, s in enumerate(plan.suites)}

    def key(r: PlannedRun):
        cost = r.estimate_s if r.estimate_s is not None else math.inf
        return (rnd[r.run_id], suite_rank.get(r.suites[0], len(suite_rank)),
                cost if order == "cheap" else 0.0, r.position)

    out = BudgetPlan(budget_s, slots, cells=len({cell_of(r) for r in plan.runs}))
    free = [STARTUP_S] * max(1, slots)
    for r in sorted(plan.todo, key=key):
        if r.estimate_s is None:
            out.left.append((r, rnd[r.run_id], f"not priced ({r.estimate_basis})"))
            continue
        slot = min(range(len(free)), key=free.__getitem__)
        setting = _setting_key(r)
        build = 0.0 if setting in built else build_price(r.spec.dataset, r.spec.dataset_params, home)
        start, need = free[slot], r.estimate_s * SAFETY + build
        if start + need > budget_s:
            out.left.append((r, rnd[r.run_id], f"needs {format_duration(need)}, "
                                               f"{format_duration(max(budget_s - start, 0))} left"))
            continue
        free[slot] = start + need
        built.add(setting)
        out.chosen.append(Chosen(r, rnd[r.run_id], slot, start, start + need))
    return out


def admission(deadline: float, price: Callable[[PlannedRun], float | None],
              by_id: dict[str, PlannedRun], home: Path | None = None, clock: Callable[[], float] = time.time) -> Callable:
    """An ``admit(task)`` for the local executor: True when the task's price (re-estimated now by
    ``price``, times :data:`SAFETY`, plus generating its data if not cached in ``home``) ends
    before ``deadline`` (a ``clock()`` time)."""
    from .costs import build_price

    def admit(task) -> bool:
        run = by_id[task.run_id]
        est = price(run)
        return est is not None and (clock() + est * SAFETY
                                    + build_price(run.spec.dataset, run.spec.dataset_params, home)) <= deadline

    return admit
