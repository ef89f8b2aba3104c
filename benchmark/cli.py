"""Command line: ``python -m benchmark {list,run,status,report,ui,mirror,import,probe,reeval,sweep,perf}``."""
from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import time
import warnings

QUICK = {"epochs": 2, "max_train": 5000}  # the --quick smoke budget: minutes on a CPU


class UsageError(Exception):
    """Bad input from the user; printed without a traceback, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad option is a :class:`UsageError` (one ``error:`` line, exit status 2)."""

    hint = ""

    def error(self, message):
        raise UsageError(f"{message} (see `{self.hint or self.prog + ' --help'}`)")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results-dir", help="result store folder (default $BENCHMARK_RESULTS or results/runs)")
    p.add_argument("--home", help="working folder for caches, checkpoints, MLflow (default $BENCHMARK_HOME or .benchmark)")


def _add_training_io(p: argparse.ArgumentParser) -> None:
    """Where data comes from, where training runs, and how it is reported (run and sweep)."""
    p.add_argument("--data-root", help="dataset files (default $BENCHMARK_DATA_ROOT, ./data, ../shared/data)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or an embedded SQLite store)")
    p.add_argument("--no-mlflow", action="store_true", help="do not mirror to MLflow")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _add_suite_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("suites", "run --all / --suite NAME: expand experiment suites into runs (`list` shows them)")
    g.add_argument("--all", action="store_true", help="every registered suite whose data is present")
    g.add_argument("--suite", action="append", metavar="NAME", help="this suite (repeatable)")
    g.add_argument("--profile", choices=["paper", "quick", "demo"], default="paper",
                   help="budget: paper (the publication's epochs and hyperparameters), quick (a CPU smoke test) or "
                        "demo (minutes on a CPU, enough to show the effect; only some suites have it)")
    g.add_argument("--dry-run", action="store_true", help="print the plan (runs, cached, estimated cost) and stop")
    g.add_argument("--order", choices=["cheap", "suite"], default="cheap",
                   help="cheapest estimated runs first (default), or suite by suite in grid order")
    g.add_argument("--match", action="append", metavar="TEXT",
                   help="only runs whose description contains TEXT, e.g. --match sigma2=0.02 --match seed=0 "
                        "(repeatable: all must match; `--dry-run -v` shows descriptions)")
    g.add_argument("--limit", type=int, metavar="N", help="only the first N runs to do (after --order)")
    g.add_argument("--time-budget", metavar="DURATION",
                   help="local: run only what fits in this wall time (e.g. 9m, 1h30m): one seed of every table cell "
                        "first, then further seeds, priced from measured costs in the records; prints what it "
                        "chose and left, and never starts a run it cannot finish")
    g.add_argument("--verbose", "-v", action="store_true",
                   help="with --dry-run, show each suite's recipe, every row's effective hyperparameters and every run")
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
    parser = _Parser(prog="python -m benchmark", description=(
        "Reproducibility suite for learning from biased data. Runs land in the result store "
        "(results/runs) and are mirrored to MLflow."))
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="registered methods, datasets and backbones")
    p.add_argument("--verbose", "-v", action="store_true", help="also show every hyperparameter with its source")

    # no abbreviations: an abbreviated run option would swallow a dataset's own (--n, --data-...)
    p = sub.add_parser("run", allow_abbrev=False,
                       help="train and evaluate one method on one dataset (per seed), or whole suites",
                       description="Train and evaluate. Dataset parameters are options too: e.g. "
                                   "--dataset colored_mnist accepts --sigma2; `list -v` shows them all "
                                   "(a dataset's own seed is --data-seed; --seed is the training seed). "
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
    p.add_argument("--backbone", help="override the dataset's default backbone: a name `list` shows, or "
                   "timm:<model> for any timm model (e.g. timm:resnet18; weights only from --pretrained FILE)")
    p.add_argument("--label-noise", type=float, default=0.0, metavar="FRACTION",
                   help="flip this fraction of training labels to a wrong class (PGD App. B.3); default 0")
    p.add_argument("--rerun-stale", action="store_true",
                   help="retrain stored runs whose method, dataset or backbone code changed since they ran "
                        "(the old record is kept under <results>/_stale/)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: bfloat16 autocast of training and evaluation, meant for GPUs (part of the run id; default fp32)")
    p.add_argument("--eval-every", type=int, default=1, metavar="N",
                   help="evaluate the non-train splits every N epochs and at the last (part of the run id when "
                        "N > 1; only selection 'last' can read such a run; suites set their own); default 1, every epoch")
    p.add_argument("--pretrained", metavar="PATH", help="start the backbone from these weights: a state-dict file, "
                   "'imagenet' for torchvision's ResNet-18 in the torch hub cache, or run:RUN_ID for the final "
                   "backbone of a stored run (e.g. a vanilla baseline, LNL's official two-stage recipe); "
                   "recorded in the run spec")
    _add_training_io(p)
    _add_common(p)
    _add_suite_options(p)
    _add_pack_option(p)

    p = sub.add_parser("status", help="suites' runs: done, running (claimed), failed, to do",
                       description="Per suite and profile: runs done, stale, running (claimed), failed, to do. "
                                   "'done' = finished, tagged with the suite and profile, current code: for the "
                                   "paper profile exactly the paper evidence `report` reads (benchmark/evidence.py).")
    p.add_argument("--suite", action="append", metavar="NAME", help="only this suite (repeatable; default all)")
    p.add_argument("--profile", choices=["paper", "quick", "demo", "all"], default="all",
                   help="budget profile (default all: each suite's paper, quick and demo rows)")
    _add_common(p)

    p = sub.add_parser("report", help="tables and figures beside the papers' numbers (markdown, LaTeX, PNG/PDF; --pdf)",
                       description="Render every report spec (reports/specs/*.toml) from the result store: "
                                   "tables with ours ± std (n seeds), the paper's value and Δ, per paper 'what "
                                   "reproduces and what doesn't', and figures. Paper tables and figures read only "
                                   "paper evidence: finished runs tagged with the spec's suite and profile 'paper', "
                                   "of the current code (the rule `status` counts by). Quick, untagged and stale runs "
                                   "are listed apart ('Smoke and untagged runs — not the papers' protocol'). Prints "
                                   "the findings, the summary and the smoke runs' table to stdout.")
    p.add_argument("--out", default="reports/generated", help="output folder (default reports/generated)")
    p.add_argument("--pdf", action="store_true", help="also write one PDF (<out>/report.pdf); needs no TeX")
    p.add_argument("--selection", nargs="+", choices=["last", "biased_val", "unbiased_val", "oracle", "worst_group_val",
                                                      "align_conflict", "val_loss", "oracle_worst_group"],
                   help="model-selection protocol(s), rendered side by side (default: each paper's own)")
    p.add_argument("--spec", nargs="+", metavar="NAME", help="only these specs (e.g. lnl.table1 pgd.figure2)")
    p.add_argument("--specs-dir", action="append", default=[], metavar="DIR",
                   help="also read the report specs (*.toml) in this folder (repeatable); the built-in reports/specs "
                        "and plug-ins' specs (entry-point group benchmark.report_specs) are always read unless "
                        "--no-default-specs")
    p.add_argument("--no-default-specs", action="store_true",
                   help="read only the --specs-dir folders, not reports/specs nor plug-ins' specs")
    # --- paper evidence and the README findings block (issue 13) ---
    p.add_argument("--update-readme", action="store_true",
                   help="also rewrite README.md's findings block (between <!-- findings:begin --> and "
                        "<!-- findings:end -->) from this store")
    p.add_argument("--metric", default="test.acc",
                   help="metric of the smoke and untagged runs' table (default test.acc)")
    p.add_argument("--dataset", help="smoke and untagged runs' table: only this dataset")
    _add_html_options(p)
    _add_common(p)

    p = sub.add_parser("ui", help="open the MLflow UI on the tracking store",
                       description="Mirror the stored records MLflow lacks, then serve the MLflow UI on 127.0.0.1 "
                                   "and print the address of the newest suite's run list (one experiment per "
                                   "suite, biasbench/adhoc for runs outside a suite), opened with the key columns "
                                   "(Duration = training wall time, test.acc, test.conflicting_acc, "
                                   "test.aligned_acc, val.acc, profile, seed, epochs, paper_cell).")
    p.add_argument("--tracking-uri", help="default: the embedded store")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--suite", help="open this suite's experiment (default: the one with the newest run)")
    _add_common(p)

    p = sub.add_parser("mirror", help="send stored records to MLflow (e.g. those MLflow missed)")
    p.add_argument("--tracking-uri")
    _add_common(p)

    _add_import_parser(sub)
    _add_demo_parser(sub)

    p = sub.add_parser("probe", help="bias probe: how well each bias attribute can be read off a run's frozen features",
                       description="Train a fresh classifier on the frozen features f(x) of a finished run to predict "
                                   "each bias attribute; report accuracy, Blind Eye's Eq. 6 score and, against "
                                   "--baseline, its '%% unlearned' (Table 1). Result: <home>/models/<run_id>.probe.json, and per "
                                   "attribute beside the run in the result store (<results>/_outputs/probe/), where "
                                   "`report` reads it.")
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
    _add_sweep_parser(sub)
    _add_perf_parser(sub)
    _add_reeval_parser(sub)
    _add_export_parser(sub)
    for p in sub.choices.values():  # `run ... --debug` as well as `--debug run ...`
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the full traceback of an error")
    return parser


RUN_OPTIONS = {  # every --NAME of the run parser (a dataset parameter of that name becomes --data-NAME)
    "all", "array_parallelism", "backbone", "cluster", "cpus_per_task", "data_root", "dataset", "debug", "device",
    "dry_run", "epochs", "executor", "gpus_per_job", "help", "home", "jobs_per_gpu", "label_noise", "limit", "match",
    "max_train", "mem_gb", "method", "no_mlflow", "no_progress", "order", "partition", "pretrained", "profile",
    "quick", "rerun_stale", "results_dir", "retries", "seed", "set", "slurm_folder", "suite", "time", "time_budget",
    "tracking_uri", "verbose", "workers"}


def dataset_option(name: str) -> str:
    """The run option of dataset parameter ``name``: ``--NAME``, or ``--data-NAME`` where the run
    parser has ``--NAME`` itself (e.g. a dataset's ``seed`` is ``--data-seed``, the training seed
    ``--seed``)."""
    return "--" + ("data-" if name in RUN_OPTIONS else "") + name.replace("_", "-")


def _add_demo_parser(sub) -> None:
    p = sub.add_parser("demo", help="the main job: a few CPU minutes that show LfF's effect, beside the paper's numbers",
                       description="Runs the demo profile of suite lff.colored_mnist (vanilla and LfF, Colored MNIST "
                                   "with 1 %% bias-conflicting digits, 3 seeds x 30 epochs) exactly as `run --suite "
                                   "lff.colored_mnist --profile demo --workers 2` does, then prints minority, majority "
                                   "and unbiased accuracy beside the shipped paper-budget runs and the PGD paper's "
                                   "Table 1 cell. Finished runs are reused.")
    p.add_argument("--workers", type=int, default=2, help="local worker processes (default 2)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    _add_training_io(p)
    _add_common(p)


def cmd_demo(args) -> int:
    from .demo import SUITE, demo_table, paper_budget_cost
    from .references import load_references
    from .store import ResultStore
    argv = ["run", "--suite", SUITE, "--profile", "demo", "--workers", str(args.workers)]
    for name in ("results_dir", "home", "data_root", "device", "tracking_uri"):
        if getattr(args, name):
            argv += ["--" + name.replace("_", "-"), getattr(args, name)]
    argv += [f for f, on in (("--dry-run", args.dry_run), ("--no-mlflow", args.no_mlflow),
                             ("--no-progress", args.no_progress)) if on]
    run_args, extra = build_parser().parse_known_args(argv)
    rc = cmd_run(run_args, extra)
    if rc or args.dry_run:
        return rc
    frame = ResultStore(args.results_dir).query()
    from .provenance import mark_stale
    frame = mark_stale(frame)
    print()
    print(demo_table(frame, load_references()))
    print(f"The paper-budget version: `python -m benchmark run --suite {SUITE}` (all four ratios, 3 seeds, 100 "
          f"epochs): {paper_budget_cost(frame)}. `python -m benchmark report` puts it beside the papers.")
    return 0


def _add_import_parser(sub) -> None:
    p = sub.add_parser("import", help="merge records made elsewhere (e.g. a GPU machine without MLflow) into the store",
                       description="Check and merge result records from other machines: every *.json directly under "
                                   "each DIR, or inside a .tar.gz such as scripts/gpu-window.sh writes. A record must "
                                   "carry its spec, and its run id must be the hash of that spec; one whose run id is "
                                   "stored with a different spec or final metrics is refused (the stored one stays), "
                                   "an identical one is skipped. Added records are mirrored to MLflow. Post-run outputs "
                                   "(re-evaluations, probes: _outputs/<step>/ beside the records) come along for the "
                                   "records stored.")
    p.add_argument("sources", nargs="+", metavar="DIR", help="folder of records or .tar.gz archive of them")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or the embedded store)")
    p.add_argument("--no-mlflow", action="store_true", help="do not mirror the added records to MLflow")
    _add_common(p)


def cmd_import(args) -> int:
    from .importer import describe, import_records
    from .store import ResultStore
    store = ResultStore(args.results_dir)
    mirror = None
    if not args.no_mlflow:
        from .tracking import MLflowMirror
        mirror = MLflowMirror(args.tracking_uri)
    try:
        result = import_records(args.sources, store, mirror=mirror)
    except FileNotFoundError as e:
        raise UsageError(f"{e}; give folders of records (e.g. gpu-out/runs) or their .tar.gz") from None
    for rec in result.added:
        print(f"added {describe(rec)}")
    for line in result.refused:
        print(f"error: refused {line}", file=sys.stderr)
    print(f"imported {len(result.added)} record(s) into {store.root}; {len(result.identical)} already stored; "
          f"{len(result.refused)} refused"
          + ("" if mirror is None else f"; mirrored {result.mirrored} to MLflow at {mirror.uri}"))
    if result.outputs or result.outputs_skipped:  # post-run outputs (reeval, probe) that came with the records
        print(f"stored {result.outputs} post-run output(s) beside their records; {len(result.outputs_skipped)} "
              "skipped (not computed from a record stored here)")
    return 1 if result.refused else 0


def _add_sweep_parser(sub) -> None:
    p = sub.add_parser(
        "sweep", help="hyperparameter sweep of a suite (random search), selection across runs, recipe export",
        description="Random search over each method's declared hyperparameter spaces: every method × setting of "
                    "the suite runs with --hparam-seeds draws (hparams_seed 0 = the suite's recipe) × --trials "
                    "training seeds. Each trial is an ordinary cached run (kill and rerun to resume; nothing is "
                    "repeated). --report prints methods × selection rules: the test worst-group accuracy at the "
                    "hyperparameters and epoch each rule selects, mean ± std over training seeds. --export FILE "
                    "writes the selected hyperparameters as a suite recipe (.json or .toml).")
    p.add_argument("--trials", type=int, metavar="N",
                   help="training seeds per hyperparameter draw: 0..N-1 (default: the profile's seeds)")
    p.add_argument("--hparam-seeds", type=int, default=1, metavar="M",
                   help="hyperparameter draws per method: hparams_seed 0..M-1, 0 = the suite's recipe (default 1)")
    p.add_argument("--report", action="store_true", help="print the selection table from the stored runs (runs nothing)")
    p.add_argument("--rules", nargs="+", metavar="RULE",
                   help="selection rules of the report (default: biased_val unbiased_val worst_group_val "
                        "align_conflict val_loss oracle_worst_group)")
    p.add_argument("--metric", default="test.worst_group_acc",
                   help="test metric read at the selected epoch (default test.worst_group_acc)")
    p.add_argument("--export", metavar="FILE", help="write the hyperparameters --export-rule selects (.json or .toml)")
    p.add_argument("--export-rule", default="worst_group_val", help="selection rule of --export (default worst_group_val)")
    p.add_argument("--out", metavar="FILE", help="with --report: also write the table (markdown) to FILE")
    _add_training_io(p)
    _add_common(p)
    _add_suite_options(p)


def cmd_sweep(args) -> int:
    from .data import default_home
    from .executors import assign_slots, make_settings, visible_gpus
    from .planner import select_suites
    from .selection import STRATEGIES
    from .store import ResultStore
    from . import sweep

    if not (args.suite or args.all):
        raise UsageError("sweep needs --suite NAME (or --all); `python -m benchmark list` shows the suites")
    rules = tuple(args.rules or sweep.SWEEP_RULES)
    for rule in rules + (args.export_rule,):
        if rule not in STRATEGIES or rule == "last":
            raise UsageError(f"unknown selection rule {rule!r}; known: {', '.join(r for r in STRATEGIES if r != 'last')}")
    store = ResultStore(args.results_dir)
    home = default_home()
    try:
        plan = sweep.plan_sweep(select_suites(None if args.all else args.suite), args.profile, args.hparam_seeds,
                                args.trials, store=store, data_root=args.data_root, home=home, order=args.order,
                                device=args.device, check_data=not (args.report or args.export))
    except (ValueError, KeyError) as e:
        raise UsageError(str(e.args[0] if e.args else e)) from None
    plan.select(args.match, args.limit)
    if args.report or args.export:
        table = sweep.select_table(plan, store, rules, args.metric)
        if args.report:
            text = sweep.render_table(table)
            print(text)
            if args.out:
                from pathlib import Path
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                Path(args.out).write_text(text + "\n")
        if args.export:
            export_table = table if args.export_rule in rules else sweep.select_table(plan, store, (args.export_rule,), args.metric)
            try:
                path = sweep.write_export(sweep.export_recipe(export_table, plan, store, args.export_rule), args.export)
            except ValueError as e:
                raise UsageError(str(e)) from None
            print(f"wrote the hyperparameters selected by {args.export_rule} to {path}")
        return 0
    slots = []
    if args.executor == "local":
        try:
            slots = assign_slots(visible_gpus(), device=args.device, jobs_per_gpu=args.jobs_per_gpu, workers=args.workers)
        except ValueError as e:
            raise UsageError(str(e)) from None
    if args.dry_run:
        print(plan.render(slots=len(slots) if slots else args.array_parallelism, verbose=args.verbose))
        return 0
    for line in plan.skip_lines():
        print(line, file=sys.stderr)
    todo = sweep.tasks(plan)
    print(f"sweep: {len(plan.runs)} run(s) ({args.hparam_seeds} hyperparameter draw(s) × seeds, {args.profile} profile): "
          f"{len(plan.cached)} cached, {len(todo)} to run", flush=True)
    if not todo:
        return 0
    settings = make_settings(store.root, home, args.data_root, args.device, [t.spec for t in todo])
    mirror = None if args.no_mlflow else _mirror(args.tracking_uri)  # synced after the trials, off their path
    executor = _make_executor(args, slots, home)
    try:
        summary = executor.run(todo, settings, mirror=mirror)
    except KeyboardInterrupt:
        print("\ninterrupted: finished trials are stored; rerun the same command to resume the others",
              file=sys.stderr)
        return 130
    if mirror is not None:  # records MLflow lacks (stored before this sweep, or by a worker killed before it reported)
        _sync(mirror, store)
    print(summary.render(), flush=True)
    return 1 if summary.failed else 0


def _dataset_param_options(dataset: str) -> argparse.ArgumentParser:
    from .registry import DATASETS
    family = DATASETS.get(dataset)
    p = _Parser(prog=f"run --dataset {dataset}", add_help=False, allow_abbrev=False)
    p.hint = "python -m benchmark list -v"
    for f in dataclasses.fields(family.Params):
        p.add_argument(dataset_option(f.name), dest=f"param_{f.name}", metavar=f.name.upper(),
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
    from .catalogue import load
    cat = load()  # plain data about the plug-ins; imports them (and torch) only after a code change
    print("Methods:")
    for m in cat["methods"]:
        mark = " [bias labels]" if m["bias_labels"] else ""
        print(f"  {m['name']:<16} {m['doc']}{mark}")
        if args.verbose:
            for fname, default, source, help_ in m["fields"]:
                print(f"      {fname}={default}  — {help_} [{source}]")
    print("Datasets:")
    for d in cat["datasets"]:
        print(f"  {d['name']:<16} {d['doc']}")
        if args.verbose:
            for fname, default, source, help_ in d["fields"]:
                print(f"      {dataset_option(fname)}={default}  — {help_} [{source}]")
    print("Backbones:")
    for b in cat["backbones"]:
        print(f"  {b['name']:<16} {b['doc']}")
    print(f"  {'timm:<model>':<16} any timm model by name, e.g. --backbone timm:resnet18 (random weights, or "
          "--pretrained FILE; nothing is downloaded)")
    print("Suites (run --suite NAME [--profile paper|quick]):")
    for s in cat["suites"]:
        counts = ", ".join(f"{p} {n} runs" for p, n in s["counts"].items())
        print(f"  {s['name']:<18} {s['doc']} [{counts}]")
    if args.verbose:
        from .recipes import RECIPES
        print("Recipes (a paper's shared training settings; `run --suite S --dry-run -v` shows each row's):")
        for recipe in RECIPES.values():
            print("  " + recipe.describe().replace("\n", "\n  "))
    if cat.get("broken"):
        print("Broken plug-ins (not usable until fixed or uninstalled; everything else works):")
        for msg in cat["broken"]:
            print(f"  {msg}")
        if args.verbose:
            print(f"      data: {', '.join(s['datasets'])}; paper: {s['paper']}")
            for p, source in s["sources"].items():
                print(f"      {p}: {source}")
            if s["notes"]:
                print(f"      note: {s['notes']}")
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
    try:
        specs = [make_spec(args.method, args.dataset, dataset_params=params, hparams=hparams,
                           seed=seed, epochs=epochs, max_train=max_train, backbone=args.backbone,
                           label_noise=args.label_noise,
                           pretrained=args.pretrained, precision=args.precision, eval_every=args.eval_every)
                 for seed in args.seed]
    except ValueError as e:
        raise UsageError(str(e)) from None
    _preflight(args, store, specs)
    mirror = None if args.no_mlflow else _synced_mirror(args.tracking_uri, store)
    if args.pack:
        return _run_packed(specs, args, store, mirror)
    for spec in specs:
        seed = spec.seed
        _retire_if_stale(store, spec.run_id, args.rerun_stale)
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


def _retire_if_stale(store, run_id: str, rerun_stale: bool) -> None:
    """With ``--rerun-stale``, move a stored record whose code changed out of the way (kept under
    ``_stale/``); without it, say that the stored record is stale."""
    from .provenance import stale_reason
    if not store.has(run_id):
        return
    reason = stale_reason(store.get(run_id))
    if reason is None:
        return
    if rerun_stale:
        print(f"{run_id} is stale ({reason}): retraining; old record kept at {store.retire(run_id, reason)}")
    else:
        print(f"warning: stored record {run_id} is stale ({reason}); --rerun-stale retrains it", file=sys.stderr)


def cmd_run_suites(args, extra: list[str]) -> int:
    from .paths import default_home
    from .executors import (Task, assign_slots, make_settings, prestart, tidy_finished,
                            visible_gpus)
    from .planner import format_duration, make_plan, select_suites
    from .store import ResultStore

    t_start = time.time()  # a --time-budget counts from here (planning included)
    if extra:
        raise UsageError(f"unrecognised arguments {extra}: suites set their own dataset parameters")
    if args.method or args.dataset:
        raise UsageError("--method/--dataset do not go with --all/--suite (a suite names its own runs)")
    if args.epochs or args.max_train or args.hparams or args.backbone or getattr(args, "pretrained", None) \
            or args.seed != [0]:
        raise UsageError("suites set their own budgets, seeds and hyperparameters: use --profile paper|quick")
    for name in ("workers", "jobs_per_gpu", "retries", "limit", "time", "gpus_per_job", "array_parallelism"):
        value = getattr(args, name)
        low = 0 if name in ("retries", "gpus_per_job") else 1
        if value is not None and value < low:
            raise UsageError(f"--{name.replace('_', '-')} must be >= {low}, got {value}")
    profile = "quick" if args.quick else args.profile
    if args.executor == "local" and not args.dry_run:
        prestart()  # the workers' imports overlap planning
    store = ResultStore(args.results_dir)
    home = default_home()
    try:
        plan = make_plan(select_suites(None if args.all else args.suite), profile, store=store,
                         data_root=args.data_root, home=home, order=args.order, device=args.device,
                         rerun_stale=args.rerun_stale)
    except ValueError as e:
        raise UsageError(str(e)) from None
    n_planned = len(plan.runs)
    plan.select(args.match, args.limit)
    if args.match and n_planned and not plan.runs:
        raise UsageError(f"none of the {n_planned} planned run(s) matches --match {' --match '.join(args.match)}; "
                         "`--dry-run -v` lists their descriptions (e.g. 'vanilla on', 'seed=0')")
    if not args.dry_run:  # before any training: writable folders, device, weights, data
        pending = {r.run_id for r in plan.todo}  # a base the plan trains first is checked when its turn comes
        _preflight(args, store, [r.spec for r in plan.todo if r.after not in pending])
        _check_plan_data(plan, explicit=not args.all)
        _check_settings_data(plan.todo, args.data_root, home)
    slots = []
    if args.executor == "local":  # SLURM jobs find their GPUs on the compute nodes
        try:
            slots = assign_slots(visible_gpus(), device=args.device, jobs_per_gpu=args.jobs_per_gpu,
                                 workers=args.workers)
        except ValueError as e:
            raise UsageError(str(e)) from None
    n_slots = len(slots) if args.executor == "local" else args.array_parallelism
    budget, deadline = _fit_budget(args, plan, n_slots, t_start) if args.time_budget else (None, None)
    if args.dry_run:
        print(plan.render(slots=n_slots, verbose=args.verbose))
        if budget is not None:
            print(budget.render(verbose=args.verbose))
        return 0
    for line in plan.skip_lines():
        print(line, file=sys.stderr)
    todo = plan.todo
    if not args.dry_run:
        tidy_finished(store.root, home)  # leftovers of a process killed right after storing
    mirror = None if args.no_mlflow else _mirror(args.tracking_uri)  # synced after the runs, off their path
    admit = None
    if budget is not None:
        print(budget.render(verbose=args.verbose), flush=True)
        todo = budget.runs
        admit = _budget_admission(args, plan, store, deadline)
    est, unknown = plan.estimate_s(todo)
    eta = (f"; estimated {format_duration(est / max(1, min(n_slots, len(todo))))} on {n_slots} slot(s)"
           + (f" (+{unknown} run(s) without an estimate)" if unknown else "")) if todo and est else ""
    print(f"{len(plan.runs)} run(s) planned ({profile} profile): {len(plan.cached)} cached, {len(plan.todo)} to run"
          + (f", {len(todo)} within the time budget" if budget is not None else "") + eta
          + ("" if plan.todo else " — everything is cached, nothing to do"), flush=True)
    if not todo:
        if mirror is not None:
            _sync(mirror, store)
        return 0
    for r in todo:
        if r.stale and store.has(r.run_id):
            print(f"{r.run_id} is stale ({r.stale}): retraining; old record kept at {store.retire(r.run_id, r.stale)}")
    settings = make_settings(store.root, home, args.data_root, args.device, [r.spec for r in todo])
    trained = {r.run_id for r in todo}  # packed ones included: their re-evaluation follows too
    suites = sorted({r.tags["suite"] for r in todo})
    if args.pack:  # runs that start from another run's weights are not packed (they wait for their base)
        starts = [r for r in todo if r.spec.pretrained]
        todo = _run_suite_packs([r for r in todo if not r.spec.pretrained], args, store, home, mirror) + starts
        if not todo:
            if mirror is not None:
                _sync(mirror, store)
            _reeval_after_run(args, store, trained, suites)
            return 0
    if args.executor == "local":
        where = ", ".join(f"{s.device}{'' if s.gpu is None else ':' + s.gpu}" for s in slots)
        print(f"local executor: {len(slots)} slot(s) [{where}], {slots[0].threads} thread(s) each", flush=True)
    executor = _make_executor(args, slots, home, admit)
    failed = 0
    for wave in plan.waves(todo):  # runs that start from another run's weights go after it
        ready = [r for r in wave if r.after is None or store.has(r.after)]
        for r in wave:
            if r not in ready:
                print(f"skipped {r.run_id} ({r.describe()}): it starts from run {r.after}, which is not stored",
                      file=sys.stderr)
                failed += 1
        try:
            summary = executor.run([Task.from_planned(r) for r in ready], settings, mirror=mirror)
        except KeyboardInterrupt:
            print("\ninterrupted: finished runs are stored; rerun the same command to resume the others "
                  "from their last epoch checkpoint", file=sys.stderr)
            return 130
        tidy_finished(store.root, home)
        if mirror is not None:  # e.g. a record stored by a worker killed before it reported back, or before this run
            _sync(mirror, store)
        print(summary.render(), flush=True)
        failed += len(summary.failed)
    _reeval_after_run(args, store, trained, suites)
    return 1 if failed else 0


def _make_executor(args, slots, home, admit=None):
    """The local executor on ``slots``, or SLURM through submitit, from the suite options."""
    from .executors import LocalExecutor, SlurmExecutor
    if args.executor == "local":
        return LocalExecutor(slots, retries=args.retries, progress=not args.no_progress, admit=admit)
    return SlurmExecutor(args.slurm_folder or home / "submitit", partition=args.partition,
                         timeout_min=args.time, gpus_per_job=args.gpus_per_job,
                         cpus_per_task=args.cpus_per_task, mem_gb=args.mem_gb,
                         array_parallelism=args.array_parallelism, retries=args.retries,
                         cluster=None if args.cluster == "auto" else args.cluster,
                         progress=not args.no_progress)


def _preflight(args, store, specs) -> None:
    """Before any training: the store and --home can be written, --device exists, every
    --pretrained resolves (see :mod:`benchmark.preflight`)."""
    from .data import default_home
    from .preflight import check_device, check_pretrained, check_writable
    check_writable(store.root, "the result store", "choose another with --results-dir or $BENCHMARK_RESULTS, "
                                                   "or make it writable")
    check_writable(default_home(), "the working folder (--home)", "choose another with --home or $BENCHMARK_HOME, "
                                                                 "or make it writable")
    check_device(args.device)
    check_pretrained(specs, default_home())


def _check_plan_data(plan, explicit: bool) -> None:
    """A suite named with --suite must be plannable in full (its data present, its plug-ins
    registered); with --all, skipped suites are reported, but an empty plan is an error."""
    if not plan.skipped:
        return
    if explicit or not plan.runs:
        first = plan.skip_lines()
        raise UsageError(f"{first[0]}" + (f" (and {len(first) - 1} more)" if len(first) > 1 else "")
                         + "; put the files in place (--data-root or $BENCHMARK_DATA_ROOT) or leave that suite out "
                           "(`run --suite NAME --dry-run -v` shows the plan)")


def _check_settings_data(todo, data_root, home) -> None:
    """Every planned setting can be built: per dataset, one setting that is not cached yet is built
    here (which warms the cache the runs read); a missing or damaged file stops the command before
    any training."""
    from .planner import cache_file, data_problem
    first_uncached = {}
    for r in todo:
        spec = r.spec
        if spec.dataset not in first_uncached and not cache_file(spec.dataset, spec.dataset_params, home).is_file():
            first_uncached[spec.dataset] = spec.dataset_params
    for dataset, params in first_uncached.items():
        problem = data_problem(dataset, params, data_root, home)
        if problem:
            raise UsageError(f"{problem}; put the files in place (--data-root or $BENCHMARK_DATA_ROOT) or leave "
                             "those runs out (--match, --suite)")


def _mirror(uri):
    """An MLflow mirror (nothing is sent yet; see :func:`_sync`)."""
    from .tracking import MLflowMirror
    return MLflowMirror(uri)


def _sync(mirror, store) -> None:
    """Send every stored record MLflow lacks (one warning if MLflow is down; the run goes on)."""
    result = mirror.sync(store)
    if result.sent:
        print(f"mirrored {len(result.sent)} stored record(s) MLflow lacked to {mirror.uri}", file=sys.stderr)


def _synced_mirror(uri, store):
    """An MLflow mirror that has sent every stored record MLflow lacks."""
    mirror = _mirror(uri)
    _sync(mirror, store)
    return mirror


def _fit_budget(args, plan, n_slots: int, t_start: float):
    """(the runs that fit in what is left of ``--time-budget`` after planning, the deadline)."""
    from .budget import fit, parse_duration
    from .paths import default_home
    if args.executor != "local":
        raise UsageError("--time-budget needs the local executor (SLURM jobs have --time)")
    try:
        seconds = parse_duration(args.time_budget)
    except ValueError as e:
        raise UsageError(str(e)) from None
    left = seconds - (time.time() - t_start)
    return fit(plan, left, slots=n_slots, order=args.order, home=default_home()), t_start + seconds


def _budget_admission(args, plan, store, deadline: float):
    """Before each run starts, re-price it from the records stored so far (those of this window
    included) and start it only if it ends before ``deadline``."""
    from .budget import admission
    from .costs import estimate
    from .paths import default_home

    def price(run):
        estimate([run], store, args.device, default_home())
        return run.estimate_s

    return admission(deadline, price, {r.run_id: r for r in plan.runs}, home=default_home())


# --- throughput harness (perf), see benchmark.perf ---
def _add_perf_parser(sub) -> None:
    from .perf_options import add_arguments
    p = sub.add_parser("perf", help="throughput: our engine against an official-style pipeline, side by side",
                       description="Steady-state train/eval img/s, time to first step, peak memory (GPU), packed "
                                   "runs and PGD scoring, ours against a DataLoader/PIL pipeline like the official "
                                   "code, in one process; writes reports/perf/<machine>.md.")
    add_arguments(p)


# --- export: the result store as one Parquet file, see benchmark.export ---
def _add_export_parser(sub) -> None:
    p = sub.add_parser("export", help="the result store as one Parquet file (pandas, polars, DuckDB, HF datasets)",
                       description="Write every stored record as one row of a Parquet file: spec, dataset "
                                   "parameters (p.*), hyperparameters (hp.*), tags (tag.*), final metrics "
                                   "(<split>.<metric>) and the whole JSON record. Load it with "
                                   "pandas.read_parquet(FILE) or datasets.load_dataset('parquet', data_files=FILE).")
    p.add_argument("--parquet", required=True, metavar="FILE", help="file to write (must not exist yet)")
    _add_common(p)


def cmd_export(args) -> int:
    from .export import export_parquet
    from .store import ResultStore
    from pathlib import Path
    out = Path(args.parquet)
    if out.exists():
        raise UsageError(f"--parquet {out}: the file exists; name a new file (or delete that one first)")
    if not out.parent.is_dir():
        raise UsageError(f"--parquet {out}: no folder {out.parent}; create it first")
    store = ResultStore(args.results_dir)
    n = export_parquet(store, out)
    print(f"wrote {n} run(s) from {store.root} to {out}")
    return 0


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
    profiles = ["paper", "quick", "demo"] if args.profile == "all" else [args.profile]
    print(status_text(ResultStore(args.results_dir), select_suites(args.suite), profiles))
    return 0


def cmd_report(args) -> int:
    from pathlib import Path

    from .references import load_references
    from .reporting import SpecError, build_report, load_specs, write_report
    from .provenance import mark_stale
    from .reporting.build import readme_block, summary_text, update_readme
    from .store import ResultStore
    store = ResultStore(args.results_dir)
    for folder in args.specs_dir:
        if not os.path.isdir(folder):
            raise UsageError(f"--specs-dir {folder}: no such folder; name a folder of report specs (*.toml)")
    if args.no_default_specs and not args.specs_dir:
        raise UsageError("--no-default-specs needs at least one --specs-dir DIR to read specs from")
    readme = Path(__file__).resolve().parents[1] / "README.md"
    if args.update_readme and (args.spec or args.specs_dir or args.selection or args.no_default_specs):
        raise UsageError("--update-readme writes the README's summary of every built-in spec under its own "
                         "protocol: drop --spec, --specs-dir, --no-default-specs and --selection")
    if args.update_readme and not readme.is_file():
        raise UsageError(f"--update-readme: no README.md at {readme} (it needs a source checkout: pip install -e .)")
    try:
        specs = load_specs(args.specs_dir, args.spec, defaults=not args.no_default_specs)
        runs = mark_stale(store.query())
        report = build_report(runs, load_references(), specs, selections=args.selection,
                              store=str(store.root), metric=args.metric, dataset=args.dataset)
        changed = update_readme(readme, readme_block(report)) if args.update_readme else None
    except (SpecError, ValueError) as e:
        raise UsageError(str(e)) from None
    written = write_report(report, args.out)
    if args.pdf:
        from .reporting.pdf import write_pdf
        written.append(write_pdf(report, os.path.join(args.out, "report.pdf")))
    if args.html:
        written += _write_dashboard(report, runs, args)
    print(summary_text(report))
    print("## Smoke and untagged runs — not the papers' protocol\n")
    print(report.overview)
    print()
    if changed is not None:
        print(f"README.md findings block {'rewritten' if changed else 'already up to date'} ({readme})")
    print(f"wrote {len(written)} file(s) under {args.out}: report.md, summary.md, tables/, figures/, runs.csv"
          + (", report.pdf" if args.pdf else "") + (", site/ (open site/index.html)" if args.html else ""))
    return 0


# ------------------------------------------------------------------------- report --html: the dashboard
def _add_html_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--html", action="store_true",
                   help="also write the reproduction dashboard, a static web site: <out>/site/index.html (per paper "
                        "the summary, per artefact the table coloured by the gap, per run its spec, code version, "
                        "curves and MLflow link); open it in a browser, no server needed")
    p.add_argument("--tracking-uri", help="with --html: MLflow store whose runs the run pages link to (default "
                   "$MLFLOW_TRACKING_URI or the embedded SQLite store; not created when absent)")


def _write_dashboard(report, runs, args) -> list:
    from .reporting.html import SiteError, locate_in_mlflow, write_site
    from .tracking import default_tracking_uri
    read = list(report.provenance["run_id"]) if not report.provenance.empty else []
    mlflow = locate_in_mlflow(args.tracking_uri or default_tracking_uri(), read)
    try:
        return write_site(report, args.out, runs, mlflow)
    except SiteError as e:
        raise UsageError(str(e)) from None


def cmd_ui(args) -> int:
    import signal

    from .store import ResultStore
    from .tracking import experiment_url
    base = f"http://127.0.0.1:{args.port}"
    mirror = _synced_mirror(args.tracking_uri, ResultStore(args.results_dir))
    experiments = _ui_experiments(mirror)
    chosen = [e for e in experiments if args.suite in (None, e.name.split("/", 1)[1])]
    if args.suite and not chosen:
        known = ", ".join(e.name.split("/", 1)[1] for e in experiments) or "none yet"
        raise UsageError(f"no MLflow experiment for suite {args.suite!r} (experiments: {known}); run the suite or "
                         "leave --suite out")
    url = experiment_url(base, chosen[0].experiment_id if chosen else None)
    print(f"MLflow UI on {url} for {mirror.uri} (Ctrl-C stops it)", flush=True)
    for e in experiments:
        print(f"  {e.name}: {e.runs} run(s)  {experiment_url(base, e.experiment_id)}", flush=True)
    # its own process group, so stopping `ui` (Ctrl-C, SIGTERM) stops the server and its workers
    child = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", mirror.uri,
                              "--host", "127.0.0.1", "--port", str(args.port), "--workers", "1"],
                             start_new_session=True)  # one local user: one worker (MLflow's default is 4)

    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return child.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()



def _ui_experiments(mirror) -> list:
    """The mirror's experiments, newest first (none if MLflow cannot be read: the UI still starts)."""
    try:
        return mirror.experiments()
    except Exception as e:  # noqa: BLE001 - the server itself will say what is wrong
        print(f"warning: could not list the MLflow experiments at {mirror.uri} ({type(e).__name__})", file=sys.stderr)
        return []


def cmd_mirror(args) -> int:
    from .store import ResultStore
    from .tracking import MLflowMirror
    mirror = MLflowMirror(args.tracking_uri)
    result = mirror.sync(ResultStore(args.results_dir))
    print(f"mirrored {len(result.sent)} record(s) to {mirror.uri}; {len(result.present)} already there, "
          f"{len(result.failed)} failed")
    if result.failed:
        raise UsageError(f"{len(result.failed)} record(s) not mirrored to {mirror.uri} (the warning above says why); "
                         "the records are safe in the result store: fix MLflow (--tracking-uri) and rerun `mirror`")
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


def _format_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    """The CLI's one error boundary: an expected failure (bad input, missing data, an unwritable
    folder, a broken plug-in) is one ``error:`` line and exit status 2; anything else one line
    naming the exception and status 1; ``--debug`` (or ``$BENCHMARK_DEBUG=1``) re-raises with the
    traceback. A closed stdout (``list | head``) ends quietly."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv or os.environ.get("BENCHMARK_DEBUG", "") not in ("", "0")
    warnings.filterwarnings("default", category=RuntimeWarning)
    warnings.formatwarning = _format_warning
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra and args.command != "run":
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        _env(args)
        return _dispatch(args, extra)
    except BrokenPipeError:
        try:  # the reader went away (`list | head`): say nothing, and keep Python from complaining at exit
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 0
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted: stored records are safe; rerun the same command to go on", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the boundary: no raw tracebacks unless --debug
        if debug:
            raise
        print(f"error: {_error_message(e)}", file=sys.stderr)
        return 2 if _expected(e) else 1


def _expected(e: BaseException) -> bool:
    from ._registry import RegistryError
    from .data import DataRootError, DatasetContractError
    from .preflight import PreflightError
    return isinstance(e, (UsageError, RegistryError, DataRootError, DatasetContractError, PreflightError))


def _error_message(e: BaseException) -> str:
    from ._registry import RegistryError
    if _expected(e):
        return e.args[0] if isinstance(e, RegistryError) and e.args else str(e)
    if isinstance(e, OSError):
        return f"{e} ({type(e).__name__}); check the path and its permissions (--debug shows the traceback)"
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {first} (unexpected; rerun with --debug for the traceback)"


def _dispatch(args, extra: list[str]) -> int:
    commands = {"list": cmd_list, "report": cmd_report, "ui": cmd_ui, "mirror": cmd_mirror, "status": cmd_status,
                "probe": cmd_probe, "import": cmd_import, "sweep": cmd_sweep, "perf": cmd_perf,
                "demo": cmd_demo, "reeval": cmd_reeval, "export": cmd_export}
    if args.command == "run":
        return cmd_run(args, extra)
    return commands[args.command](args)


def cmd_perf(args) -> int:
    from .perf_options import check
    problem = check(args)
    if problem:
        raise UsageError(problem)
    from .perf import run_cli
    return run_cli(args)


# --- post-run re-evaluations (reeval), see benchmark.reeval ---
def _add_reeval_parser(sub) -> None:
    p = sub.add_parser("reeval", help="re-evaluate finished runs' kept weights on re-coloured test sets "
                                      "(LNL Figure 5, PGD Table 12), stored beside the runs",
                       description="Test the final weights of finished runs (<home>/models/<run_id>.pt) on test "
                                   "sets their dataset re-colours (DatasetFamily.recoloured_test): per fixed mean "
                                   "colour (LNL Figure 5's confusion matrices, colored_mnist) and with uniform "
                                   "random colours (PGD Table 12, colored_mnist_ratio). Outputs are stored in the "
                                   "result store, <results>/_outputs/reeval/<run_id>.<name>.json, where `report` "
                                   "reads them. Without --run-id: the runs the report specs read these from "
                                   "(of --suite, default every suite), stale records left out. `run --suite` does this "
                                   "at its end for the runs it trained.")
    p.add_argument("--suite", action="append", metavar="NAME", help="only runs tagged with this suite (repeatable)")
    p.add_argument("--run-id", action="append", metavar="ID",
                   help="this stored run (id or unique prefix; repeatable): every re-evaluation its dataset has")
    p.add_argument("--name", action="append", metavar="NAME",
                   help="only this re-evaluation (repeatable): random_colour, fixed_colour_confusion")
    p.add_argument("--force", action="store_true", help="compute again even where an output is stored")
    p.add_argument("--specs-dir", help="folder of report specs that say which runs need what (default reports/specs)")
    p.add_argument("--data-root", help="dataset files (default $BENCHMARK_DATA_ROOT, ./data, ../shared/data)")
    p.add_argument("--device", help="cpu, cuda (default: cuda if available)")
    _add_common(p)


def _reeval_todo(args, store) -> dict[str, set[str]]:
    from .probe import resolve_run_id
    from .reeval import wanted
    from .reporting import SpecError, load_specs
    from .reporting.reevaluated import NAMES
    unknown = sorted(set(args.name or ()) - set(NAMES))
    if unknown:
        raise UsageError(f"--name {', '.join(unknown)}: no such re-evaluation; known: {', '.join(sorted(NAMES))}")
    if args.specs_dir and not os.path.isdir(args.specs_dir):
        raise UsageError(f"--specs-dir {args.specs_dir}: no such folder (the default is reports/specs)")
    try:
        run_ids = [resolve_run_id(store, r) for r in args.run_id or ()]
    except KeyError as e:
        raise UsageError(f"{e.args[0]}; `python -m benchmark status` lists the stored runs") from None
    try:
        specs = [] if run_ids else load_specs(args.specs_dir)
    except SpecError as e:
        raise UsageError(str(e)) from None
    from .provenance import mark_stale
    runs = mark_stale(store.query())  # once; report specs read paper evidence only, never a stale record
    todo = wanted(runs, specs, suites=args.suite, run_ids=run_ids, names=args.name)
    for rid in run_ids:
        if not todo.get(rid):
            raise UsageError(f"run {rid}: no re-evaluation applies to its dataset"
                             + (f" among {', '.join(args.name)}" if args.name else "")
                             + " (random_colour: colored_mnist_ratio; fixed_colour_confusion: colored_mnist)")
    return todo


def cmd_reeval(args) -> int:
    from .paths import default_home
    from .reeval import reevaluate
    from .store import ResultStore
    store = ResultStore(args.results_dir)
    todo = _reeval_todo(args, store)
    if not todo:
        print("nothing to re-evaluate: no stored run" + (f" of suite {', '.join(args.suite)}" if args.suite else "")
              + " is read by a re-evaluated table or figure")
        return 0
    summary = reevaluate(store, todo, home=default_home(), data_root=args.data_root, device=args.device,
                         force=args.force)
    print(summary.render())
    if summary.failed:
        print(f"weights are read from {default_home() / 'models'}: give the --home the runs trained in",
              file=sys.stderr)
    return 1 if summary.failed else 0


def _reeval_after_run(args, store, run_ids: set[str], suites: list[str]) -> None:
    """After a suite run: store the re-evaluations its suites' report specs read from the runs it
    trained (a failure is reported, not fatal: `reeval` retries)."""
    from .reeval import reevaluate, wanted
    from .reporting import SpecError, load_specs
    try:
        todo = {r: n for r, n in wanted(store.query(), load_specs(), suites=suites).items() if r in run_ids}
    except SpecError as e:
        print(f"warning: no re-evaluation after the run ({e})", file=sys.stderr)
        return
    if todo:
        from .paths import default_home
        print(f"re-evaluating {len(todo)} run(s) that report specs read on re-coloured test sets", flush=True)
        summary = reevaluate(store, todo, home=default_home(), data_root=args.data_root, device=args.device)
        print(summary.render() + ("\n  (retry with `python -m benchmark reeval`)" if summary.failed else ""), flush=True)
