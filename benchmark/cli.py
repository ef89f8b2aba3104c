"""Command line: ``python -m benchmark {list,run,report,ui,mirror}``."""
from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import warnings

QUICK = {"epochs": 2, "max_train": 5000}  # the --quick smoke budget: minutes on a CPU


class UsageError(Exception):
    """Bad input from the user; printed without a traceback, exit status 2."""


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results-dir", help="result store folder (default $BENCHMARK_RESULTS or results/runs)")
    p.add_argument("--home", help="working folder for caches, checkpoints, MLflow (default $BENCHMARK_HOME or .benchmark)")


def _add_suite_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("suites", "run --all / --suite NAME: expand experiment suites into runs (`list` shows them)")
    g.add_argument("--all", action="store_true", help="every registered suite whose data is present")
    g.add_argument("--suite", action="append", metavar="NAME", help="this suite (repeatable)")
    g.add_argument("--profile", choices=["paper", "quick"], default="paper",
                   help="budget: paper (the publication's epochs and hyperparameters) or quick (a CPU smoke test)")
    g.add_argument("--dry-run", action="store_true", help="print the plan (runs, cached, estimated cost) and stop")
    g.add_argument("--order", choices=["cheap", "suite"], default="cheap",
                   help="cheapest estimated runs first (default), or suite by suite in grid order")
    g.add_argument("--match", action="append", metavar="TEXT",
                   help="only runs whose description contains TEXT, e.g. --match sigma2=0.02 --match seed=0 "
                        "(repeatable: all must match; `--dry-run -v` shows descriptions)")
    g.add_argument("--limit", type=int, metavar="N", help="only the first N runs to do (after --order)")
    g.add_argument("--verbose", "-v", action="store_true", help="with --dry-run, list every run")
    g.add_argument("--executor", choices=["local", "slurm"], default="local", help="where runs execute (default local)")
    g.add_argument("--workers", type=int, help="local: CPU worker processes without GPUs (default 1); with GPUs, "
                                               "at most this many slots")
    g.add_argument("--jobs-per-gpu", type=int, default=1, help="local: workers sharing each GPU (default 1)")
    g.add_argument("--retries", type=int, default=1, help="extra attempts for a failing run (default 1)")
    g.add_argument("--partition", help="slurm: partition")
    g.add_argument("--time", type=int, default=240, metavar="MINUTES",
                   help="slurm: time limit per job; longer runs are requeued and resume (default 240)")
    g.add_argument("--gpus-per-job", type=int, default=1, help="slurm: GPUs per job (default 1; 0 for CPU jobs)")
    g.add_argument("--cpus-per-task", type=int, help="slurm: CPU cores per job")
    g.add_argument("--mem-gb", type=float, help="slurm: memory per job")
    g.add_argument("--array-parallelism", type=int, default=32, help="slurm: jobs of an array running at once (default 32)")
    g.add_argument("--slurm-folder", help="slurm: submitit logs and pickles, on a shared file system (default <home>/submitit)")
    g.add_argument("--cluster", choices=["auto", "slurm", "local"], default="auto",
                   help="slurm: submitit cluster (local = submitit's local executor, same code path)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmark", description=(
        "Reproducibility suite for learning from biased data. Runs land in the result store "
        "(results/runs) and are mirrored to MLflow."))
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="registered methods, datasets and backbones")
    p.add_argument("--verbose", "-v", action="store_true", help="also show every hyperparameter with its source")

    p = sub.add_parser("run", help="train and evaluate one method on one dataset (per seed), or whole suites",
                       description="Train and evaluate. Dataset parameters are options too: e.g. "
                                   "--dataset colored_mnist accepts --sigma2; `list -v` shows them all. "
                                   "With --all or --suite, run experiment suites (paper artefacts) on local "
                                   "workers or SLURM: finished runs are skipped, interrupted ones resume.")
    p.add_argument("--method", help="registered method name (see `list`); not with --all/--suite")
    p.add_argument("--dataset", help="registered dataset name (see `list`); not with --all/--suite")
    p.add_argument("--seed", type=int, nargs="+", default=[0], help="training seed(s); one run per seed")
    p.add_argument("--epochs", type=int, help="epochs (default: the method's published value)")
    p.add_argument("--max-train", type=int, help="train on a fixed random subset of this many samples")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke budget for CPUs: {QUICK['epochs']} epochs on {QUICK['max_train']} training samples")
    p.add_argument("--set", dest="hparams", action="append", default=[], metavar="NAME=VALUE",
                   help="override a method hyperparameter (repeatable)")
    p.add_argument("--backbone", help="override the dataset's default backbone")
    p.add_argument("--label-noise", type=float, default=0.0, metavar="FRACTION",
                   help="flip this fraction of training labels to a wrong class (PGD App. B.3); default 0")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: bfloat16 autocast of training and evaluation, meant for GPUs (part of the run id; default fp32)")
    p.add_argument("--pretrained", metavar="PATH", help="start the backbone from these weights: a state-dict file, "
                   "'imagenet' for torchvision's ResNet-18 in the torch hub cache, or run:RUN_ID for the final "
                   "backbone of a stored run (e.g. a vanilla baseline, LNL's official two-stage recipe); "
                   "recorded in the run spec")
    p.add_argument("--data-root", help="dataset files (default $BENCHMARK_DATA_ROOT, ./data, ../shared/data)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or an embedded SQLite store)")
    p.add_argument("--no-mlflow", action="store_true", help="do not mirror to MLflow")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _add_common(p)
    _add_suite_options(p)
    _add_pack_option(p)

    p = sub.add_parser("status", help="suites' runs: done, running (claimed), failed, to do")
    p.add_argument("--suite", action="append", metavar="NAME", help="only this suite (repeatable; default all)")
    p.add_argument("--profile", choices=["paper", "quick", "all"], default="all", help="budget profile (default all)")
    _add_common(p)

    p = sub.add_parser("report", help="tables and figures beside the papers' numbers (markdown, LaTeX, PNG/PDF; --pdf)",
                       description="Render every report spec (reports/specs/*.toml) from the result store: "
                                   "tables with ours ± std, the paper's value and Δ, per-paper summaries of cells "
                                   "within / outside tolerance, and figures. Prints the summary and a table of every "
                                   "stored run to stdout.")
    p.add_argument("--out", default="reports/generated", help="output folder (default reports/generated)")
    p.add_argument("--pdf", action="store_true", help="also write one PDF (<out>/report.pdf); needs no TeX")
    p.add_argument("--selection", nargs="+", choices=["last", "biased_val", "unbiased_val", "oracle"],
                   help="model-selection protocol(s), rendered side by side (default: each paper's own)")
    p.add_argument("--profile", default="any", choices=["paper", "quick", "any"],
                   help="budget profile of the runs to read (default any: paper-profile runs win where both exist)")
    p.add_argument("--spec", nargs="+", metavar="NAME", help="only these specs (e.g. lnl.table1 pgd.figure2)")
    p.add_argument("--specs-dir", help="folder of report specs (default reports/specs)")
    p.add_argument("--untagged", action="store_true", help="also read runs that carry no suite tag")
    p.add_argument("--no-reeval", action="store_true",
                   help="do not re-evaluate saved weights (LNL Figure 5 is then skipped)")
    p.add_argument("--metric", default="test.acc", help="metric of the every-run overview table (default test.acc)")
    p.add_argument("--dataset", help="overview table: only this dataset")
    p.add_argument("--data-root", help="dataset files for re-evaluations (default $BENCHMARK_DATA_ROOT, ...)")
    _add_common(p)

    p = sub.add_parser("ui", help="open the MLflow UI on the tracking store")
    p.add_argument("--tracking-uri", help="default: the embedded store")
    p.add_argument("--port", type=int, default=5000)
    _add_common(p)

    p = sub.add_parser("mirror", help="send stored records to MLflow (e.g. those MLflow missed)")
    p.add_argument("--tracking-uri")
    _add_common(p)

    p = sub.add_parser("probe", help="bias probe: how well each bias attribute can be read off a run's frozen features",
                       description="Train a fresh classifier on the frozen features f(x) of a finished run to predict "
                                   "each bias attribute; report accuracy, Blind Eye's Eq. 6 score and, against "
                                   "--baseline, its '%% unlearned' (Table 1). Result: <home>/models/<run_id>.probe.json.")
    p.add_argument("--run-id", required=True, help="stored run id (or a unique prefix)")
    p.add_argument("--baseline", metavar="RUN_ID", help="run to compute '%% unlearned' against (e.g. the vanilla run)")
    p.add_argument("--split", default="test", help="split to probe; it should be unbiased (default test)")
    p.add_argument("--epochs", type=int, default=10, help="probe training epochs (default 10)")
    p.add_argument("--max-samples", type=int, help="probe a fixed random subset of the split")
    p.add_argument("--seed", type=int, default=0, help="probe seed")
    p.add_argument("--retrain", action="store_true", help="retrain a run that kept no weights (same seed => same model)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--data-root", help="dataset files (default $BENCHMARK_DATA_ROOT, ./data, ../shared/data)")
    p.add_argument("--device", help="cpu, cuda (default: cuda if available)")
    _add_common(p)
    _add_perf_parser(sub)
    return parser


def _dataset_param_options(dataset: str) -> argparse.ArgumentParser:
    from .registry import DATASETS
    family = DATASETS.get(dataset)
    p = argparse.ArgumentParser(add_help=False)
    for f in dataclasses.fields(family.Params):
        p.add_argument(f"--{f.name.replace('_', '-')}", dest=f"param_{f.name}", metavar=f.name.upper(),
                       help=f"{f.metadata.get('help', '')} (default {f.default!r})")
    return p


def _kv(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"{what} {item!r} must look like NAME=VALUE")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _env(args) -> None:
    if getattr(args, "home", None):
        os.environ["BENCHMARK_HOME"] = args.home


def cmd_list(args) -> int:
    from .hparams import describe_fields
    from .nets import BACKBONES
    from .registry import DATASETS, METHODS, describe
    print("Methods:")
    for name, cls in METHODS.items():
        mark = " [bias labels]" if cls.uses_bias_labels else ""
        print(f"  {name:<16} {describe(cls)}{mark}")
        if args.verbose:
            for fname, default, source, help_ in describe_fields(cls.HParams):
                print(f"      {fname}={default!r}  — {help_} [{source}]")
    print("Datasets:")
    for name, cls in DATASETS.items():
        print(f"  {name:<16} {describe(cls)}")
        if args.verbose:
            for fname, default, source, help_ in describe_fields(cls.Params):
                print(f"      --{fname.replace('_', '-')}={default!r}  — {help_} [{source}]")
    print("Backbones:")
    for name, cls in BACKBONES.items():
        print(f"  {name:<16} {describe(cls)}")
    from .suites import SUITES
    print("Suites (run --suite NAME [--profile paper|quick]):")
    for name, cls in SUITES.items():
        suite = cls()
        counts = ", ".join(f"{p} {sum(1 for _ in suite.cells(p))} runs" for p in suite.profiles)
        print(f"  {name:<18} {describe(cls)} [{counts}]")
        if args.verbose:
            print(f"      data: {', '.join(suite.datasets())}; paper: {suite.paper}")
            for p, prof in suite.profiles.items():
                print(f"      {p}: {prof.source}")
            if suite.notes:
                print(f"      note: {suite.notes}")
    return 0


def cmd_run(args, extra: list[str]) -> int:
    if args.all or args.suite:
        return cmd_run_suites(args, extra)
    if not (args.method and args.dataset):
        raise UsageError("run needs --method and --dataset, or --all / --suite NAME (see `python -m benchmark list`)")
    from .engine import run
    from .registry import DATASETS, METHODS
    from .spec import make_spec
    from .store import ResultStore
    from .tracking import MLflowMirror

    METHODS.get(args.method)  # unknown names fail here, with the known ones listed
    DATASETS.get(args.dataset)
    dp, rest = _dataset_param_options(args.dataset).parse_known_args(extra)
    if rest:
        raise UsageError(f"unrecognised arguments {rest} for dataset {args.dataset!r}; "
                         f"see `python -m benchmark list -v` for its parameters")
    params = {k[len("param_"):]: v for k, v in vars(dp).items() if v is not None}
    epochs, max_train = args.epochs, args.max_train
    if args.quick:
        epochs = epochs or QUICK["epochs"]
        max_train = max_train or QUICK["max_train"]
        params = {**getattr(DATASETS.get(args.dataset), "quick_params", {}), **params}  # e.g. smaller images
    hparams = _kv(args.hparams, "--set")
    if args.quick:  # e.g. fewer epochs for a method's preparation stage; explicit --set wins
        hparams = {**METHODS.get(args.method).quick_hparams, **hparams}
    store = ResultStore(args.results_dir)
    mirror = None if args.no_mlflow else MLflowMirror(args.tracking_uri)
    try:
        specs = [make_spec(args.method, args.dataset, dataset_params=params, hparams=hparams,
                           seed=seed, epochs=epochs, max_train=max_train, backbone=args.backbone,
                           label_noise=args.label_noise,
                           pretrained=args.pretrained, precision=args.precision)
                 for seed in args.seed]
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.pack:
        return _run_packed(specs, args, store, mirror)
    for spec in specs:
        seed = spec.seed
        result = run(spec, store=store, data_root=args.data_root, device=args.device, mirror=mirror,
                     progress=not args.no_progress)
        rec = result.record
        if result.cached:
            print(f"{spec.run_id} already stored ({store.path(spec.run_id)}); nothing to do")
        test = rec["final"].get("test", {})
        print(f"{spec.run_id} {spec.method} on {spec.dataset} seed={seed}: test acc {test.get('acc', float('nan')):.4f} "
              f"(aligned {test.get('aligned_acc', float('nan')):.4f}, conflicting {test.get('conflicting_acc', float('nan')):.4f}) "
              f"in {rec['wall_time_s']:.1f}s -> {store.path(spec.run_id)}")
    return 0


def cmd_run_suites(args, extra: list[str]) -> int:
    from .data import default_home
    from .executors import LocalExecutor, SlurmExecutor, Task, assign_slots, make_settings, visible_gpus
    from .planner import make_plan, select_suites
    from .store import ResultStore

    if extra:
        raise UsageError(f"unrecognised arguments {extra}: suites set their own dataset parameters")
    if args.method or args.dataset:
        raise UsageError("--method/--dataset do not go with --all/--suite (a suite names its own runs)")
    if args.epochs or args.max_train or args.hparams or args.backbone or getattr(args, "pretrained", None) \
            or args.seed != [0]:
        raise UsageError("suites set their own budgets, seeds and hyperparameters: use --profile paper|quick")
    profile = "quick" if args.quick else args.profile
    store = ResultStore(args.results_dir)
    home = default_home()
    try:
        plan = make_plan(select_suites(None if args.all else args.suite), profile, store=store,
                         data_root=args.data_root, home=home, order=args.order, device=args.device)
    except ValueError as e:
        raise UsageError(str(e)) from None
    plan.select(args.match, args.limit)
    slots = []
    if args.executor == "local":  # SLURM jobs find their GPUs on the compute nodes
        try:
            slots = assign_slots(visible_gpus(), device=args.device, jobs_per_gpu=args.jobs_per_gpu,
                                 workers=args.workers)
        except ValueError as e:
            raise UsageError(str(e)) from None
    n_slots = len(slots) if args.executor == "local" else args.array_parallelism
    if args.dry_run:
        print(plan.render(slots=n_slots, verbose=args.verbose))
        return 0
    for line in plan.skip_lines():
        print(line, file=sys.stderr)
    todo = plan.todo
    print(f"{len(plan.runs)} run(s) planned ({profile} profile): {len(plan.cached)} cached, {len(todo)} to run"
          + ("" if todo else " — everything is cached, nothing to do"), flush=True)
    if not todo:
        return 0
    settings = make_settings(store.root, home, args.data_root, args.device, [r.spec for r in todo])
    mirror = None
    if not args.no_mlflow:
        from .tracking import MLflowMirror
        mirror = MLflowMirror(args.tracking_uri)
    if args.pack:
        todo = _run_suite_packs(todo, args, store, home, mirror)
        if not todo:
            return 0
    if args.executor == "local":
        where = ", ".join(f"{s.device}{'' if s.gpu is None else ':' + s.gpu}" for s in slots)
        print(f"local executor: {len(slots)} slot(s) [{where}], {slots[0].threads} thread(s) each", flush=True)
        executor = LocalExecutor(slots, retries=args.retries, progress=not args.no_progress)
    else:
        executor = SlurmExecutor(args.slurm_folder or home / "submitit", partition=args.partition,
                                 timeout_min=args.time, gpus_per_job=args.gpus_per_job,
                                 cpus_per_task=args.cpus_per_task, mem_gb=args.mem_gb,
                                 array_parallelism=args.array_parallelism, retries=args.retries,
                                 cluster=None if args.cluster == "auto" else args.cluster,
                                 progress=not args.no_progress)
    try:
        summary = executor.run([Task.from_planned(r) for r in todo], settings, mirror=mirror)
    except KeyboardInterrupt:
        print("\ninterrupted: finished runs are stored; rerun the same command to resume the others "
              "from their last epoch checkpoint", file=sys.stderr)
        return 130
    print(summary.render(), flush=True)
    return 1 if summary.failed else 0


# --- throughput harness (perf), see benchmark.perf ---
def _add_perf_parser(sub) -> None:
    from .perf_options import add_arguments
    p = sub.add_parser("perf", help="throughput: our engine against an official-style pipeline, side by side",
                       description="Steady-state train/eval img/s, time to first step, peak memory (GPU), packed "
                                   "runs and PGD scoring, ours against a DataLoader/PIL pipeline like the official "
                                   "code, in one process; writes reports/perf/<machine>.md.")
    add_arguments(p)


# --- packed runs (run --pack K|auto): several compatible runs as one stacked model, see benchmark.pack ---
def _add_pack_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pack", metavar="K|auto",
                   help="train up to K compatible runs (same method, backbone, budget and hyperparameters; other "
                        "seeds, dataset parameters or label noise) as one stacked model in this process; each "
                        "stores its own ordinary record. 'auto': 64 on a GPU; on a CPU 8 for networks without "
                        "convolutions, else none (packed convolutions are slower on CPUs). Methods that cannot "
                        "be packed run one by one (suites: on the executor)")


def _pack_size(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        size = int(value)
    except ValueError:
        size = 0
    if size < 1:
        raise UsageError(f"--pack {value!r}: give a pack size >= 1 or 'auto'")
    return size


def _run_packed(specs, args, store, mirror) -> int:
    from .pack import group_specs, run_pack
    for group in group_specs(specs, _pack_size(args.pack), args.device):
        results = run_pack(group, store=store, data_root=args.data_root, device=args.device, mirror=mirror,
                           progress=not args.no_progress)
        for spec, result in zip(group, results):
            test = result.record["final"].get("test", {})
            state = "already stored" if result.cached else f"pack of {result.record['tags'].get('pack_size', 1)}"
            print(f"{spec.run_id} {spec.method} on {spec.dataset} seed={spec.seed}: test acc "
                  f"{test.get('acc', float('nan')):.4f} ({state}) -> {store.path(spec.run_id)}")
    return 0


def _run_suite_packs(todo, args, store, home, mirror):
    """Run the packs of two or more runs in this process; return the planned runs left for the executor
    (runs that cannot be packed, and the runs of a pack that failed)."""
    from .pack import group_specs, run_pack
    by_id = {r.spec.run_id: r for r in todo}
    left = []
    for group in group_specs([r.spec for r in todo], _pack_size(args.pack), args.device):
        if len(group) == 1:
            left.append(by_id[group[0].run_id])
            continue
        print(f"pack of {len(group)}: {by_id[group[0].run_id].describe()} and {len(group) - 1} more", flush=True)
        try:
            run_pack(group, store=store, data_root=args.data_root, device=args.device, home=home, mirror=mirror,
                     progress=not args.no_progress, tags=[by_id[s.run_id].tags for s in group])
        except Exception as e:  # noqa: BLE001 - the executor retries these runs one by one
            print(f"pack failed ({type(e).__name__}: {e}); its runs go to the executor one by one", file=sys.stderr)
            left.extend(by_id[s.run_id] for s in group if not store.has(s.run_id))
    return left


def cmd_status(args) -> int:
    from .planner import select_suites, status_text
    from .store import ResultStore
    profiles = ["paper", "quick"] if args.profile == "all" else [args.profile]
    print(status_text(ResultStore(args.results_dir), select_suites(args.suite), profiles))
    return 0


def cmd_report(args) -> int:
    from .data import default_home
    from .references import load_references
    from .reporting import FigureContext, SpecError, build_report, load_specs, write_report
    from .reporting.build import summary_text
    from .store import ResultStore
    store = ResultStore(args.results_dir)
    try:
        specs = load_specs(args.specs_dir, args.spec)
        report = build_report(store.query(), load_references(), specs, selections=args.selection,
                              profile=args.profile, untagged=args.untagged, store=str(store.root),
                              metric=args.metric, dataset=args.dataset,
                              ctx=FigureContext(home=default_home(), data_root=args.data_root,
                                                reevaluate=not args.no_reeval))
    except (SpecError, ValueError) as e:
        raise UsageError(str(e)) from None
    written = write_report(report, args.out, pdf=args.pdf)
    print(report.overview)
    print()
    print(summary_text(report))
    print(f"wrote {len(written)} file(s) under {args.out}: report.md, summary.md, tables/, figures/, runs.csv"
          + (", report.pdf" if args.pdf else ""))
    return 0


def cmd_ui(args) -> int:
    from .tracking import default_tracking_uri
    uri = args.tracking_uri or default_tracking_uri()
    print(f"MLflow UI on http://127.0.0.1:{args.port} for {uri} (Ctrl-C stops it)")
    return subprocess.call([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
                            "--host", "127.0.0.1", "--port", str(args.port)])


def cmd_mirror(args) -> int:
    from .store import ResultStore
    from .tracking import MLflowMirror
    mirror = MLflowMirror(args.tracking_uri)
    n = sum(mirror.log_record(r) is not None for r in ResultStore(args.results_dir).records())
    print(f"mirrored {n} record(s) to {mirror.uri}")
    return 0


def cmd_probe(args) -> int:
    import json
    from .probe import ProbeConfig, format_probe, probe_run
    from .store import ResultStore
    cfg = ProbeConfig(split=args.split, epochs=args.epochs, max_samples=args.max_samples, seed=args.seed)
    try:
        result = probe_run(args.run_id, store=ResultStore(args.results_dir), data_root=args.data_root,
                           device=args.device, cfg=cfg, baseline=args.baseline, retrain=args.retrain)
    except (KeyError, FileNotFoundError) as e:
        hint = " (use --retrain)" if isinstance(e, FileNotFoundError) else ""
        raise UsageError(f"{e.args[0] if e.args else e}{hint}") from None
    print(json.dumps(result, indent=1) if args.json else format_probe(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    from ._registry import RegistryError
    from .data import DataRootError
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "run":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    _env(args)
    warnings.filterwarnings("default", category=RuntimeWarning)
    try:
        if args.command == "list":
            return cmd_list(args)
        if args.command == "run":
            return cmd_run(args, extra)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "ui":
            return cmd_ui(args)
        if args.command == "mirror":
            return cmd_mirror(args)
        if args.command == "status":
            return cmd_status(args)
        if args.command == "probe":
            return cmd_probe(args)
        if args.command == "perf":
            from .perf_options import check
            if check(args):
                raise UsageError(check(args))
            from .perf import run_cli
            return run_cli(args)
    except (UsageError, RegistryError, DataRootError) as e:
        msg = e.args[0] if isinstance(e, RegistryError) and e.args else str(e)
        print(f"error: {msg}", file=sys.stderr)
        return 2
    return 1
