"""Hyperparameter sweeps and model selection across runs.

A sweep is a suite's grid (methods × settings) times ``hparam_seeds`` hyperparameter draws times
``trials`` training seeds (DomainBed's ``n_hparams`` × ``n_trials``; BalancingGroups'
``num_hparams_seeds`` × ``num_init_seeds``). Draw ``hparams_seed = h`` samples every field of the
method's ``HParams`` that declares a search ``space`` (:func:`benchmark.hparams.sample`, seeded by
``hash(h, field)``); ``h = 0`` keeps the suite's recipe. The drawn values go into the run spec's
hyperparameters (above the suite's and the profile's overrides), so every trial is an ordinary
run: content-addressed, cached, resumable, executed by the same executors as ``run --suite``
(local worker processes or SLURM via submitit). ``hparams_seed`` is also stored in the record's
tags and appears in each run's description (``--match hparams_seed=3``). Draws that give the same
spec (a method without search spaces) are one run.

Selection (:func:`select_table`) chooses hyperparameters *and* epoch by a named rule of
:mod:`benchmark.selection`: for every (method, setting, training seed), the (trial, epoch) with the
best validation criterion among that seed's trials; the table reports the chosen epoch's test
metric as mean ± standard deviation over training seeds, so the spread includes the variance of
selection itself (DomainBed's point in facebookresearch/DomainBed#22).
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from .hparams import sample, to_dict
from .selection import LABELS, select_across

SWEEP_RULES = ("biased_val", "unbiased_val", "worst_group_val", "align_conflict", "val_loss", "oracle_worst_group")
"""The selection rules a sweep report shows side by side, in this order."""

_HSEED = re.compile(r"hparams_seed=(\d+)")


def sampled_overrides(method_cls, hparams_seed: int) -> dict[str, Any]:
    """The fields of ``method_cls.HParams`` with a search space, drawn for ``hparams_seed``
    (empty for 0: the suite's recipe)."""
    if hparams_seed == 0:
        return {}
    drawn = to_dict(sample(method_cls.HParams, hparams_seed))
    return {f.name: drawn[f.name] for f in dataclasses.fields(method_cls.HParams) if f.metadata.get("space")}


class SweptSuite:
    """A suite whose cells are repeated for each hyperparameter draw and training seed.

    Quacks like :class:`benchmark.suites.Suite` for :func:`benchmark.planner.make_plan`: same
    name, profiles and datasets; each cell's profile overrides get the drawn values and its
    setting a label ending in ``hparams_seed=h``.
    """

    def recipes(self):
        """The wrapped suite's recipes (draws replace the searched fields of each trial)."""
        return self.suite.recipes()

    @property
    def exceptions(self):
        return self.suite.exceptions

    def __init__(self, suite, hparam_seeds: int, trials: int | None = None):
        if hparam_seeds < 1:
            raise ValueError(f"--hparam-seeds must be >= 1, got {hparam_seeds}")
        if trials is not None and trials < 1:
            raise ValueError(f"--trials must be >= 1, got {trials}")
        self.suite = suite
        self.name = suite.name
        self.hparam_seeds = hparam_seeds
        self.trials = trials

    @property
    def profiles(self):
        return self.suite.profiles

    def datasets(self) -> list[str]:
        return self.suite.datasets()

    def profile(self, name: str):
        prof = self.suite.profile(name)
        return prof if self.trials is None else dataclasses.replace(prof, seeds=tuple(range(self.trials)))

    def cells(self, profile: str) -> Iterator:
        from .registry import METHODS
        prof = self.profile(profile)
        seen = set()
        for cell in self.suite.cells(profile):
            key = (cell.method, repr(cell.setting))
            if key in seen:
                continue  # the suite's own seeds are replaced by range(trials)
            seen.add(key)
            cls = METHODS.get(cell.method) if cell.method in METHODS else None
            for h in range(self.hparam_seeds):
                drawn = sampled_overrides(cls, h) if cls is not None else {}
                setting = dataclasses.replace(cell.setting, label=f"{cell.setting.describe()} hparams_seed={h}")
                for seed in prof.seeds:
                    yield dataclasses.replace(cell, seed=seed, setting=setting,
                                              profile_hparams={**cell.profile_hparams, **drawn})


def hparams_seed_of(planned) -> int:
    """The draw a planned run belongs to (from its setting description)."""
    m = _HSEED.search(planned.setting)
    return int(m.group(1)) if m else 0


def base_setting(planned) -> str:
    """The setting description without the draw."""
    return _HSEED.sub("", planned.setting).strip()


def plan_sweep(suites: Iterable, profile: str, hparam_seeds: int, trials: int | None = None, **kwargs):
    """A :class:`benchmark.planner.Plan` of the sweep (``kwargs`` go to ``make_plan``)."""
    from .planner import make_plan
    return make_plan([SweptSuite(s, hparam_seeds, trials) for s in suites], profile, **kwargs)


def tasks(plan) -> list:
    """Executor tasks for the runs left to do, tagged with their ``hparams_seed``."""
    from .executors import Task
    out = []
    for r in plan.todo:
        task = Task.from_planned(r)
        out.append(dataclasses.replace(task, tags={**task.tags, "sweep": "1", "hparams_seed": str(hparams_seed_of(r))}))
    return out


# --- selection across runs --------------------------------------------------------------------

@dataclass
class RuleCell:
    """One cell of the selection table: a method × setting under one rule."""

    values: list[float] = field(default_factory=list)       # the test metric at the pick, one per seed
    picks: list[tuple[int, int, int]] = field(default_factory=list)  # (seed, hparams_seed, epoch)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else (0.0 if self.values else None)


@dataclass
class SelectionTable:
    """Methods × selection rules for each setting (see :func:`select_table`)."""

    metric: str
    rules: tuple[str, ...]
    cells: dict[tuple[str, str, str], RuleCell]  # (setting, method, rule) -> Cell
    methods: list[str]
    settings: list[str]
    runs: int
    missing: int
    hparam_seeds: int
    seeds: list[int]


def _metric(row: dict, metric: str) -> float | None:
    split, _, key = metric.partition(".")
    v = (row.get(split) or {}).get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def select_table(plan, store, rules: Iterable[str] = SWEEP_RULES, metric: str = "test.worst_group_acc") -> SelectionTable:
    """Apply each rule to the sweep's stored runs; runs not stored yet are counted as missing."""
    rules = tuple(rules)
    groups: dict[tuple[str, str, int], list[tuple[int, dict]]] = {}
    methods, settings, seeds = [], [], set()
    missing = 0
    for r in sorted(plan.runs, key=lambda r: r.position):  # the suite's order: methods × settings
        setting, method = base_setting(r), r.spec.method
        if method not in methods:
            methods.append(method)
        if setting not in settings:
            settings.append(setting)
        if not store.has(r.run_id):
            missing += 1
            continue
        seeds.add(r.spec.seed)
        groups.setdefault((setting, method, r.spec.seed), []).append((hparams_seed_of(r), store.get(r.run_id)))
    cells: dict[tuple[str, str, str], RuleCell] = {}
    for (setting, method, seed), trials in sorted(groups.items()):
        for rule in rules:
            cell = cells.setdefault((setting, method, rule), RuleCell())
            pick = select_across([rec for _, rec in trials], rule)
            if pick is None:
                continue
            rec, sel = pick
            value = _metric(rec["history"][sel.index], metric)
            if value is None:
                continue
            h = next(hs for hs, r in trials if r is rec)
            cell.values.append(value)
            cell.picks.append((seed, h, sel.epoch))
    return SelectionTable(metric, rules, cells, methods, settings, len(plan.runs), missing,
                          max([hparams_seed_of(r) for r in plan.runs] + [0]) + 1, sorted(seeds))


def render_table(table: SelectionTable, fmt: str = "github") -> str:
    """The table as text: one block per setting, methods × rules, ``mean ± std`` in per cent."""
    from tabulate import tabulate
    out = [f"Metric: {table.metric} at the (hyperparameters, epoch) each rule selects, mean ± std over "
           f"training seeds {table.seeds} (%); {table.hparam_seeds} hyperparameter draw(s) per seed; "
           f"{table.runs - table.missing}/{table.runs} runs stored."]
    for setting in table.settings:
        rows = []
        for method in table.methods:
            row = [method]
            for rule in table.rules:
                c = table.cells.get((setting, method, rule))
                if c is None or not c.values:
                    row.append("n/a" if rule == "val_loss" else "—")
                else:
                    row.append(f"{100 * c.mean:.1f} ± {100 * c.std:.1f}")
            rows.append(row)
        out += ["", f"Setting: {setting}", tabulate(rows, headers=["method", *table.rules], tablefmt=fmt)]
    out += ["", "Rules:"] + [f"  {r}: {LABELS[r]}" for r in table.rules]
    out.append("  n/a: the records hold no validation loss (runs from before it was recorded); —: no stored run")
    return "\n".join(out)


def export_recipe(table: SelectionTable, plan, store, rule: str) -> dict:
    """The hyperparameters ``rule`` selects per method × setting, as a suite recipe.

    For each method and setting, the draw chosen for most training seeds (ties: the lower
    ``hparams_seed``); ``hparams`` holds that draw's values of the searched fields (the suite's
    recipe supplies the rest), ``epoch`` the median selected epoch. The ``hparams`` table has the
    shape of ``Suite.hparams`` (``{method: {field: value}}``).
    """
    from .registry import METHODS
    recipes: dict[str, dict] = {}
    for setting in table.settings:
        per_method = {}
        for method in table.methods:
            cell = table.cells.get((setting, method, rule))
            if cell is None or not cell.picks:
                continue
            votes: dict[int, int] = {}
            for _, h, _ in cell.picks:
                votes[h] = votes.get(h, 0) + 1
            h = min(votes, key=lambda k: (-votes[k], k))
            epochs = sorted(e for _, hh, e in cell.picks if hh == h)
            spec = next(r.spec for r in plan.runs if r.spec.method == method and base_setting(r) == setting
                        and hparams_seed_of(r) == h)
            searched = [f.name for f in dataclasses.fields(METHODS.get(method).HParams) if f.metadata.get("space")]
            per_method[method] = {"hparams_seed": h, "epoch": epochs[len(epochs) // 2],
                                  "seeds_choosing_it": votes[h], "seeds": len(cell.picks),
                                  "hparams": {k: spec.hparams[k] for k in searched}}
        recipes[setting] = per_method
    return {"rule": rule, "rule_label": LABELS[rule], "metric": table.metric, "suites": plan.suites,
            "profile": plan.profile, "settings": recipes,
            "hparams": {m: v["hparams"] for per in recipes.values() for m, v in per.items()}}


def write_export(obj: dict, path: str | Path) -> Path:
    """Write an :func:`export_recipe` result as JSON (``.json``) or TOML (``.toml``)."""
    path = Path(path)
    if path.suffix not in (".json", ".toml"):
        raise ValueError(f"--export {path}: use a .json or .toml file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, indent=1) + "\n" if path.suffix == ".json" else _toml(obj)
    path.write_text(text)
    return path


def _toml(obj: dict) -> str:
    """A small TOML writer for export files (tables of scalars, strings and lists)."""
    lines: list[str] = []

    def scalar(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(scalar(x) for x in v) + "]"
        return json.dumps(str(v))

    def table(prefix: list[str], d: dict) -> None:
        simple = {k: v for k, v in d.items() if not isinstance(v, dict)}
        nested = {k: v for k, v in d.items() if isinstance(v, dict)}
        if prefix and simple:
            lines.append("[" + ".".join(json.dumps(p) for p in prefix) + "]")
        lines.extend(f"{json.dumps(k)} = {scalar(v)}" for k, v in simple.items())
        if simple:
            lines.append("")
        for k, v in nested.items():
            table(prefix + [k], v)

    table([], obj)
    return "\n".join(lines) + "\n"
