"""The planner: suites → run specs → what is left to do, in which order, at what cost.

:func:`make_plan` expands each suite's grid for a profile into :class:`benchmark.spec.RunSpec`\\ s
(one spec shared by every suite that needs it), marks those already in the result store as
cached, skips runs that cannot be built — a method or dataset that is not registered, a parameter
the plug-in does not have, data files that are missing — with one line per (suite, reason), estimates
each run's cost from the wall times of similar stored runs and orders the rest.

Prices come from the measured costs in the records (:mod:`benchmark.costs`); a time budget is
filled by :mod:`benchmark.budget`.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ._registry import RegistryError
from .costs import estimate
from .provenance import stale_reason
from .spec import RunSpec
from .store import ResultStore

ORDERS = ("cheap", "suite")


@dataclass
class PlannedRun:
    """One run of the plan.

    Attributes:
        spec: the resolved run.
        suites: every selected suite that contains it (the first one tags the record).
        profile: the budget profile it was planned under.
        setting: a readable description of its setting.
        cached: already in the result store.
        estimate_s: estimated wall seconds (None: nothing to estimate from).
        estimate_kind: "measured", "like" or "none" (no measured cost: priced conservatively, or not
            at all); see :mod:`benchmark.costs`.
        estimate_basis: what the estimate rests on, in words.
        position: index in the suites' own order (for ``order="suite"``).
        after: the run id this run starts from (``Suite.starts_from``): it runs after that one.
        stale: why the stored record no longer matches the code (:mod:`benchmark.provenance`);
            None when it is fresh or not stored.
    """

    spec: RunSpec
    suites: list[str]
    profile: str
    setting: str
    cached: bool = False
    estimate_s: float | None = None
    estimate_kind: str = "none"
    estimate_basis: str = ""
    position: int = 0
    after: str | None = None
    stale: str | None = None

    @property
    def run_id(self) -> str:
        return self.spec.run_id

    @property
    def tags(self) -> dict[str, str]:
        """Stored with the record: which suite and profile it was run for (never part of the id)."""
        tags = {"suite": self.suites[0], "profile": self.profile}
        if len(self.suites) > 1:
            tags["suites"] = ",".join(self.suites)
        return tags

    def describe(self) -> str:
        return f"{self.spec.method} on {self.setting} seed={self.spec.seed}"


@dataclass
class Skip:
    """Runs of a suite that cannot be planned, with the reason (one line each when printed)."""

    suite: str
    reason: str
    runs: int


@dataclass
class Plan:
    """The outcome of :func:`make_plan`."""

    profile: str
    suites: list[str]
    runs: list[PlannedRun] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    recipes: dict[str, list] = field(default_factory=dict)
    exceptions: dict[str, dict] = field(default_factory=dict)

    @property
    def todo(self) -> list[PlannedRun]:
        return [r for r in self.runs if not r.cached]

    @property
    def cached(self) -> list[PlannedRun]:
        return [r for r in self.runs if r.cached]

    def estimate_s(self, runs: Iterable[PlannedRun] | None = None) -> tuple[float, int]:
        """(sum of known estimates, number of runs without one) over ``runs`` (default: to do)."""
        runs = self.todo if runs is None else list(runs)
        known = [r.estimate_s for r in runs if r.estimate_s is not None]
        return float(sum(known)), len(runs) - len(known)

    def select(self, match: Iterable[str] | None = None, limit: int | None = None) -> None:
        """Keep the runs whose ``suite: description`` contains every string of ``match``, and of
        the runs to do only the first ``limit`` (a slice of a suite, e.g. for a first GPU try)."""
        if match:
            self.runs = [r for r in self.runs if all(_matches(m, f"{','.join(r.suites)}: {r.describe()}") for m in match)]
        if limit is not None:
            todo = {r.run_id for r in self.todo[:max(limit, 0)]}
            self.runs = [r for r in self.runs if r.cached or r.run_id in todo]

    def waves(self, runs: list[PlannedRun] | None = None) -> list[list[PlannedRun]]:
        """``runs`` (default: the runs to do) in dependency order: first those that start from no
        other run among them, then those that start from one of the first wave (one level, as
        ``Suite.starts_from``)."""
        todo = self.todo if runs is None else list(runs)
        pending = {r.run_id for r in todo}
        first = [r for r in todo if r.after not in pending]
        second = [r for r in todo if r.after in pending]
        return [w for w in (first, second) if w]

    def skip_lines(self) -> list[str]:
        return [f"skipped {s.runs} run(s) of {s.suite}: {s.reason}" for s in self.skipped]

    def render(self, slots: int = 1, verbose: bool = False) -> str:
        """The ``--dry-run`` text: per suite counts, cached, estimated cost; skips; totals."""
        lines = [f"Plan: profile {self.profile!r}, suites: {', '.join(self.suites) or '(none)'}"]
        by_suite: dict[str, list[PlannedRun]] = defaultdict(list)
        for r in self.runs:
            for s in r.suites:
                by_suite[s].append(r)
        width = max([len(s) for s in self.suites] + [5])
        for s in self.suites:
            runs = by_suite.get(s, [])
            todo = [r for r in runs if not r.cached]
            est, unknown = self.estimate_s(todo)
            cost = format_duration(est) + (f" + {unknown} run(s) without an estimate" if unknown else "")
            n_stale = sum(1 for r in runs if r.stale)
            lines.append(f"  {s:<{width}}  {len(runs):>4} runs  {len(runs) - len(todo):>4} cached  "
                         f"{len(todo):>4} to run  est. {cost}"
                         + (f"  ({n_stale} stored run(s) stale: code changed; --rerun-stale retrains them)"
                            if n_stale else ""))
        lines.extend("  " + line for line in self.skip_lines())
        lines.extend("  note: " + n for n in self.notes)
        if verbose:
            lines.extend(self.render_recipes(by_suite))
            for r in self.runs:
                est = ("stale" if r.stale else "cached") if r.cached else (
                    f"{format_duration(r.estimate_s)}{'*' if r.estimate_kind == 'none' else ''}"
                    if r.estimate_s is not None else "?")
                lines.append(f"    {r.run_id}  {est:>9}  {','.join(r.suites)}: {r.describe()}  "
                             f"epochs={r.spec.epochs} max_train={r.spec.max_train}")
        if verbose and any(r.estimate_kind == "none" and r.estimate_s is not None for r in self.todo):
            lines.append("    (*: no measured cost of a like run; priced conservatively, see benchmark.costs)")
        est, unknown = self.estimate_s()
        n_todo = len(self.todo)
        wall = est / max(1, min(slots, n_todo)) if n_todo else 0.0
        lines.append(
            f"Total: {len(self.runs)} runs, {len(self.cached)} cached, {n_todo} to run; estimated "
            f"{format_duration(est)} of run time" + (f" (+{unknown} without an estimate)" if unknown else "")
            + (f", about {format_duration(wall)} on {slots} slot(s)" if n_todo and slots > 1 else ""))
        if not n_todo and self.runs:
            lines.append("Everything is cached: nothing to run.")
        return "\n".join(lines)


    def render_recipes(self, by_suite: dict[str, list[PlannedRun]]) -> list[str]:
        """Per suite: its recipe(s), then every row's effective hyperparameters (of its first run),
        with the fields that differ from the recipe marked ``*`` and the suite's reason for each."""
        lines = []
        for s in self.suites:
            recipes = self.recipes.get(s) or []
            lines.append(f"  {s}: " + ("recipe " + "; ".join(r.name for r in recipes) if recipes
                                      else "no shared recipe (each method's published defaults)"))
            for r in recipes:
                lines.extend("    " + ln for ln in r.describe().splitlines())
            seen: set[str] = set()
            for run in by_suite.get(s, []):
                if run.spec.method in seen:
                    continue
                seen.add(run.spec.method)
                recipe = next((r for r in recipes if all(run.spec.hparams.get(k) == _plain(v)
                                                          for k, v in r.values.items()
                                                          if k not in self.exceptions.get(s, {}).get(run.spec.method, {}))),
                              recipes[0] if recipes else None)
                marks = []
                for k, v in sorted(run.spec.hparams.items()):
                    differs = recipe is not None and k in recipe.values and v != _plain(recipe.values[k])
                    marks.append(f"{k}={v}{'*' if differs else ''}")
                start = f" pretrained={run.spec.pretrained}" if run.spec.pretrained else ""
                lines.append(f"    row {run.spec.method} (backbone={run.spec.backbone or 'dataset default'}{start}): "
                             + ", ".join(marks))
                for k, (v, why) in self.exceptions.get(s, {}).get(run.spec.method, {}).items():
                    lines.append(f"      * {k}={v}: {why}")
        return lines


def _plain(v):
    return list(v) if isinstance(v, tuple) else v


def _matches(pattern: str, text: str) -> bool:
    """``pattern`` equals a token of ``text`` (split at blanks, commas, parentheses, colons:
    "sigma2=0.02" does not match "sigma2=0.025"), or, if it spans several tokens, is a substring."""
    import re
    sep = r"[\s,():]+"
    if re.search(sep, pattern):
        return pattern in text
    return pattern in re.split(sep, text)


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"


def select_suites(names: Iterable[str] | None = None) -> list:
    """Suite instances by name (all registered suites, sorted, when ``names`` is None)."""
    from .suites import SUITES
    if names is None:
        names = SUITES.names()
    return [SUITES.get(n)() for n in names]


def make_plan(suites: Iterable, profile: str = "paper", *, store: ResultStore | None = None,
              data_root: str | Path | None = None, home: str | Path | None = None, order: str = "cheap",
              device: str | None = None, check_data: bool = True, rerun_stale: bool = False) -> Plan:
    """Expand ``suites`` under ``profile`` into a :class:`Plan`.

    Args:
        suites: :class:`benchmark.suites.Suite` instances (see :func:`select_suites`).
        profile: "paper" or "quick" (a suite without that profile is skipped with a line).
        store: the result store (cached runs are those it holds).
        data_root: where dataset files live; ``home``: the working folder (dataset cache).
        order: "cheap" (cheapest estimated first; the grid order breaks ties) or "suite" (the
            suites' own order: suite by suite, methods × settings × seeds).
        device: the device runs will use ("cpu", "cuda", ...), to prefer stored wall times
            measured on the same kind of device.
        check_data: check that each dataset's files are present (see :func:`data_problem`).
        rerun_stale: plan stored runs whose code changed since (:mod:`benchmark.provenance`) as to
            do; otherwise they count as cached and carry their ``stale`` reason.
    """
    from .paths import default_home

    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    store = store or ResultStore()
    home = Path(home) if home else default_home()
    suites = list(suites)
    plan = Plan(profile, [s.name for s in suites])
    plan.runs, plan.skipped, plan.notes = expand(suites, profile, store=store, data_root=data_root, home=home,
                                                 check_data=check_data, check_weights=True, rerun_stale=rerun_stale)
    for suite in suites:
        plan.recipes[suite.name] = suite.recipes()
        plan.exceptions[suite.name] = {m: dict(e) for m, e in suite.exceptions.items()}
    estimate(plan.runs, store, device, home)
    if order == "cheap":
        plan.runs.sort(key=lambda r: (r.estimate_s if r.estimate_s is not None else math.inf, r.position))
    else:
        plan.runs.sort(key=lambda r: r.position)
    return plan


def expand(suites: Iterable, profile: str, *, store: ResultStore | None = None, data_root: str | Path | None = None,
           home: str | Path | None = None, check_data: bool = False, check_weights: bool = False,
           rerun_stale: bool = False) -> tuple[list[PlannedRun], list[Skip], list[str]]:
    """The runs of ``suites`` under ``profile`` in the suites' order, without cost estimates:
    (runs, skips, notes). One :class:`PlannedRun` per distinct run id, listing every suite that
    needs it; ``store`` marks cached (and stale) runs; ``check_data`` checks the data files and
    ``check_weights`` the pretrained weights files (see :func:`make_plan`)."""
    from .registry import DATASETS, METHODS
    from .spec import make_spec

    runs: list[PlannedRun] = []
    skipped: list[Skip] = []
    notes: list[str] = []
    by_id: dict[str, PlannedRun] = {}
    data_checked: dict[str, str | None] = {}
    position = 0
    for suite in suites:
        if profile not in suite.profiles:
            skipped.append(Skip(suite.name, f"no profile {profile!r} (profiles: {', '.join(sorted(suite.profiles))})", 0))
            continue
        try:
            cells = list(suite.cells(profile))
        except RegistryError as e:  # the suite names a broken plug-in: skip it with the reason
            skipped.append(Skip(suite.name, e.args[0] if e.args else str(e), 0))
            continue
        cells.sort(key=lambda c: c.starts_from is not None)  # bases before the runs that start from them
        bases: dict[tuple, RunSpec] = {}
        reasons: dict[str, int] = defaultdict(int)
        ignored: dict[str, set[str]] = defaultdict(set)
        for cell in cells:
            position += 1
            ds = cell.setting.dataset
            if cell.method not in METHODS:
                reasons[f"method {cell.method!r} is not registered"] += 1
                continue
            if ds not in DATASETS:
                reasons[f"dataset {ds!r} is not registered"] += 1
                continue
            method_cls = METHODS.get(cell.method)
            try:
                hparams, missing = cell.resolved_hparams(method_cls)
                if missing:
                    ignored[cell.method].update(missing)
                extra = {"pretrained": cell.pretrained} if cell.pretrained else {}
                after = None
                if cell.starts_from is not None:
                    base = bases.get((cell.starts_from, id(cell.setting), cell.seed))
                    if base is None:
                        raise ValueError(f"{cell.method} starts from {cell.starts_from}, which this suite does "
                                         f"not run in that setting")
                    after = base.run_id
                    extra = {"pretrained": f"run:{after}"}
                spec = make_spec(cell.method, ds, dataset_params=dict(cell.setting.params), hparams=hparams,
                                 seed=cell.seed, epochs=cell.epochs, max_train=cell.max_train,
                                 label_noise=cell.setting.label_noise, max_eval=cell.max_eval,
                                 backbone=cell.backbone, eval_every=cell.eval_every, **extra)
            except (ValueError, TypeError) as e:
                reasons[f"cannot build the spec: {e}"] += 1
                continue
            bases[(cell.method, id(cell.setting), cell.seed)] = spec
            if spec.run_id in by_id:
                planned = by_id[spec.run_id]
                if suite.name not in planned.suites:
                    planned.suites.append(suite.name)
                continue
            if check_data:
                if ds not in data_checked:
                    data_checked[ds] = data_problem(ds, spec.dataset_params, data_root, Path(home))
                if data_checked[ds] is not None:
                    reasons[data_checked[ds]] += 1
                    continue
            problem = pretrained_problem(spec) if check_weights else None
            if problem is not None:
                reasons[problem] += 1
                continue
            stored = store is not None and store.has(spec.run_id)
            stale = stale_reason(store.get(spec.run_id)) if stored else None
            planned = PlannedRun(spec, [suite.name], profile, cell.setting.describe(),
                                 cached=stored and not (stale and rerun_stale), position=position, after=after,
                                 stale=stale)
            by_id[spec.run_id] = planned
            runs.append(planned)
        for reason, n in reasons.items():
            skipped.append(Skip(suite.name, reason, n))
        for method, names in sorted(ignored.items()):
            notes.append(f"{suite.name}: {method} has no {', '.join(sorted(names))} "
                         f"(shared '*' hyperparameters not applied to it)")
    return runs, skipped, notes


def pretrained_problem(spec: RunSpec) -> str | None:
    """Why the backbone weights ``spec.pretrained`` names cannot be loaded here, or None. Run
    references (``run:ID``) are resolved when the run starts (the base may still be planned)."""
    if not spec.pretrained or spec.pretrained.startswith("run:"):
        return None
    from .nets_resnet import PretrainedWeightsError, resolve_pretrained
    try:
        resolve_pretrained(spec.pretrained)
    except PretrainedWeightsError as e:
        return " ".join(str(e).split())
    return None


def data_problem(dataset: str, params: dict, data_root, home: Path) -> str | None:
    """None if ``dataset``'s data is usable, else one line saying what is missing where.

    Uses the family's :meth:`~benchmark.data.DatasetFamily.check_data` when it implements one;
    otherwise a cached copy of this setting counts as present, and failing that the setting is
    built once (a :class:`~benchmark.data.DataRootError` means missing files; the build also fills
    the cache the runs will read).
    """
    from .data import DataRootError, resolve_data_root
    from .registry import DATASETS

    family = DATASETS.get(dataset)()
    root = resolve_data_root(data_root)
    try:
        if family.check_data(root):
            return None
        if cache_file(dataset, params, home).is_file() and any_sizes(dataset, home):
            return None
        build_once(dataset, params, root, home, sizes=True)
    except DataRootError as e:
        return f"data for {dataset!r} is missing: {one_line(str(e), getattr(family, 'layout', '') or '')}"
    return None


def cache_file(dataset: str, params: dict, home: Path) -> Path:
    """Where :meth:`benchmark.data.DatasetFamily.build` caches ``dataset`` with ``params``."""
    from .data import cache_key
    from .hparams import from_dict, to_dict
    from .registry import DATASETS
    family = DATASETS.get(dataset)
    key = cache_key(family.name, family.version, to_dict(from_dict(family.Params, params)))
    return Path(home) / "cache" / family.name / f"{key}.pt"


def build_once(dataset: str, params: dict, data_root, home: Path, sizes: bool = False) -> None:
    """Generate and cache a dataset unless cached, one process at a time: parallel workers that
    start with the same uncached setting wait for the first one's file instead of all generating
    it (an exclusive ``flock`` on ``<cache file>.lock``). A build also writes the split sizes
    beside the cache file (``sizes=True``: also for a cached copy) and, when it generated the
    data, the seconds that took (``<key>.build.json``), for cost estimates."""
    import fcntl

    from .registry import DATASETS
    path = cache_file(dataset, params, home)
    sidecar = path.with_suffix(".sizes.json")
    if path.is_file() and (sidecar.is_file() or not sizes):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not path.is_file() or not sidecar.is_file():
                import time
                fresh, t0 = not path.is_file(), time.time()
                ds = DATASETS.get(dataset)().build(params, data_root=data_root, cache_dir=Path(home) / "cache")
                sidecar.write_text(json.dumps({name: len(split) for name, split in ds.splits.items()}))
                if fresh:  # the cost of generating it, for time budgets (benchmark.costs.build_price)
                    path.with_suffix(".build.json").write_text(json.dumps({"build_s": round(time.time() - t0, 3)}))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def any_sizes(dataset: str, home: Path | None) -> dict[str, int] | None:
    """Split sizes of any cached setting of ``dataset`` (sizes rarely depend on the parameters)."""
    if home is None:
        return None
    from .registry import DATASETS
    for p in sorted((Path(home) / "cache" / DATASETS.get(dataset).name).glob("*.sizes.json")):
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError):
            continue
    return None


def split_sizes(dataset: str, params: dict, home: Path) -> dict[str, int] | None:
    """Split sizes of a dataset built by :func:`build_once` (for cost estimates), else None."""
    try:
        return json.loads(cache_file(dataset, params, home).with_suffix(".sizes.json").read_text())
    except (OSError, ValueError):
        return None


def one_line(message: str, layout: str = "") -> str:
    """A :class:`~benchmark.data.DataRootError` message (what is missing, the expected layout, how
    to set the data root — several lines) as one line."""
    head, _, rest = message.partition("Expected layout:")
    first = head.strip().splitlines()[0].rstrip(":") if head.strip() else ""
    layout_text = rest.split("Set the data root")[0] if rest else layout
    parts = [first]
    if layout_text.strip():
        parts.append("expected layout: " + " · ".join(line.strip() for line in layout_text.strip().splitlines()))
    parts.append("set --data-root or $BENCHMARK_DATA_ROOT")
    return "; ".join(p for p in parts if p)


# --- status -----------------------------------------------------------------------------------

@dataclass
class SuiteCount:
    """One row of ``status``: the runs a suite plans under a profile and what the store holds of them.

    Attributes:
        done_ids: planned runs whose record counts (:func:`benchmark.evidence.counts_for`; for the
            paper profile: paper evidence, exactly the records the report reads).
        stale_ids: planned runs stored but stale, with the reason.
        extra_ids: records that count for the suite but are not in its current plan (e.g. a grid
            since changed); the report reads them too.
    """

    suite: str
    profile: str
    planned: list[str]
    skipped: int
    done_ids: list[str]
    stale_ids: list[tuple[str, str]]
    extra_ids: list[str]


def suite_count(suite, profile: str, planned: list[str], skipped: int,
                records: dict[str, tuple[dict, str | None]]) -> SuiteCount:
    """Count one suite under one profile; ``records``: run id -> (record, stale reason) of the store."""
    from .evidence import counts_for

    counted = {i for i, (rec, why) in records.items() if counts_for(rec, why, suite.name, profile)}
    stale = [(i, records[i][1]) for i in planned if i in records and isinstance(records[i][1], str) and records[i][1]]
    return SuiteCount(suite.name, profile, planned, skipped, [i for i in planned if i in counted], stale,
                      sorted(counted - set(planned)))


def status_text(store: ResultStore, suites: Iterable, profiles: Iterable[str] = ("paper", "quick")) -> str:
    """What ``python -m benchmark status`` prints: per suite and profile, runs done / running /
    failed / to do; then the live claims (with host, pid, heartbeat) and the failure records.
    "done" is :func:`benchmark.evidence.counts_for`: for the paper profile, the paper evidence the
    report reads."""
    import time

    from .claims import ClaimBoard

    from .catalogue import load

    plans = {s["name"]: s["plans"] for s in load()["suites"]}
    board = ClaimBoard(store.root)
    claims = {c["run_id"]: c for c in board.claims()}
    failures = {f["run_id"]: f for f in board.failures() if not store.has(f["run_id"])}
    records = {r["run_id"]: (r, stale_reason(r)) for r in store.records()}
    suites = list(suites)
    rows, in_suites, stale_runs, extra_lines = [], set(), [], []
    for suite in suites:
        for profile in profiles:
            if profile not in suite.profiles:
                continue
            if suite.name in plans:  # an installed suite: its run ids come from the catalogue (no torch)
                ids, skipped = plans[suite.name][profile]["ids"], plans[suite.name][profile]["skipped"]
            else:  # e.g. a suite registered at run time (tests)
                runs, skips, _ = expand([suite], profile)
                ids, skipped = [r.run_id for r in runs], sum(s.runs for s in skips)
            in_suites.update(ids)
            count = suite_count(suite, profile, ids, skipped, records)
            done, stale = len(count.done_ids), len(count.stale_ids)
            running = sum(i in claims and not claims[i]["stale"] and i not in records for i in ids)
            failed = sum(i in failures and not (i in claims and not claims[i]["stale"]) for i in ids)
            rows.append((suite.name, profile, len(ids) + skipped, done, stale, running, failed,
                         len(ids) - done - stale - running - failed, skipped))
            stale_runs.extend(x for x in count.stale_ids if x not in stale_runs)
            if count.extra_ids:
                extra_lines.append(f"  {suite.name} ({profile}): {len(count.extra_ids)} stored record(s) count for "
                                   f"this suite but are not in its current plan (the report reads them): "
                                   f"{', '.join(count.extra_ids)}")
    width = max([len(r[0]) for r in rows] + [5])
    lines = [f"Result store: {store.root}",
             f"{'suite':<{width}}  profile  {'runs':>5}  {'done':>5}  {'stale':>5}  {'running':>7}  {'failed':>6}  "
             f"{'to do':>5}  {'skipped':>7}"]
    lines += [f"{n:<{width}}  {p:<7}  {t:>5}  {d:>5}  {st:>5}  {r:>7}  {f:>6}  {todo:>5}  {sk:>7}"
              for n, p, t, d, st, r, f, todo, sk in rows]
    lines.append("  (skipped: not plannable here — a method or dataset not registered, or a parameter it lacks;")
    lines.append("   stale: stored, but the method's, dataset's or backbone's code changed since — `run --rerun-stale`;")
    lines.append("   done: finished, tagged with the suite and profile, current code — for paper rows, the report's paper evidence)")
    for run_id, reason in stale_runs:
        spec = store.get(run_id)["spec"]
        lines.append(f"  stale {run_id}  {spec['method']} on {spec['dataset']} seed={spec['seed']}: {reason}")
    lines += extra_lines
    now = time.time()
    live = [c for c in claims.values() if not store.has(c["run_id"])]
    lines.append(f"Running ({len(live)} claim(s)):" if live else "Running: nothing")
    for c in live:
        state = "STALE (owner gone; the next run takes it over)" if c["stale"] else "running"
        lines.append(f"  {c['run_id']}  {state}  {c.get('host')} pid {c.get('pid')}"
                     f"{' job ' + str(c['job_id']) if c.get('job_id') else ''}  for {format_duration(now - c.get('started', now))}, "
                     f"heartbeat {now - c.get('heartbeat', now):.0f}s ago  {c.get('label', '')}")
    lines.append(f"Failed ({len(failures)}):" if failures else "Failed: none")
    for f in failures.values():
        spec = f.get("spec") or {}
        lines.append(f"  {f['run_id']}  {spec.get('method')} on {spec.get('dataset')} seed={spec.get('seed')} "
                     f"[{(f.get('tags') or {}).get('suite', '-')}], {f.get('attempts')} attempt(s): {f.get('error')}")
    if failures:
        lines.append(f"  tracebacks: {board.failures_dir}/<run_id>.json")
    n_records = len(records)  # store.records() read (and so checked) every record: damaged ones are quarantined
    outside = n_records - sum(i in records for i in in_suites)
    lines.append(f"Stored records: {n_records} ({outside} outside the suites above)")
    return "\n".join(lines)
