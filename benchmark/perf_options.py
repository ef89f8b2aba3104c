"""What ``benchmark perf`` measures and its command-line options (no torch import: ``--help`` stays fast)."""
from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True)
class Model:
    backbone: str
    size: int  # input height = width
    batch: int  # the official training batch
    eval_batch: int  # the official test batch (reference) — ours evaluates in the engine's batch
    max_pack_cpu: int  # largest pack measured on a CPU (time per step grows with K)


MODELS = {
    "lnl_convnet": Model("lnl_convnet", 28, 128, 128, 8),  # LNL option.py batch 128
    "simple_convnet": Model("simple_convnet", 28, 128, 128, 8),  # PGD --reproduce batch 128
    "lff_mlp": Model("lff_mlp", 28, 256, 256, 64),  # LfF config.py batch 256
    "resnet18": Model("resnet18", 112, 64, 64, 4),
}
TARGETS = {  # issue 14, CPU: ratio of ours to the reference (or packed to one run), measured in one run
    ("lnl_convnet", "train img/s"): 1.5, ("lnl_convnet", "LNL unlearning train img/s"): 1.5,
    ("simple_convnet", "train img/s"): 4.0, ("lff_mlp", "train img/s"): 4.0,
    ("lff_mlp", "packed K=8 img/s"): 2.0, ("simple_convnet", "PGD scoring samples/s"): 200.0,
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, default=5.0, help="seconds per measurement (default 5; 0.2 = a smoke test)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats (default 3)")
    p.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS),
                   help="backbones (default: all; resnet18 at 112 px takes a few steps a second on a CPU)")
    p.add_argument("--pack-sizes", nargs="+", type=int, default=[1, 4, 8, 16, 64], metavar="K",
                   help="pack sizes (default 1 4 8 16 64; on a CPU the conv nets stop at 16)")
    p.add_argument("--no-scoring", action="store_true", help="skip the PGD per-sample scoring comparison")
    p.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    p.add_argument("--data-root", help="MNIST files (default $BENCHMARK_DATA_ROOT, ...); random pixels without them")
    p.add_argument("--out", default="reports/perf", help="folder of the table (default reports/perf)")
    p.add_argument("--machine", help="table name (default: the GPU's name, or cpu-<cores>-cores)")
    p.add_argument("--note", default="", help="a line written under the table's header (e.g. 'machine shared')")


def check(args) -> str | None:
    """The problem with ``args``, or None."""
    if args.seconds <= 0 or args.repeats < 1 or any(k < 1 for k in args.pack_sizes):
        return "--seconds must be > 0, --repeats and --pack-sizes >= 1"
    return None
