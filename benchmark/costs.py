"""Run prices from the measured costs kept in the records.

Every record holds its wall time, the training time of each epoch and the device it ran on
("cuda:NVIDIA H100 80GB HBM3", "cpu:2 threads"). From one record come two rates and a fixed cost:
seconds per training sample-epoch (its epochs' training time), seconds per evaluated sample-epoch
(the rest of the wall time — evaluation, data loading, a preparation stage — spread over the
evaluated samples, but never more per sample than a training step, which does the same forward
pass and a backward one) and the fixed seconds that remain (process start, data loading, a
preparation stage of a short run: they do not grow with the epochs). A planned run costs fixed +
epochs × (training samples × train rate + evaluated samples × eval rate), with the medians of the
records it is priced from, chosen in this order:

1. ``measured``: same method, dataset, backbone, training-set size (``max_train``) and device (the
   GPU model; on CPUs the kind) — the price of the very same kind of run, scaled by epochs only;
2. ``like``: same method and dataset on the same device kind (cuda / cpu) — those with the same
   backbone and training-set size if there are any (e.g. another GPU model) — scaled by epochs and
   training-set size;
3. ``none`` — no measured cost of a like run: priced conservatively at :data:`CONSERVATIVE` × the
   dearest rates of the records of the same dataset (on the same device kind if there are any),
   else of the same backbone; a run with neither is not priced at all (a rate measured on another
   dataset and network — ResNet-18 on 112-pixel images for an MNIST ConvNet — would be off by
   orders of magnitude: a dry run once priced a CPU run of PGD Table 1 at 550 hours that way).

A run is never priced from a median of unlike runs. Fixed costs (a preparation stage that does not
scale with the epochs, data loading) are spread over the epochs, so a short run priced from a long
one is cheap by up to that fixed cost — which is why the budget adds a margin (see
:mod:`benchmark.budget`) — and a long run priced from a short one is dear.
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

CONSERVATIVE = 2.0  # × the dearest measured rates, for runs without a like run
DEFAULT_BUILD_S = 60.0  # generating a dataset setting never built here before: a guess, not measured


@dataclass(frozen=True)
class Rate:
    """Rates of one stored run (seconds per training / evaluated sample-epoch) and where it ran."""

    train: float
    eval: float
    fixed: float
    method: str
    dataset: str
    backbone: str | None
    max_train: int | None
    device: str  # as recorded
    kind: str    # "cuda" or "cpu"


def device_kind(device: str | None) -> str:
    """"cuda" or "cpu" for a device name or a recorded device string."""
    return "cuda" if str(device or "").startswith("cuda") else "cpu"


def current_device(device: str | None = None) -> str:
    """The device runs will use, named as records name it on CUDA (``cuda:<GPU model>``), else
    ``cuda`` / ``cpu``: ``device`` if given ("cpu", "cuda", "cuda:1"), else CUDA when available."""
    if device and device_kind(device) == "cpu":
        return "cpu"
    try:
        import torch
        if torch.cuda.is_available():
            index = int(device.split(":", 1)[1]) if device and ":" in device else 0
            return f"cuda:{torch.cuda.get_device_name(index)}"
    except Exception:  # noqa: BLE001 - a broken CUDA setup prices like "cuda" of unknown model
        pass
    return "cuda" if device else "cpu"


def _same_device(rate: Rate, device: str) -> bool:
    return rate.kind == device_kind(device) and (rate.kind == "cpu" or rate.device == device)


def _train_samples(record: dict[str, Any]) -> int | None:
    spec = record["spec"]
    if spec.get("max_train"):
        return int(spec["max_train"])
    for row in record.get("history") or []:
        if row.get("images_per_s") and row.get("train_time_s"):
            return int(round(row["images_per_s"] * row["train_time_s"]))
    return None


def eval_samples(spec: dict, sizes: dict[str, int] | None) -> int | None:
    """Samples evaluated per epoch: every split but train, each capped at ``max_eval``."""
    if not sizes:
        return spec.get("max_eval")
    cap = spec.get("max_eval")
    return sum(min(n, cap) if cap else n for name, n in sizes.items() if name != "train")


def _sizes(dataset: str, params: dict, home: Path | None) -> dict[str, int] | None:
    from .planner import any_sizes, split_sizes
    if home is None:
        return None
    return split_sizes(dataset, params, home) or any_sizes(dataset, home)


def rates(records: Iterable[dict[str, Any]], home: Path | None = None) -> tuple[list[Rate], dict[str, int]]:
    """Rates of the given records, and {dataset: full training-set size seen in runs without max_train}."""
    out: list[Rate] = []
    full_size: dict[str, int] = {}
    for rec in records:
        spec = rec.get("spec") or {}
        wall, epochs = rec.get("wall_time_s"), spec.get("epochs")
        n = _train_samples(rec)
        if not (wall and epochs and n):
            continue
        train_s = sum(row.get("train_time_s") or 0.0 for row in rec.get("history") or [])
        m = eval_samples(spec, _sizes(spec["dataset"], spec.get("dataset_params", {}), home))
        fixed = 0.0
        if train_s > 0 and m:
            train = train_s / (epochs * n)
            other = max(wall - train_s, 0.0)
            ev = min(other / (epochs * m), train)  # evaluating a sample costs at most a training step
            fixed = other - ev * epochs * m
        else:  # no per-epoch timings: all of the wall time counts as training
            train, ev = wall / (epochs * n), 0.0
        device = str(rec.get("device", ""))
        out.append(Rate(train, ev, fixed, spec["method"], spec["dataset"], spec.get("backbone"), spec.get("max_train"),
                        device, device_kind(device)))
        if not spec.get("max_train"):
            full_size[spec["dataset"]] = n
    return out, full_size


def estimate(runs: list, store, device: str | None = None, home: Path | None = None,
             table: tuple[list[Rate], dict[str, int]] | None = None) -> None:
    """Fill ``estimate_s``, ``estimate_kind`` and ``estimate_basis`` of each planned run (see the
    module docstring) from the records in ``store`` (or from ``table``, a result of :func:`rates`).
    A run on the whole training set takes its size from the dataset cache's sizes (written when the
    planner or a worker builds the dataset) or from a stored full run."""
    if not runs:
        return
    all_rates, full_size = table if table is not None else rates(store.records(), home)
    where = current_device(device)
    kind = device_kind(where)
    by_like: dict[tuple[str, str], list[Rate]] = defaultdict(list)
    for r in all_rates:
        if r.kind == kind:
            by_like[(r.method, r.dataset)].append(r)
    same_kind = [r for r in all_rates if r.kind == kind]
    for run in runs:
        spec = run.spec
        sizes = _sizes(spec.dataset, spec.dataset_params, home)
        n = spec.max_train or (sizes or {}).get("train") or full_size.get(spec.dataset)
        m = eval_samples(spec.to_dict(), sizes) or 0
        like = by_like.get((spec.method, spec.dataset), [])
        same_shape = [r for r in like if r.backbone == spec.backbone and r.max_train == spec.max_train]
        measured = [r for r in same_shape if _same_device(r, where)]
        like = same_shape or like
        dearest_pool = _dearest_pool(spec, same_kind, all_rates)
        run.estimate_s, run.estimate_kind = None, "none"
        if n is None:
            run.estimate_basis = "no measured cost and no known training-set size"
            continue
        if measured or like:
            found = measured or like
            run.estimate_kind = "measured" if measured else "like"
            run.estimate_s = statistics.median(r.fixed for r in found) + spec.epochs * (
                n * statistics.median(r.train for r in found) + m * statistics.median(r.eval for r in found))
            run.estimate_basis = (f"{run.estimate_kind}: median of {len(found)} {spec.method} run(s) on "
                                  f"{spec.dataset} ({found[0].device if measured else kind})")
        elif dearest_pool:
            train = max(r.train for r in dearest_pool)
            ev = max(r.eval for r in dearest_pool)
            run.estimate_s = CONSERVATIVE * (max(r.fixed for r in dearest_pool) + spec.epochs * (n * train + m * ev))
            datasets = sorted({r.dataset for r in dearest_pool})
            run.estimate_basis = (f"no measured cost: priced at {CONSERVATIVE:g}× the dearest rates of "
                                  f"{len(dearest_pool)} stored run(s) on {', '.join(datasets)} ({dearest_pool[0].kind})")
        else:
            run.estimate_basis = (f"no measured cost: the store holds no run of {spec.dataset} or of its backbone "
                                  "to price it from")


def _dearest_pool(spec, same_kind: list[Rate], all_rates: list[Rate]) -> list[Rate]:
    """The records whose dearest rates price a run without a like run, most similar first: the same
    dataset (on the same device kind if any; those of the same backbone and training-set size if
    any), else the same backbone (likewise); else none — a per-sample rate of another dataset and
    network says nothing about this one."""
    def shaped(pool: list[Rate]) -> list[Rate]:
        return [r for r in pool if r.backbone == spec.backbone and r.max_train == spec.max_train] or pool

    for pool in (same_kind, all_rates):
        same_dataset = [r for r in pool if r.dataset == spec.dataset]
        if same_dataset:
            return shaped(same_dataset)
    for pool in (same_kind, all_rates):
        same_backbone = [r for r in pool if spec.backbone is not None and r.backbone == spec.backbone]
        if same_backbone:
            return shaped(same_backbone)
    return []


def build_price(dataset: str, params: dict, home: Path | None) -> float:
    """Seconds to generate a dataset setting before its first run (records leave it out): 0 when
    it is cached (or ``home`` is None), else the median generation time of this dataset's other settings built in
    ``home`` (``<key>.build.json`` beside the cache), else :data:`DEFAULT_BUILD_S`."""
    import json

    from .planner import cache_file
    if home is None:  # no dataset cache to consult: not priced
        return 0.0
    path = cache_file(dataset, params, home)
    if path.is_file():
        return 0.0
    times = []
    for p in path.parent.glob("*.build.json"):
        try:
            times.append(float(json.loads(p.read_text())["build_s"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return statistics.median(times) if times else DEFAULT_BUILD_S
