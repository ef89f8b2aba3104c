"""The time-budgeted planner (issue 14, item 3): one seed of every cell first, then further seeds,
from measured costs in real-format records; never a run that cannot finish."""
from __future__ import annotations

import json
import time

import pytest

from benchmark import make_spec
from benchmark.budget import STARTUP_S, SAFETY, admission, fit, parse_duration
from benchmark.cli import main
from benchmark.executors import LocalExecutor, Settings, Slot, Task
from benchmark.planner import build_once, make_plan, select_suites
from benchmark.store import ResultStore
from benchmark.suites import SUITES, Profile, Setting, Suite, register_suite

TINY = dict(epochs=1, max_train=64, max_eval=64)
SETTINGS = (Setting("colored_mnist", {"sigma2": 0.02}), Setting("colored_mnist", {"sigma2": 0.05}))


class BudgetGrid(Suite):
    """Test-only: vanilla and lnl on two σ² × three seeds (4 cells, 12 runs)."""

    methods = ("vanilla", "lnl")
    settings = SETTINGS
    profiles = {"quick": Profile(seeds=(0, 1, 2), **TINY)}


class BudgetVanilla(Suite):
    """Test-only: vanilla on two σ² × two seeds, really run."""

    methods = ("vanilla",)
    settings = SETTINGS
    profiles = {"quick": Profile(seeds=(0, 1), **TINY)}


@pytest.fixture(autouse=True)
def suites():
    for name, cls in {"test.budget_grid": BudgetGrid, "test.budget_vanilla": BudgetVanilla}.items():
        register_suite(name)(cls)
    yield
    for name in ("test.budget_grid", "test.budget_vanilla"):
        SUITES._classes.pop(name, None)  # test-only: the registry has no public removal


def record(spec, wall: float, device: str = "cpu:2 threads") -> dict:
    """A record in the engine's format, with a set wall time (one epoch; 60 % of it training)."""
    return {"run_id": spec.run_id, "status": "done", "spec": spec.to_dict(), "tags": {},
            "history": [{"epoch": 1, "train_time_s": 0.6 * wall, "images_per_s": 64 / (0.6 * wall),
                         "test": {"acc": 0.1}}],
            "final": {"test": {"acc": 0.1}}, "wall_time_s": wall, "device": device}


def priced_store(tmp_path, walls=(("vanilla", 10.0), ("lnl", 20.0))) -> ResultStore:
    store = ResultStore(tmp_path / "runs")
    for method, wall in walls:  # a measured run of each method, outside the grid (seed 9)
        store.put(record(make_spec(method, "colored_mnist", dataset_params={"sigma2": 0.03}, seed=9, **TINY), wall))
    return store


def test_parse_duration():
    assert [parse_duration(t) for t in ("9m", "90s", "1h30m", "540", "0:09:00", "2h")] == \
        [540, 90, 5400, 540, 540, 7200]
    with pytest.raises(ValueError):
        parse_duration("nine minutes")


def test_budget_covers_every_cell_before_a_second_seed_and_stays_inside(tmp_path):
    store = priced_store(tmp_path)
    plan = make_plan(select_suites(["test.budget_grid"]), "quick", store=store, check_data=False, device="cpu")
    assert all(r.estimate_kind == "measured" for r in plan.runs)
    one_round = STARTUP_S + SAFETY * (2 * 10.0 + 2 * 20.0)
    b = fit(plan, one_round + 1.0)
    assert len(b.chosen) == 4 and {c.round for c in b.chosen} == {0}
    assert {(c.run.spec.method, c.run.setting) for c in b.chosen} == {(m, s.describe()) for m in ("vanilla", "lnl")
                                                                      for s in SETTINGS}
    assert max(c.end_s for c in b.chosen) <= b.budget_s
    assert len(b.left) == 8 and all("does not fit" in line or "left" in line for line in b.render().splitlines()[-1:])
    # a little more: the cheapest second seed comes next, still after every first seed
    b = fit(plan, one_round + SAFETY * 10.0 + 1.0)
    assert [c.round for c in b.chosen] == [0, 0, 0, 0, 1] and b.chosen[-1].run.spec.method == "vanilla"
    # a cell whose first seed is stored is covered: its next seed waits for round 1
    covered = plan.runs[0]
    store.put(record(covered.spec, 10.0))
    plan = make_plan(select_suites(["test.budget_grid"]), "quick", store=store, check_data=False, device="cpu")
    b = fit(plan, one_round + 1.0)
    assert all(c.round == 0 for c in b.chosen[:3]) and len({(c.run.spec.method, c.run.setting) for c in b.chosen[:3]}) == 3
    assert all((c.run.spec.method, c.run.setting) != (covered.spec.method, covered.setting) for c in b.chosen[:3])
    # two slots fill in parallel, each run starting on the first free slot
    b2 = fit(plan, one_round + 1.0, slots=2)
    assert len(b2.chosen) > len(b.chosen) and max(c.end_s for c in b2.chosen) <= b2.budget_s


def test_unpriced_runs_are_left_with_the_reason(tmp_path):
    plan = make_plan(select_suites(["test.budget_grid"]), "quick", store=ResultStore(tmp_path / "empty"),
                     check_data=False, device="cpu")
    b = fit(plan, 3600)
    assert not b.chosen and len(b.left) == 12
    assert "not priced (no measured cost: the store holds no run of colored_mnist or of its backbone to price it " \
           "from)" in b.render()


def test_admission_refuses_a_run_that_would_end_after_the_deadline(tmp_path):
    plan = make_plan(select_suites(["test.budget_grid"]), "quick", store=priced_store(tmp_path), check_data=False,
                     device="cpu")
    runs = {r.run_id: r for r in plan.runs}
    now = [1000.0]
    admit = admission(1000.0 + 20.0, lambda r: r.estimate_s, runs, clock=lambda: now[0])
    vanilla = next(r for r in plan.runs if r.spec.method == "vanilla")
    lnl = next(r for r in plan.runs if r.spec.method == "lnl")
    task = lambda r: Task(r.spec, r.tags, r.describe())  # noqa: E731
    assert admit(task(vanilla)) and not admit(task(lnl))  # 12.5 s fits in 20 s, 25 s does not
    now[0] += 10.0
    assert not admit(task(vanilla))


def test_executor_leaves_unadmitted_runs_unstarted(tmp_path, bench_home, data_root):
    specs = [make_spec("vanilla", "colored_mnist", dataset_params={"sigma2": 0.02}, seed=s, **TINY) for s in (0, 1)]
    settings = Settings(str(tmp_path / "runs"), str(bench_home), str(data_root), "cpu")
    ex = LocalExecutor([Slot(0, "cpu", None, 1)], progress=False, admit=lambda t: t.spec.seed == 0)
    summary = ex.run([Task(s, {}, f"seed {s.seed}") for s in specs], settings)
    assert {o.label: o.status for o in summary.outcomes} == {"seed 0": "done", "seed 1": "left"}
    assert [p.stem for p in (tmp_path / "runs").glob("*.json")] == [specs[0].run_id]
    assert "1 left unstarted (time budget)" in summary.render()


def test_cli_budget_runs_one_seed_per_cell_and_ends_on_time(tmp_path, bench_home, data_root, capsys):
    """A real suite run under a budget that fits two of its four runs (the first seed of each cell)."""
    for s in SETTINGS:  # generated beforehand, so the budget holds only training
        build_once(s.dataset, dict(s.params) | {}, data_root, bench_home)
    wall = 4.0
    store = priced_store(tmp_path, walls=(("vanilla", wall),))
    budget = STARTUP_S + 2 * SAFETY * wall + 2.0
    t0 = time.time()
    code = main(["run", "--suite", "test.budget_vanilla", "--profile", "quick", "--time-budget", f"{budget:.0f}s",
                 "--no-mlflow", "--no-progress", "--device", "cpu", "--results-dir", str(store.root)])
    elapsed = time.time() - t0
    out = capsys.readouterr().out
    assert code == 0
    assert "chose 2 of 4 run(s)" in out and "left   2 run(s)" in out
    new = [json.loads(p.read_text()) for p in store.root.glob("*.json")
           if json.loads(p.read_text())["spec"]["dataset_params"]["sigma2"] != 0.03]
    assert sorted((r["spec"]["dataset_params"]["sigma2"], r["spec"]["seed"]) for r in new) == [(0.02, 0), (0.05, 0)]
    assert elapsed <= budget + 10.0  # on time, give or take this shared machine's jitter
