"""The planner on small fake grids: expansion, cache hits, ordering, cost estimates, skips, status."""
from __future__ import annotations

import contextlib
import json

import pytest

from benchmark import make_spec
from benchmark.claims import ClaimBoard
from benchmark.cli import main
from benchmark.planner import make_plan, select_suites, status_text
from benchmark.store import ResultStore
from benchmark.suites import SUITES, Profile, Setting, Suite, register_suite

TINY = dict(epochs=1, max_train=64, max_eval=64)


class PlannerGrid(Suite):
    """Test-only: vanilla and lnl on two σ² × two seeds."""

    methods = ("vanilla", "lnl")
    settings = (Setting("colored_mnist", {"sigma2": 0.02}), Setting("colored_mnist", {"sigma2": 0.05}))
    profiles = {"quick": Profile(seeds=(0, 1), **TINY),
                "paper": Profile(seeds=(0,), epochs=3, keep={"sigma2": (0.05,)}, methods=("lnl",))}


class PlannerOther(Suite):
    """Test-only: shares one spec with test.planner_grid; one method, one dataset and one parameter do not exist."""

    methods = ("vanilla", "no_such_method")
    settings = (Setting("colored_mnist", {"sigma2": 0.02}), Setting("no_such_dataset"),
                Setting("colored_mnist", {"no_such_param": 1}))
    hparams = {"*": {"lambda_entropy": 0.5, "lr": 0.02}}
    profiles = {"quick": Profile(seeds=(0,), **TINY)}


@pytest.fixture(autouse=True)
def test_suites():
    """Register the test-only suites for one test, and remove them after it, so that no other
    test's `run --all` ever sees them."""
    yield from registered({"test.planner_grid": PlannerGrid, "test.planner_other": PlannerOther})


def registered(suites: dict):
    for name, cls in suites.items():
        register_suite(name)(cls)
    try:
        yield
    finally:
        for name in suites:
            SUITES._classes.pop(name, None)  # test-only: the registry has no public removal


def fake_record(spec, wall: float, device: str = "cpu:1 threads", tags: dict | None = None) -> dict:
    from benchmark.provenance import fingerprint
    return {"run_id": spec.run_id, "status": "done", "spec": spec.to_dict(), "tags": tags or {}, "history": [],
            "final": {}, "wall_time_s": wall, "device": device, "code": {"fingerprint": fingerprint(spec)}}


def test_expansion_covers_the_grid_with_profile_budgets_and_tags(tmp_path):
    plan = make_plan(select_suites(["test.planner_grid"]), "quick", store=ResultStore(tmp_path / "runs"),
                     check_data=False, order="suite")
    assert len(plan.runs) == 8 and len({r.run_id for r in plan.runs}) == 8
    got = {(r.spec.method, r.spec.dataset_params["sigma2"], r.spec.seed) for r in plan.runs}
    assert got == {(m, s, seed) for m in ("vanilla", "lnl") for s in (0.02, 0.05) for seed in (0, 1)}
    for r in plan.runs:
        assert (r.spec.epochs, r.spec.max_train, r.spec.max_eval) == (1, 64, 64)
        assert r.tags == {"suite": "test.planner_grid", "profile": "quick"}
        assert not r.cached
    # the suite order is methods × settings × seeds
    assert [r.spec.method for r in plan.runs] == ["vanilla"] * 4 + ["lnl"] * 4
    # the paper profile narrows the grid with keep/methods and uses the method's hyperparameters
    paper = make_plan(select_suites(["test.planner_grid"]), "paper", store=ResultStore(tmp_path / "runs"),
                      check_data=False)
    assert [(r.spec.method, r.spec.dataset_params["sigma2"], r.spec.epochs, r.spec.max_train)
            for r in paper.runs] == [("lnl", 0.05, 3, None)]


def test_cache_hits_are_marked_and_counted(tmp_path):
    store = ResultStore(tmp_path / "runs")
    first = make_plan(select_suites(["test.planner_grid"]), "quick", store=store, check_data=False)
    for r in first.runs[:3]:
        store.put(fake_record(r.spec, 1.0))
    plan = make_plan(select_suites(["test.planner_grid"]), "quick", store=store, check_data=False)
    assert {r.run_id for r in plan.cached} == {r.run_id for r in first.runs[:3]}
    assert len(plan.todo) == 5
    text = plan.render()
    assert "8 runs" in text and "3 cached" in text and "5 to run" in text
    for r in first.runs[3:]:
        store.put(fake_record(r.spec, 1.0))
    done = make_plan(select_suites(["test.planner_grid"]), "quick", store=store, check_data=False)
    assert not done.todo and "Everything is cached" in done.render()


def test_cost_estimate_scales_like_runs_and_orders_cheap_first(tmp_path):
    store = ResultStore(tmp_path / "runs")
    # stored runs outside the grid (seed 9): vanilla 0.5 ms and lnl 2 ms per training sample-epoch
    store.put(fake_record(make_spec("vanilla", "colored_mnist", seed=9, epochs=2, max_train=1000), wall=1.0))
    store.put(fake_record(make_spec("lnl", "colored_mnist", seed=9, epochs=1, max_train=500), wall=1.0))
    cheap = make_plan(select_suites(["test.planner_grid"]), "quick", store=store, check_data=False, device="cpu")
    est = {r.spec.method: r.estimate_s for r in cheap.runs}
    assert est["vanilla"] == pytest.approx(0.5e-3 * 1 * 64)
    assert est["lnl"] == pytest.approx(2e-3 * 1 * 64)
    assert all(r.estimate_kind == "like" for r in cheap.runs)  # other training-set sizes: scaled
    assert [r.spec.method for r in cheap.runs] == ["vanilla"] * 4 + ["lnl"] * 4
    # the median over like runs
    store.put(fake_record(make_spec("lnl", "colored_mnist", seed=8, epochs=1, max_train=500), wall=1.0))
    store.put(fake_record(make_spec("vanilla", "colored_mnist", seed=8, epochs=1, max_train=1000), wall=10.0))
    other = make_plan(select_suites(["test.planner_other"]), "quick", store=store, check_data=False)
    (run,) = other.runs
    assert run.estimate_kind == "like"  # vanilla, median of 0.5 ms and 10 ms
    assert run.estimate_s == pytest.approx((0.5e-3 + 10e-3) / 2 * 64)
    total, unknown = cheap.estimate_s()
    assert total == pytest.approx(4 * 0.5e-3 * 64 + 4 * 2e-3 * 64) and unknown == 0
    # a run of the same size on the same device is priced from those runs only ("measured")
    store.put(fake_record(make_spec("vanilla", "colored_mnist", seed=7, **TINY), wall=0.32))
    measured = make_plan(select_suites(["test.planner_grid"]), "quick", store=store, check_data=False, device="cpu")
    van = [r for r in measured.runs if r.spec.method == "vanilla"]
    assert all(r.estimate_kind == "measured" and r.estimate_s == pytest.approx(0.32) for r in van)
    # a GPU plan without GPU records has no like run: priced conservatively from the CPU records
    gpu = make_plan(select_suites(["test.planner_grid"]), "quick", store=store, check_data=False,
                    order="suite", device="cuda")
    assert all(r.estimate_kind == "none" and r.estimate_s is not None for r in gpu.runs)
    assert all("no measured cost" in r.estimate_basis for r in gpu.runs)


def test_no_global_median_unknown_costs_are_conservative_and_empty_store(tmp_path):
    store = ResultStore(tmp_path / "runs")
    empty = make_plan(select_suites(["test.planner_grid"]), "quick", store=store, check_data=False)
    assert all(r.estimate_s is None for r in empty.runs)
    assert "8 run(s) without an estimate" in empty.render()
    store.put(fake_record(make_spec("vanilla", "colored_mnist", seed=9, epochs=1, max_train=100), wall=1.0))
    store.put(fake_record(make_spec("vanilla", "colored_mnist", seed=8, epochs=1, max_train=100), wall=3.0))
    plan = make_plan(select_suites(["test.planner_grid"]), "quick", store=store, check_data=False)
    lnl = [r for r in plan.runs if r.spec.method == "lnl"]
    # lnl has no like run: 2 × the dearest rate (30 ms per sample-epoch), not the median (20 ms)
    assert all(r.estimate_kind == "none" and r.estimate_s == pytest.approx(2 * 0.03 * 64) for r in lnl)
    assert "no measured cost" in lnl[0].estimate_basis
    # a GPU record of lnl does not price a CPU run as "like", and a GPU model is part of "measured"
    store.put(fake_record(make_spec("lnl", "colored_mnist", seed=9, **TINY), wall=0.1, device="cuda:GPU A"))
    plan = make_plan(select_suites(["test.planner_grid"]), "quick", store=store, check_data=False, device="cpu")
    assert all(r.estimate_kind == "none" for r in plan.runs if r.spec.method == "lnl")


def test_shared_specs_unregistered_plugins_and_bad_params_are_skipped_not_fatal(tmp_path):
    plan = make_plan(select_suites(["test.planner_grid", "test.planner_other"]), "quick",
                     store=ResultStore(tmp_path / "runs"), check_data=False, order="suite")
    # the '*' lr override makes the other suite's vanilla spec differ from the grid's ...
    assert [r.suites for r in plan.runs if "test.planner_other" in r.suites] == [["test.planner_other"]]
    assert len(plan.runs) == 9
    other = make_plan(select_suites(["test.planner_other"]), "quick", store=ResultStore(tmp_path / "runs"),
                      check_data=False)
    (run,) = other.runs
    assert run.spec.hparams["lr"] == 0.02  # ... '*' applies where the field exists
    assert any("vanilla has no lambda_entropy" in n for n in other.notes)
    reasons = {s.reason: s.runs for s in other.skipped}
    assert reasons["method 'no_such_method' is not registered"] == 3
    assert reasons["dataset 'no_such_dataset' is not registered"] == 1
    assert any("no_such_param" in r and n == 1 for r, n in reasons.items())
    lines = other.skip_lines()
    assert all(line.startswith("skipped ") and "test.planner_other" in line for line in lines)


def test_same_spec_in_two_suites_runs_once(tmp_path):
    class Twin(Suite):
        """Test-only: the vanilla part of test.planner_grid."""
        methods = ("vanilla",)
        settings = (Setting("colored_mnist", {"sigma2": 0.02}),)
        profiles = {"quick": Profile(seeds=(0,), **TINY)}

    with contextlib.contextmanager(registered)({"test.planner_twin": Twin}):
        plan = make_plan(select_suites(["test.planner_grid", "test.planner_twin"]), "quick",
                         store=ResultStore(tmp_path / "runs"), check_data=False)
    assert len(plan.runs) == 8
    (both,) = [r for r in plan.runs if len(r.suites) == 2]
    assert both.tags == {"suite": "test.planner_grid", "profile": "quick",
                         "suites": "test.planner_grid,test.planner_twin"}


def test_missing_data_is_one_clear_line(tmp_path):
    empty_root = tmp_path / "no_data"
    empty_root.mkdir()
    plan = make_plan(select_suites(["test.planner_grid"]), "quick", store=ResultStore(tmp_path / "runs"),
                     data_root=empty_root, home=tmp_path / "home")
    assert plan.runs == []
    (skip,) = plan.skipped
    assert skip.runs == 8
    assert "colored_mnist" in skip.reason and "missing" in skip.reason and "MNIST/raw" in skip.reason
    assert "\n" not in skip.reason


def test_data_check_passes_on_real_data_and_fills_the_cache(tmp_path, bench_home, data_root):
    plan = make_plan(select_suites(["test.planner_grid"]), "quick", store=ResultStore(tmp_path / "runs"),
                     data_root=data_root, home=bench_home)
    assert len(plan.runs) == 8 and not plan.skipped
    assert list((bench_home / "cache" / "colored_mnist").glob("*.pt"))


def test_every_registered_suite_expands_and_quick_never_looks_like_paper(tmp_path):
    store = ResultStore(tmp_path / "runs")
    quick_runs = 0
    for suite in select_suites():
        if suite.name.startswith("test."):
            continue
        assert set(suite.profiles) >= {"paper", "quick"}, suite.name
        assert suite.report == suite.name and suite.datasets()
        quick = make_plan([suite], "quick", store=store, check_data=False)
        paper = make_plan([suite], "paper", store=store, check_data=False)
        quick_runs += len(quick.runs) + sum(s.runs for s in quick.skipped)
        assert not {r.run_id for r in quick.runs} & {r.run_id for r in paper.runs}
        for r in quick.runs:
            assert r.spec.max_train and r.spec.max_train <= 1000 and r.spec.max_eval and r.spec.epochs <= 2
            assert r.tags["profile"] == "quick"
        for r in paper.runs:
            assert r.spec.max_train is None and r.spec.max_eval is None and r.tags["profile"] == "paper"
    # the CPU budget of `run --all --profile quick` (about 5-15 s a run on 2 cores): 20 suites, each
    # quick profile one or two settings and as few rows as show the artefact's point
    assert quick_runs <= 80


def test_cli_dry_run_prints_plan_and_cost(tmp_path, capsys):
    store = ResultStore(tmp_path / "runs")
    store.put(fake_record(make_spec("vanilla", "colored_mnist", dataset_params={"sigma2": 0.02}, seed=0, **TINY), 2.0))
    code = main(["run", "--suite", "test.planner_grid", "--profile", "quick", "--dry-run", "-v",
                 "--results-dir", str(tmp_path / "runs"), "--order", "suite"])
    out = capsys.readouterr().out
    assert code == 0
    assert "test.planner_grid" in out and "1 cached" in out and "7 to run" in out and "Total: 8 runs" in out
    runs = [line for line in out.splitlines() if line.startswith("    ") and "test.planner_grid: " in line]
    assert "cached" in runs[0]  # the first listed run (suite order) is the stored one
    assert not list((tmp_path / "runs").glob("*.json"))[1:]  # a dry run stores nothing
    # once everything is stored, a real run is a no-op that says so
    plan = make_plan(select_suites(["test.planner_grid"]), "quick", store=store, check_data=False)
    for r in plan.todo:
        store.put(fake_record(r.spec, 2.0))
    code = main(["run", "--suite", "test.planner_grid", "--profile", "quick", "--results-dir", str(tmp_path / "runs")])
    assert code == 0 and "everything is cached, nothing to do" in capsys.readouterr().out


def test_cli_rejects_suite_with_per_run_options(tmp_path, capsys):
    assert main(["run", "--all", "--epochs", "3", "--dry-run"]) == 2
    assert "--profile" in capsys.readouterr().err
    assert main(["run", "--method", "vanilla"]) == 2
    assert main(["run", "--suite", "no.such_suite", "--dry-run"]) == 2
    assert "unknown suite" in capsys.readouterr().err


def test_status_shows_done_running_and_failed(tmp_path):
    store = ResultStore(tmp_path / "runs")
    plan = make_plan(select_suites(["test.planner_grid"]), "quick", store=store, check_data=False, order="suite")
    done, running, failed, stale = plan.runs[:4]
    store.put(fake_record(done.spec, 1.0, tags=done.tags))  # done = tagged with the suite and profile, current code
    board = ClaimBoard(store.root)
    claim = board.acquire(running.run_id, label=running.describe())
    board.record_failure(failed.run_id, failed.spec.to_dict(), failed.tags, "RuntimeError: boom", "Traceback ...")
    board.dir.mkdir(parents=True, exist_ok=True)
    (board.dir / f"{stale.run_id}.json").write_text(json.dumps(
        {"run_id": stale.run_id, "host": "elsewhere", "pid": 1, "token": "t", "started": 0, "heartbeat": 0}))
    try:
        text = status_text(store, select_suites(["test.planner_grid"]), ["quick", "paper"])
    finally:
        claim.release()
    row = next(line for line in text.splitlines() if line.startswith("test.planner_grid") and " quick " in line)
    assert row.split()[2:] == ["8", "1", "0", "1", "1", "5", "0"]  # runs, done, stale, running, failed, to do, skipped
    assert running.run_id in text and "running" in text
    assert f"{stale.run_id}  STALE" in text
    assert failed.run_id in text and "RuntimeError: boom" in text
    assert main(["status", "--results-dir", str(store.root), "--suite", "test.planner_grid"]) == 0


def test_suite_registry_rejects_non_suites():
    from benchmark._registry import RegistryError
    with pytest.raises(RegistryError):
        register_suite("test.not_a_suite")(object)
    assert "lnl.figure4" in SUITES.names() and SUITES.get("lnl.figure4").name == "lnl.figure4"


def test_fixed_costs_do_not_scale_and_unrelated_datasets_do_not_price(tmp_path):
    from benchmark.costs import rates
    # a smoke run: 0.1 s of training on 100 samples, 30 s of wall time (start-up, data): the 29.9 s
    # are not evaluation of 100 samples — at most a training step's cost each — but a fixed cost
    spec = make_spec("vanilla", "colored_mnist", seed=9, epochs=1, max_train=100, max_eval=100)
    rec = fake_record(spec, wall=30.0)
    rec["history"] = [{"epoch": 1, "train_time_s": 0.1, "images_per_s": 1000.0}]
    (rate,), _ = rates([rec])
    assert rate.train == pytest.approx(1e-3) and rate.eval == pytest.approx(1e-3)
    assert rate.fixed == pytest.approx(29.8)
    # a record of another dataset and backbone prices nothing (it once made a CPU run 550 hours)
    store = ResultStore(tmp_path / "runs")
    store.put(fake_record(make_spec("vanilla", "bar", seed=9, epochs=1, max_train=100), wall=100.0))
    plan = make_plan(select_suites(["test.planner_grid"]), "quick", store=store, check_data=False, device="cpu")
    assert all(r.estimate_s is None and "no run of colored_mnist" in r.estimate_basis for r in plan.runs)
