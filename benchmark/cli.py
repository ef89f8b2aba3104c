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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmark", description=(
        "Reproducibility suite for learning from biased data. Runs land in the result store "
        "(results/runs) and are mirrored to MLflow."))
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="registered methods, datasets and backbones")
    p.add_argument("--verbose", "-v", action="store_true", help="also show every hyperparameter with its source")

    p = sub.add_parser("run", help="train and evaluate one method on one dataset (per seed)",
                       description="Train and evaluate. Dataset parameters are options too: e.g. "
                                   "--dataset colored_mnist accepts --sigma2; `list -v` shows them all.")
    p.add_argument("--method", required=True, help="registered method name (see `list`)")
    p.add_argument("--dataset", required=True, help="registered dataset name (see `list`)")
    p.add_argument("--seed", type=int, nargs="+", default=[0], help="training seed(s); one run per seed")
    p.add_argument("--epochs", type=int, help="epochs (default: the method's published value)")
    p.add_argument("--max-train", type=int, help="train on a fixed random subset of this many samples")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke budget for CPUs: {QUICK['epochs']} epochs on {QUICK['max_train']} training samples")
    p.add_argument("--set", dest="hparams", action="append", default=[], metavar="NAME=VALUE",
                   help="override a method hyperparameter (repeatable)")
    p.add_argument("--backbone", help="override the dataset's default backbone")
    p.add_argument("--data-root", help="dataset files (default $BENCHMARK_DATA_ROOT, ./data, ../shared/data)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default $MLFLOW_TRACKING_URI or an embedded SQLite store)")
    p.add_argument("--no-mlflow", action="store_true", help="do not mirror to MLflow")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _add_common(p)

    p = sub.add_parser("report", help="markdown table from the result store: method × setting, mean ± std over seeds")
    p.add_argument("--metric", default="test.acc", help="record column to tabulate (default test.acc)")
    p.add_argument("--dataset", help="only this dataset")
    _add_common(p)

    p = sub.add_parser("ui", help="open the MLflow UI on the tracking store")
    p.add_argument("--tracking-uri", help="default: the embedded store")
    p.add_argument("--port", type=int, default=5000)
    _add_common(p)

    p = sub.add_parser("mirror", help="send stored records to MLflow (e.g. those MLflow missed)")
    p.add_argument("--tracking-uri")
    _add_common(p)
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
    return 0


def cmd_run(args, extra: list[str]) -> int:
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
    store = ResultStore(args.results_dir)
    mirror = None if args.no_mlflow else MLflowMirror(args.tracking_uri)
    try:
        specs = [make_spec(args.method, args.dataset, dataset_params=params, hparams=_kv(args.hparams, "--set"),
                           seed=seed, epochs=epochs, max_train=max_train, backbone=args.backbone)
                 for seed in args.seed]
    except ValueError as e:
        raise UsageError(str(e)) from None
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


def cmd_report(args) -> int:
    from .report import method_by_setting_table
    from .store import ResultStore
    df = ResultStore(args.results_dir).query()
    print(method_by_setting_table(df, metric=args.metric, dataset=args.dataset))
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
    except (UsageError, RegistryError, DataRootError) as e:
        msg = e.args[0] if isinstance(e, RegistryError) and e.args else str(e)
        print(f"error: {msg}", file=sys.stderr)
        return 2
    return 1
