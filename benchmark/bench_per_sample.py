"""Speed of PGD's per-sample gradient scores: vectorised vs one backward pass per sample.

Run: ``python -m benchmark.bench_per_sample [--dataset colored_mnist_ratio] [--device cpu]``.

Scores the whole training set (Colored MNIST with ``val_fraction=0``: all 60 000 MNIST training
images) with the dataset's backbone in eval mode, timing (wall clock, after one warm-up):

- ``closed form, M+D+S``: :func:`benchmark.per_sample.closed_form_stats` (k = 100 dominant
  dimensions) plus magnitude, vMF direction and harmonic scores — what ``pgd`` runs;
- ``closed form, p-norm``: the norms only — what ``pgd.official`` runs;
- ``torch.func, fc`` and ``torch.func, all params``: :func:`benchmark.per_sample.func_stats`;
- ``naive, fc``: one forward + ``autograd.grad`` per sample (:func:`naive_per_sample_grads`);
- ``official-style``: a batch forward, then one ``backward(retain_graph=True)`` per sample through
  the whole network, as sumyeongahn/PGD @ 0265520 learner.py:308-318 does.

The per-sample loops (and the torch.func paths when ``--func-samples`` is below N) are timed on a
subset and extrapolated to N; the table says which. The reference is the official code's 53
samples/s on a 2-core CPU (shared/PROTOCOL-FACTS.md, "Speed of the official code"). Weights are
the backbone's random initialisation: the cost does not depend on their values.
"""
from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from . import per_sample as ps
from .engine import Loader, pick_device
from .nets import build_backbone
from .registry import DATASETS

OFFICIAL_SAMPLES_PER_S = 53.0  # shared/PROTOCOL-FACTS.md: PGD per-sample scoring, 2-core CPU


def official_style_norms(net, x: torch.Tensor, y: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """fc.weight gradient norms the way the official code gets them: a batch forward (batch 128,
    its --reproduce setting), then one backward per sample through the whole batch graph
    (retain_graph), reading the fc weight's grad — each backward costs a full batch's."""
    _, fc = ps.final_linear(net)
    norms = []
    for i in range(0, len(y), batch_size):
        xb = x[i:i + batch_size].clone().requires_grad_(True)
        losses = F.cross_entropy(net(xb), y[i:i + batch_size], reduction="none")
        for j in range(len(losses)):
            net.zero_grad(set_to_none=True)
            losses[j].backward(retain_graph=True)
            norms.append(fc.weight.grad.norm())
    return torch.stack(norms)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _time(fn, dev, warmup: bool = True) -> float:
    if warmup:
        fn()
    _sync(dev)
    t0 = time.perf_counter()
    fn()
    _sync(dev)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmark.bench_per_sample", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="colored_mnist_ratio")
    p.add_argument("--backbone", help="default: the dataset's")
    p.add_argument("--device", help="cpu, cuda (default: cuda if available)")
    p.add_argument("--naive-samples", type=int, default=300, help="samples timed for the per-sample loops")
    p.add_argument("--func-samples", type=int, default=6000, help="samples timed for the torch.func paths")
    p.add_argument("--k", type=int, default=100, help="dominant dimensions (PGD Table 4: 100)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's; PROTOCOL-FACTS timed 2)")
    p.add_argument("--json", help="also write the numbers here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    dev = pick_device(args.device)
    family = DATASETS.get(args.dataset)()
    params = {"val_fraction": 0.0} if "val_fraction" in family.Params.__dataclass_fields__ else {}
    data = family.build(params)
    info = data.info if not args.backbone else type(data.info)(**{**data.info.__dict__, "backbone": args.backbone})
    loader = Loader(data["train"], info.mean, info.std, dev)
    n, c = len(loader), info.num_classes
    torch.manual_seed(0)
    net = build_backbone(info).to(dev).eval()
    y = loader.split.y
    full = ps.Rebatch(loader)

    def scores_closed_form():
        st = ps.closed_form_stats(net, full, c, args.k)
        m, d = ps.magnitude_score(st.norm, y, c), ps.direction_score(st.sub, y, c)
        return ps.acceptance_probability(ps.harmonic_score(m, d))

    rows = []

    def add(name, seconds, measured_on):
        rate = measured_on / seconds
        rows.append({"path": name, "samples_per_s": round(rate, 1), "measured_on": measured_on,
                     "full_set_s": round(n / rate, 2), "vs_official": round(rate / OFFICIAL_SAMPLES_PER_S, 1)})

    add("closed form, M+D+S (pgd)", _time(scores_closed_form, dev), n)
    add("closed form, p-norm (pgd.official)",
        _time(lambda: ps.closed_form_stats(net, full, c, args.k, p=0.7, want_sub=False), dev), n)
    m = min(args.func_samples, n)
    sub = ps.Rebatch(loader, indices=torch.arange(m, device=dev))
    for label, names, chunk in (("torch.func, fc", ps.select_params(net, ps.FC), 1024),
                                ("torch.func, all params", ps.select_params(net, "all"), 256)):
        add(label, _time(lambda: ps.func_stats(net, names, sub, c, args.k, chunk=chunk), dev), m)
    k = min(args.naive_samples, n)
    x, yy = next(iter(ps.Rebatch(loader, batch_size=k)))
    add("naive loop, fc", _time(lambda: ps.naive_per_sample_grads(net, ps.select_params(net, ps.FC), x, yy), dev,
                                warmup=False), k)
    add("official-style loop", _time(lambda: official_style_norms(net, x, yy), dev, warmup=False), k)

    fastest_loop = max(r["samples_per_s"] for r in rows if "loop" in r["path"])
    device = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"Per-sample gradient scores on {args.dataset} train (N = {n}), backbone {info.backbone}, {device}")
    print(f"official code (PROTOCOL-FACTS, 2-core CPU): {OFFICIAL_SAMPLES_PER_S:g} samples/s\n")
    print("| path | samples/s | timed on | full set (s) | × official | × fastest loop |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        timed = "all" if r["measured_on"] == n else f"{r['measured_on']} (extrapolated)"
        print(f"| {r['path']} | {r['samples_per_s']:,.0f} | {timed} | {r['full_set_s']:,.1f} | {r['vs_official']:,.1f} "
              f"| {r['samples_per_s'] / fastest_loop:,.1f} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"dataset": args.dataset, "n": n, "backbone": info.backbone, "device": device,
                       "official_samples_per_s": OFFICIAL_SAMPLES_PER_S, "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
