"""Throughput harness: the engine against a pipeline that works like the official code, side by side.

    python -m benchmark perf [--seconds 5] [--repeats 3] [--models lnl_convnet simple_convnet lff_mlp]

For each backbone, in one process and interleaved (ours, reference, ours, reference, ...):

- steady-state **train** and **eval** images/s: ours = :class:`benchmark.engine.Loader` (uint8 tensors
  on the device, batched by index, normalised on the device) + ``vanilla``'s ``update``, with the
  engine's device settings (:func:`benchmark.engine.fast_path`, the evaluation batch of
  :func:`benchmark.engine.eval_batch_size`), as a run trains; reference =
  :mod:`benchmark.perf_reference` (DataLoader over per-sample PIL/ToTensor, 2 workers, ``.item()``
  per step, the official batch sizes);
- **LNL unlearning** (LNL conv net): ``lnl``'s ``update`` (f, g, the colour head h, three optimisers)
  fed by our loader against the same ``update`` fed the official way (DataLoader of image, label and
  colour-label map; every logged loss read back each step): the same arithmetic, so the ratio is
  the data pipeline's and the host synchronisations' share;
- **GEMM share** (LfF MLP): one unpacked run's matrix-multiply FLOP/s against the FLOP/s of one large
  matrix product of the MLP's first-layer shape measured in the same repeat. Packing can raise
  aggregate throughput by at most the inverse of that share, so it tells how much a pack can gain on
  the device at all;
- **time to first step** from building the loader and network to the end of the first step;
- **peak memory** (CUDA only: ``torch.cuda.max_memory_allocated``; "n/a" on CPU);
- **packed** K ∈ ``--pack-sizes``: aggregate images/s of K runs stacked by :mod:`benchmark.pack`
  against one unpacked run (= the aggregate of the same runs one after another);
- **PGD scoring** samples/s: :func:`benchmark.per_sample.closed_form_stats` against one backward per
  sample (:func:`benchmark.bench_per_sample.official_style_norms`), on Simple ConvNet-1.

Ratios are taken within a repeat and reported as median (min–max) over repeats. Inputs are real
MNIST digits (tinted per sample to 3 channels) when the data root has them, else random pixels:
the cost does not depend on pixel values. The table goes to ``reports/perf/<machine>.md``.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tabulate import tabulate

from . import perf_reference as ref
from .data import DatasetInfo, Split
from .engine import Loader, eval_batch_size, fast_path, has_conv, pick_device
from .hparams import from_dict
from .pack import stack_methods
from .perf_options import MODELS, TARGETS, Model, add_arguments, check
from .registry import METHODS

N_IMAGES = 4096
MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


@dataclass
class Row:
    model: str
    measure: str
    ours: list[float] = field(default_factory=list)
    reference: list[float] = field(default_factory=list)  # or the unpacked run, for packs

    def ratios(self) -> list[float]:
        return [o / r for o, r in zip(self.ours, self.reference) if r > 0]


def images(n: int, size: int, data_root=None) -> tuple[torch.Tensor, torch.Tensor]:
    """n uint8 3×size×size images and labels: tinted MNIST digits, or random pixels without MNIST."""
    g = torch.Generator().manual_seed(0)
    try:
        from .data import load_mnist, resolve_data_root
        x, y = load_mnist(resolve_data_root(data_root))["train"]
        digits, labels = torch.from_numpy(x[:n].copy()).float(), torch.from_numpy(y[:n].copy())
        tint = torch.rand(n, 3, 1, 1, generator=g)
        x = (digits[:, None] * tint).to(torch.uint8)
    except FileNotFoundError:
        x, labels = torch.randint(0, 256, (n, 3, 28, 28), generator=g, dtype=torch.uint8), torch.randint(0, 10, (n,), generator=g)
    if size != x.shape[-1]:
        x = torch.nn.functional.interpolate(x.float(), size=(size, size), mode="bilinear").to(torch.uint8)
    return x, labels


def _info(model: Model) -> DatasetInfo:
    return DatasetInfo("perf", (3, model.size, model.size), 10, 10, (), model.backbone, MEAN, STD)


def _vanilla(model: Model, device):
    cls = METHODS.get("vanilla")
    return cls(from_dict(cls.HParams, {"batch_size": model.batch}), _info(model), 1).to(device)


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(steps, seconds: float, device, warmup: int = 2) -> tuple[float, float]:
    """(items/s over ``seconds`` after ``warmup`` steps, seconds to the end of the first step)."""
    t0 = time.perf_counter()
    next(steps)
    _sync(device)
    first = time.perf_counter() - t0
    for _ in range(warmup - 1):
        next(steps)
    _sync(device)
    n, t = 0, time.perf_counter()
    while True:
        n += next(steps)
        if time.perf_counter() - t >= seconds:
            break
    _sync(device)
    return n / (time.perf_counter() - t), first


def _split(x, y, attrs: dict | None = None) -> Split:
    return Split(x, y, y, torch.ones_like(y, dtype=torch.bool), attrs or {})


def _ours_train(model: Model, x, y, device, method=None, attrs: dict | None = None):
    loader = Loader(_split(x, y, attrs), MEAN, STD, device)
    method = fast_path(method or _vanilla(model, device), {"train": loader}, device).train()
    gen = torch.Generator().manual_seed(0)
    while True:
        order = torch.randperm(len(y), generator=gen).to(device)
        for batch in loader.batches(order, model.batch, augment=True):
            method.update(batch)
            yield len(batch.y)


def _ours_eval(model: Model, x, y, device):
    loader = Loader(_split(x, y), MEAN, STD, device)
    method = fast_path(_vanilla(model, device), {"eval": loader}, device).eval()
    order = torch.arange(len(y), device=device)
    size = eval_batch_size(loader, method)
    while True:
        with torch.no_grad():
            for batch in loader.batches(order, size):
                (method.predict(batch.x).argmax(1) == batch.y).sum()
                yield len(batch.y)


def _ref_train(model: Model, x, y, device):
    from .nets import build_backbone
    net = build_backbone(_info(model)).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    return ref.train_steps(net, opt, ref.loader(x, y, MEAN, STD, model.batch, True), device)


def _ref_eval(model: Model, x, y, device):
    from .nets import build_backbone
    net = build_backbone(_info(model)).to(device)
    return ref.eval_steps(net, ref.loader(x, y, MEAN, STD, model.eval_batch, False), device)


def _packed_train(model: Model, k: int, x, y, device):
    loader = Loader(_split(x, y), MEAN, STD, device)
    pack = stack_methods([_vanilla(model, device) for _ in range(k)], _vanilla(model, device)).to(device)
    pack = fast_path(pack, {"train": loader}, device).train()
    gen = torch.Generator().manual_seed(0)
    n = len(y)
    while True:
        idx = torch.cat([torch.randint(0, n, (model.batch,), generator=gen) for _ in range(k)]).to(device)
        pack.update(loader.batch(idx, augment=True))
        yield k * model.batch


MAP_KEY = "color_map"  # colored_mnist's LNL colour-label head


def _lnl(model: Model, device):
    """``lnl`` on colored_mnist's heads (the colour-label map) with this model's backbone and batch."""
    from .hparams import from_dict
    from .registry import DATASETS
    family = DATASETS.get("colored_mnist")
    info = family().info(from_dict(family.Params, {}))
    info = type(info)(**{**info.__dict__, "backbone": model.backbone, "mean": MEAN, "std": STD})
    cls = METHODS.get("lnl")
    return cls(from_dict(cls.HParams, {"batch_size": model.batch}), info, 1).to(device)


def _colour_maps(x: torch.Tensor) -> torch.Tensor:
    """LNL's colour labels of ``x``, by colored_mnist's own rule (``color_label_map``, kind "pixel")."""
    import importlib
    from .registry import DATASETS
    module = importlib.import_module(DATASETS.get("colored_mnist").__module__)
    return torch.from_numpy(module.color_label_map(x.numpy(), None, None, "pixel"))


def _ours_lnl(model: Model, x, y, device):
    return _ours_train(model, x, y, device, _lnl(model, device), {MAP_KEY: _colour_maps(x)})


def _ref_lnl(model: Model, x, y, device):
    data = ref.loader(x, y, MEAN, STD, model.batch, True, maps=_colour_maps(x))
    return ref.method_steps(_lnl(model, device), data, device, MAP_KEY)


def _linear_flops_per_image(net: torch.nn.Module) -> float:
    """Matrix-multiply FLOPs of one training image through ``net``'s linear layers: forward,
    weight gradient, and input gradient for every layer but the first."""
    layers = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    macs = [m.in_features * m.out_features for m in layers]
    return 2.0 * (2 * sum(macs) + sum(macs[1:]))


def _gemm_share(model: Model, x, y, device, seconds: float) -> tuple[float, float]:
    """(one run's linear-layer FLOP/s, the FLOP/s of one large product of the first layer's shape)."""
    method = _vanilla(model, device)
    rate, _ = _rate(_ours_train(model, x, y, device, method), seconds, device)
    run_flops = rate * _linear_flops_per_image(method.net)
    first = next(m for m in method.net.modules() if isinstance(m, torch.nn.Linear))
    a = torch.randn(64 * model.batch, first.in_features, device=device)
    w = torch.randn(first.in_features, first.out_features, device=device)

    def products():
        while True:
            a @ w
            yield 1
    per_s, _ = _rate(products(), seconds, device)
    return run_flops, per_s * 2.0 * a.shape[0] * a.shape[1] * w.shape[1]


def _peak(fn, device) -> float | None:
    if device.type != "cuda":
        return None
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    return torch.cuda.max_memory_allocated(device) / 2**20


def _scoring(n_ours: int, n_ref: int, device, data_root) -> tuple[float, float]:
    from . import per_sample as ps
    from .bench_per_sample import official_style_norms
    from .nets import build_backbone
    model = MODELS["simple_convnet"]
    x, y = images(n_ours, model.size, data_root)
    xs = ((x.float() / 255 - 0.5) / 0.5).to(device)
    y = y.to(device)
    net = build_backbone(_info(model)).to(device).eval()
    ps.closed_form_stats(net, [(xs[:256], y[:256])], 10, k=100)  # warm-up
    _sync(device)
    t = time.perf_counter()
    ps.closed_form_stats(net, [(xs[i:i + 2048], y[i:i + 2048]) for i in range(0, n_ours, 2048)], 10, k=100)
    _sync(device)
    ours = n_ours / (time.perf_counter() - t)
    t = time.perf_counter()
    official_style_norms(net, xs[:n_ref], y[:n_ref])
    _sync(device)
    return ours, n_ref / (time.perf_counter() - t)


def measure(models: list[str], seconds: float, repeats: int, pack_sizes: list[int], device, data_root=None,
            scoring: bool = True, log=print, rows: list[Row] | None = None) -> list[Row]:
    """Every figure of the table (see the module docstring), as rows of per-repeat values, appended
    to ``rows`` as each is complete (an interrupted call leaves the finished ones there)."""
    rows = [] if rows is None else rows
    for name in models:
        model = MODELS[name]
        x, y = images(N_IMAGES, model.size, data_root)
        train, evals = Row(name, "train img/s"), Row(name, "eval img/s")
        first = Row(name, "time to first step (s)")
        for r in range(repeats):
            for row, ours, theirs in ((train, _ours_train, _ref_train), (evals, _ours_eval, _ref_eval)):
                o, o_first = _rate(ours(model, x, y, device), seconds, device)
                t, t_first = _rate(theirs(model, x, y, device), seconds, device)
                row.ours.append(o)
                row.reference.append(t)
                if row is train:
                    first.ours.append(o_first)
                    first.reference.append(t_first)
            log(f"  {name} repeat {r + 1}/{repeats}: train {train.ours[-1]:.0f} vs {train.reference[-1]:.0f} img/s, "
                f"eval {evals.ours[-1]:.0f} vs {evals.reference[-1]:.0f}")
        rows += [train, evals, first]
        if name == "lnl_convnet":
            lnl = Row(name, "LNL unlearning train img/s")
            for r in range(repeats):
                lnl.ours.append(_rate(_ours_lnl(model, x, y, device), seconds, device)[0])
                lnl.reference.append(_rate(_ref_lnl(model, x, y, device), seconds, device)[0])
            rows.append(lnl)
            log(f"  {name} LNL unlearning: {statistics.median(lnl.ours):.0f} vs {statistics.median(lnl.reference):.0f} img/s")
        if not has_conv(_vanilla(model, device)):
            gemm = Row(name, "one run's GEMM FLOP/s (G)")
            for r in range(repeats):
                run_flops, peak = _gemm_share(model, x, y, device, seconds)
                gemm.ours.append(run_flops / 1e9)
                gemm.reference.append(peak / 1e9)
            rows.append(gemm)
            log(f"  {name} one run {statistics.median(gemm.ours):.0f} GFLOP/s of the GEMM's "
                f"{statistics.median(gemm.reference):.0f}")
        if device.type == "cuda":
            mem = Row(name, "peak train memory (MiB)")
            mem.ours.append(_peak(lambda: [next(s) for s in [_ours_train(model, x, y, device)] for _ in range(3)], device))
            mem.reference.append(_peak(lambda: [next(s) for s in [_ref_train(model, x, y, device)] for _ in range(3)], device))
            rows.append(mem)
        cap = None if device.type == "cuda" else model.max_pack_cpu
        for k in pack_sizes:
            if cap is not None and k > cap:
                log(f"  {name} packed K={k}: skipped on CPU (K > {cap})")
                continue
            row = Row(name, f"packed K={k} img/s")
            for _ in range(repeats):
                packed, _ = _rate(_packed_train(model, k, x, y, device), seconds, device)
                alone, _ = _rate(_ours_train(model, x, y, device), seconds, device)
                row.ours.append(packed)
                row.reference.append(alone)
            rows.append(row)
            log(f"  {name} packed K={k}: {statistics.median(row.ours):.0f} img/s vs one run "
                f"{statistics.median(row.reference):.0f}")
    if scoring:
        row = Row("simple_convnet", "PGD scoring samples/s")
        for _ in range(repeats):
            o, t = _scoring(2048 if seconds >= 1 else 256, 128 if seconds >= 1 else 16, device, data_root)
            row.ours.append(o)
            row.reference.append(t)
        rows.append(row)
        log(f"  PGD scoring: {statistics.median(row.ours):.0f} vs {statistics.median(row.reference):.1f} samples/s")
    return rows


def _fmt(values: list[float | None]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    m = statistics.median(values)
    return f"{m:,.0f}" if m >= 100 else f"{m:.3g}"


def render(rows: list[Row], header: dict[str, str]) -> str:
    """The markdown table with its header (machine, command, load)."""
    table = []
    for row in rows:
        ratios = row.ratios()
        ratio = (f"{statistics.median(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f})" if ratios else "n/a")
        target = TARGETS.get((row.model, row.measure))
        verdict = "" if target is None or not ratios else (
            f"≥ {target:g}×: {'met' if statistics.median(ratios) >= target else 'NOT met'}")
        against = ("one run" if row.measure.startswith("packed") else
                   "GEMM peak" if "GEMM" in row.measure else "reference")
        table.append([row.model, row.measure, _fmt(row.ours), _fmt(row.reference), against, ratio, verdict])
    lines = [f"# Throughput: {header['machine']}", ""]
    lines += [f"- {k}: {v}" for k, v in header.items() if k != "machine"]
    lines += ["", tabulate(table, headers=["model", "measure", "ours", "against", "which", "ratio median (min–max)",
                                           "target (CPU)"], tablefmt="github"), ""]
    lines += ["Ratios are ours / reference (or packed / one unpacked run, or one run's FLOP/s / the device's "
              "FLOP/s on one large matrix product of the same layer) within one repeat; 'ours' and "
              "'against' are medians over repeats. Time to first step: lower is better (ratio < 1 is ours faster). "
              "Produced by `python -m benchmark perf` (benchmark/perf.py); reference pipeline: "
              "benchmark/perf_reference.py.", ""]
    return "\n".join(lines)


def machine_name(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device).lower().replace(" ", "-")
    return f"cpu-{os.cpu_count()}-cores"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmark perf", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return run_cli(p.parse_args(argv))


def run_cli(args) -> int:
    problem = check(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    device = pick_device(args.device)
    machine = args.machine or machine_name(device)
    load0 = os.getloadavg()
    t0 = time.time()
    print(f"perf on {machine}: {args.seconds:g} s per measurement, {args.repeats} repeat(s)", flush=True)
    rows: list[Row] = []
    try:
        measure(args.models, args.seconds, args.repeats, args.pack_sizes, device, args.data_root,
                scoring=not args.no_scoring, log=lambda s: print(s, flush=True), rows=rows)
        interrupted = False
    except KeyboardInterrupt:  # e.g. scripts/gpu-window.sh's time limit: keep what was measured
        interrupted = True
    header = {
        "machine": machine,
        "device": (torch.cuda.get_device_name(device) if device.type == "cuda" else
                   f"CPU {_cpu_model()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python -m benchmark perf " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["perf"] else sys.argv[1:]),
        "load average (1 min) at start / end": f"{load0[0]:.1f} / {os.getloadavg()[0]:.1f}",
        "wall time": f"{time.time() - t0:.0f} s",
    }
    if args.note:
        header["note"] = args.note
    if interrupted:
        header["interrupted"] = "yes: a partial table, the rows measured before the interrupt"
    text = render(rows, header)
    out = Path(args.out) / f"{machine}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"written to {out}")
    return 130 if interrupted else 0


if __name__ == "__main__":
    raise SystemExit(main())
