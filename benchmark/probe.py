"""Bias probes: how much of each bias attribute a finished run's features f(x) still encode.

For every bias attribute of the dataset (each ``DatasetInfo.bias_heads`` entry, plus ``Split.b``
when no head reads it), a fresh classifier is trained on the frozen features ``Method.features(x)``
and tested on held-out samples — the diagnostic of Turning a Blind Eye (Alvi et al. 2018, Table 1:
"the best classifiers that can be learned on the feature representation") and the claim of Learning
Not to Learn (Kim et al. 2019, Sec. 3.2) that h fails at the end "because f unlearns the bias". It
works for every method, also those that never see bias labels.

Protocol (ours; neither paper gives one for Colored MNIST): the probe trains on a random half of
the *unbiased* split (``test`` by default) and is scored on the other half. On the biased training
split a probe could read the bias off the digit itself (colour = digit there), so only a split
where bias and target are independent measures what f keeps of the bias. Per-sample labels get an
MLP on the flattened, standardised features; dense labels (LNL's colour map) get a fresh
LNL-style convolutional head (``benchmark.nets.make_bias_head``). Adam, fixed seed.

Scores: accuracy; mean-class accuracy; chance = 1/K (K classes present in the scored labels);
Blind Eye Eq. 6, ``a = 1 − e / e_max`` with e the mean-class error and e_max = 1 − 1/K the error of
a classifier drawing at random (1 = perfect, 0 = chance); and with a baseline run, Table 1's
"% unlearned" = 1 − a / a_baseline = (acc_base − acc) / (acc_base − chance), e.g. gender under an
age task: (0.99 − 0.56) / (0.99 − 0.50) = 88 %.
"""
from __future__ import annotations

import json
import math
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .data import BiasedDataset, BiasHead, default_home
from .hparams import to_dict
from .nets import make_bias_head


@dataclass(frozen=True)
class ProbeConfig:
    """How a probe is trained (the defaults make a probe take seconds on a CPU for MNIST nets).

    Attributes:
        split: the split whose features are probed (it should be unbiased).
        train_fraction: share of that split the probe trains on; it is scored on the rest.
        max_samples: probe at most this many samples of the split (a fixed random subset).
        epochs, lr, batch_size, weight_decay: Adam on the frozen features.
        hidden: width of the MLP probe for per-sample labels.
        seed: the probe's initialisation, split and batch order.
    """

    split: str = "test"
    train_fraction: float = 0.5
    max_samples: int | None = None
    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 256
    weight_decay: float = 0.0
    hidden: int = 256
    seed: int = 0


def rescaled_accuracy(mean_class_acc: float, num_classes: int) -> float:
    """Blind Eye Eq. 6: a = 1 − e / e_max (e = mean-class error, e_max = 1 − 1/K)."""
    e_max = 1.0 - 1.0 / num_classes
    return 1.0 - (1.0 - mean_class_acc) / e_max if e_max > 0 else float("nan")


def unlearned(rescaled: float, rescaled_baseline: float) -> float:
    """Blind Eye Table 1, "% unlearned" (as a fraction): 1 − a / a_baseline."""
    return 1.0 - rescaled / rescaled_baseline if rescaled_baseline > 0 else float("nan")


def probe_attributes(info) -> list[BiasHead]:
    """The attributes to probe: every bias head, plus ``b`` (the bias class) when no head reads it."""
    heads = list(info.bias_heads)
    if not any(h.key == "b" for h in heads):
        heads.append(BiasHead("b", "b", info.num_bias_classes))
    return heads


class _MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, classes: int):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, classes))

    def forward(self, x):
        return self.net(x)


@torch.no_grad()
def extract_features(method, loader, batch_size: int = 1024) -> torch.Tensor:
    """``method.features`` of every sample of ``loader`` (eval mode), on the loader's device."""
    was_training = method.training
    method.eval()
    order = torch.arange(len(loader), device=loader.device)
    feats = [method.features(b.x).float() for b in loader.batches(order, batch_size)]
    method.train(was_training)
    return torch.cat(feats)


def _scores(logits: torch.Tensor, target: torch.Tensor, head: BiasHead) -> dict[str, Any]:
    pred = logits.argmax(1).reshape(-1)
    t = target.long().reshape(-1)
    keep = t != head.ignore_index
    pred, t = pred[keep], t[keep]
    k = head.num_classes
    total = torch.bincount(t, minlength=k).float()
    hit = torch.bincount(t, weights=(pred == t).float(), minlength=k)
    present = total > 0
    mca = float((hit[present] / total[present]).mean()) if present.any() else float("nan")
    n_cls = int(present.sum())
    return {"acc": float(hit.sum() / total.sum().clamp(min=1)), "mean_class_acc": mca,
            "chance": 1.0 / max(n_cls, 1), "num_classes": n_cls, "n": int(total.sum()),
            "rescaled": rescaled_accuracy(mca, n_cls) if n_cls > 1 else float("nan")}


def fit_probe(feat_tr: torch.Tensor, y_tr: torch.Tensor, feat_te: torch.Tensor, y_te: torch.Tensor,
              head: BiasHead, cfg: ProbeConfig = ProbeConfig()) -> dict[str, Any]:
    """Train a fresh classifier for ``head``'s label on ``feat_tr`` and score it on ``feat_te``."""
    dims = (0, 2, 3) if feat_tr.dim() == 4 else (0,)  # per channel of a feature map, else per feature
    mean = feat_tr.mean(dims, keepdim=True)
    std = feat_tr.std(dims, keepdim=True).clamp(min=1e-6)
    if head.shape:
        if feat_tr.dim() != 4:
            return {"skipped": f"label shape {head.shape} needs feature maps; features are {tuple(feat_tr.shape[1:])}"}
        model = make_bias_head(tuple(feat_tr.shape[1:]), head)
    else:
        model = _MLP(feat_tr[0].numel(), cfg.hidden, head.num_classes)
    model = model.to(feat_tr.device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    n = len(feat_tr)
    model.train()
    for _ in range(cfg.epochs):
        order = torch.randperm(n, generator=gen).to(feat_tr.device)
        for i in range(0, n, cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            if len(idx) < 2:  # BatchNorm in the map head needs two samples
                continue
            loss = F.cross_entropy(model((feat_tr[idx] - mean) / std), y_tr[idx].long(), ignore_index=head.ignore_index)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model((feat_te[i:i + 1024] - mean) / std) for i in range(0, len(feat_te), 1024)])
    return _scores(logits, y_te, head)


def probe(method, dataset: BiasedDataset, cfg: ProbeConfig = ProbeConfig(), device: str | None = None) -> dict[str, Any]:
    """Probe ``method``'s features for every bias attribute of ``dataset`` (see the module doc)."""
    from .engine import Loader, _fixed_subset, pick_device

    dev = pick_device(device)
    info = dataset.info
    split = _fixed_subset(dataset[cfg.split], cfg.max_samples)
    loader = Loader(split, info.mean, info.std, dev)
    method = method.to(dev)
    feats = extract_features(method, loader)
    gen = torch.Generator().manual_seed(cfg.seed)
    perm = torch.randperm(len(split), generator=gen).to(dev)
    n_tr = int(round(cfg.train_fraction * len(split)))
    tr, te = perm[:n_tr], perm[n_tr:]
    out: dict[str, Any] = {"split": cfg.split, "n_train": len(tr), "n_test": len(te), "feature_shape": list(feats.shape[1:]),
                           "config": to_dict(cfg), "attributes": {}}
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        for head in probe_attributes(info):
            torch.manual_seed(cfg.seed)
            target = loader.split.b if head.key == "b" else loader.split.attrs[head.key]
            out["attributes"][head.name] = fit_probe(feats[tr], target[tr], feats[te], target[te], head, cfg)
    return out


def probe_path(run_id: str, home: Path | None = None) -> Path:
    return (Path(home) if home else default_home()) / "models" / f"{run_id}.probe.json"


def probe_run(run, *, store=None, home: Path | None = None, data_root=None, device: str | None = None,
              cfg: ProbeConfig = ProbeConfig(), baseline=None, save: bool = True, retrain: bool = False) -> dict[str, Any]:
    """Probe a stored run (its id, an id prefix, or its record) from its kept weights.

    Args:
        run: run id (or unique prefix) in ``store``, or a record dict.
        store: the result store (default location if None).
        home: the working folder the run used (weights under ``<home>/models``; default ``$BENCHMARK_HOME``).
        cfg: how the probes are trained.
        baseline: a run (id or record) to compute Blind Eye's "% unlearned" against, e.g. ``vanilla``.
        save: write the result to ``<home>/models/<run_id>.probe.json`` (and reuse it when the
            configuration matches), and each attribute's scores beside the run in the result store
            (``<results>/_outputs/probe/<run_id>.<attribute>.json``), where reports read them as
            ``record:probe.<attribute>.<score>`` (Blind Eye Table 1).
        retrain: when the run kept no weights, train its spec again (same seed ⇒ same model) into a
            throwaway store, keeping the weights.

    Returns:
        {"run_id", "method", "dataset", "attributes": {name: {acc, mean_class_acc, chance,
        rescaled, [unlearned]}}, ...}.
    """
    from .engine import load_trained, model_path, run as run_engine
    from .registry import DATASETS
    from .spec import RunSpec
    from .store import ResultStore

    store = store or ResultStore()
    home = Path(home) if home else default_home()
    record = run if isinstance(run, dict) else store.get(resolve_run_id(store, run))
    spec = RunSpec.from_dict(record["spec"])
    path = probe_path(spec.run_id, home)
    result = None
    if save and path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("config") == to_dict(cfg):
            result = cached
    if result is None:
        retrained = False
        if not model_path(spec.run_id, home).is_file() and retrain:
            with tempfile.TemporaryDirectory() as tmp:
                again = run_engine(spec, store=ResultStore(tmp), data_root=data_root, device=device, home=home,
                                   progress=False, keep_model=True).record
            retrained = True
            old, new = record["final"].get("test", {}).get("acc"), again["final"].get("test", {}).get("acc")
            if old is not None and new is not None and not math.isclose(old, new, abs_tol=1e-6):
                warnings.warn(f"retrained run {spec.run_id} reached test acc {new:.4f}, the stored record {old:.4f} "
                              "(another device or library version?)", RuntimeWarning, stacklevel=2)
        method = load_trained(spec, home, device)
        dataset = DATASETS.get(spec.dataset)().build(spec.dataset_params, data_root=data_root, cache_dir=home / "cache")
        result = {"run_id": spec.run_id, "method": spec.method, "dataset": spec.dataset,
                  "dataset_params": spec.dataset_params, "retrained": retrained, **probe(method, dataset, cfg, device)}
        if save:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result, indent=1, sort_keys=True))
    if baseline is not None:
        base = probe_run(baseline, store=store, home=home, data_root=data_root, device=device, cfg=cfg, save=save,
                         retrain=retrain)
        result = {**result, "baseline_run_id": base["run_id"], "attributes": {
            name: {**a, "baseline_acc": base["attributes"].get(name, {}).get("acc"),
                   "unlearned": unlearned(a["rescaled"], base["attributes"][name]["rescaled"])}
            if "rescaled" in a and "rescaled" in base["attributes"].get(name, {}) else a
            for name, a in result["attributes"].items()}}
    if save and store.has(spec.run_id):  # beside the run in the result store: reports read record:probe.<attr>.acc
        for name, a in result["attributes"].items():
            store.put_output(spec.run_id, "probe", name, {**a, "split": result["split"], "config": result["config"],
                                                          "baseline_run_id": result.get("baseline_run_id")})
    return result


def resolve_run_id(store, run_id: str) -> str:
    """The stored run id starting with ``run_id`` (MLflow shows the first 8 hex digits)."""
    if store.has(run_id):
        return run_id
    matches = sorted(p.stem for p in store.root.glob(f"{run_id}*.json"))
    if len(matches) != 1:
        raise KeyError(f"run id {run_id!r} matches {len(matches)} stored runs in {store.root}"
                       + (f": {matches[:5]}" if matches else ""))
    return matches[0]


def format_probe(result: dict[str, Any]) -> str:
    """A plain-text table of a probe result."""
    lines = [f"bias probe of {result['method']} on {result['dataset']} (run {result['run_id']}), "
             f"features {tuple(result['feature_shape'])}, split {result['split']!r}: "
             f"probe trained on {result['n_train']}, scored on {result['n_test']}"]
    base = result.get("baseline_run_id")
    head = f"{'attribute':<14}{'classes':>8}{'acc':>8}{'mc-acc':>8}{'chance':>8}{'Eq.6 a':>8}"
    lines.append(head + (f"{'unlearned':>11}" if base else ""))
    for name, a in result["attributes"].items():
        if "skipped" in a:
            lines.append(f"{name:<14}  skipped: {a['skipped']}")
            continue
        row = (f"{name:<14}{a['num_classes']:>8}{a['acc']:>8.3f}{a['mean_class_acc']:>8.3f}"
               f"{a['chance']:>8.3f}{a['rescaled']:>8.3f}")
        if base and "unlearned" in a:
            row += f"{100 * a['unlearned']:>10.1f}%"
        lines.append(row)
    if base:
        lines.append(f"unlearned = 1 − a / a_baseline against run {base} (Blind Eye Table 1)")
    return "\n".join(lines)
