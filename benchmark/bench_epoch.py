"""Seconds per training epoch and images/s, per method, on a dataset's full training set.

    python -m benchmark.bench_epoch --dataset colored_mnist --methods vanilla lnl [--device cuda]

Times the engine's own loop (batches gathered and normalised on the device, ``Method.update``), after
one warm-up batch, excluding evaluation and any preparation stage (reported separately). The
numbers in issue notes come from this script.
"""
from __future__ import annotations

import argparse
import time

import torch
from tabulate import tabulate

from .engine import Loader, build_method, epoch_generator, pick_device
from .hparams import from_dict
from .registry import DATASETS, METHODS
from .spec import make_spec


def time_epoch(method_name: str, dataset, device, dataset_name: str, params: dict, max_train: int | None) -> dict:
    spec = make_spec(method_name, dataset_name, dataset_params=params, epochs=1)
    torch.manual_seed(0)
    method = build_method(spec, dataset.info).to(device)
    train = dataset["train"]
    if max_train:
        train = train.subset(torch.arange(min(max_train, len(train))))
    loader = Loader(train, dataset.info.mean, dataset.info.std, device, augment=dataset.augment)
    bs = int(spec.hparams["batch_size"])
    method.train()
    t = time.perf_counter()
    prep = method.prepare(loader)
    prep_s = time.perf_counter() - t if prep else 0.0
    order = method.sample_indices(len(loader), epoch_generator(0, 0))
    order = (torch.randperm(len(loader), generator=epoch_generator(0, 0)) if order is None else order).to(device)
    method.update(loader.batch(order[:bs], augment=True))  # warm-up
    _sync(device)
    t = time.perf_counter()
    for batch in loader.batches(order, bs, augment=True):
        method.update(batch)
    _sync(device)
    s = time.perf_counter() - t
    return {"method": method_name, "samples": len(order), "s/epoch": round(s, 2),
            "images/s": round(len(order) / s), "prepare s": round(prep_s, 1)}


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="colored_mnist")
    p.add_argument("--methods", nargs="+", default=["vanilla", "lnl"])
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="dataset parameter")
    p.add_argument("--max-train", type=int, help="time on the first N training samples only")
    p.add_argument("--device")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    family = DATASETS.get(args.dataset)
    params = dict(kv.split("=", 1) for kv in args.param)
    dataset = family().build(from_dict(family.Params, params))
    rows = []
    for name in args.methods:
        METHODS.get(name)
        rows.append(time_epoch(name, dataset, device, args.dataset, params, args.max_train))
        print(rows[-1], flush=True)
    print(f"\n{args.dataset} on {device} ({torch.get_num_threads()} CPU threads)\n")
    print(tabulate(rows, headers="keys", tablefmt="github"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
