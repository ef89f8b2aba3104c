"""PGD — de-biasing with per-sample gradients of a biased classifier (Ahn et al., ICLR 2022
submission "Mitigating dataset bias using per-sample gradients from a biased classifier",
shared/papers/per-sample-gradient-debiasing_pgd.txt): train a biased model, score every training
sample by its gradient under it, and train the final model on batches that over-sample the
samples the biased model did not learn.

Algorithm 2: (1) a biased model trained with generalized cross-entropy (q = 0.7) on the raw data;
(2) per-sample scores — magnitude M and von Mises–Fisher direction D of ∇θ L_CE(x_i, y_i; θ_b),
aggregated by the λ-weighted harmonic mean S, acceptance p_s(i) = min S / S(i)
(:mod:`benchmark.per_sample`); (3) the de-biased model trained with CE on batches drawn by the
rejection sampler of Algorithm 1, with the paper's augmentations.

Two recipes, because the released code does not do what the paper describes (see
shared/PROTOCOL-FACTS.md, "PGD"):

- ``pgd`` (default) — the paper: Algorithm 2 with Table 4's Colored/Watermarked MNIST
  hyperparameters (lr 0.01, momentum 0.8, weight decay 1e-3, batch 256, 100 epochs, decay at 20 /
  40 / 60 / 80 % of training, k = 100), harmonic-mean score S(M, D; λ), rejection sampling,
  de-biased model from scratch. Default λ = 0 (S = M, the magnitude score): Table 4 gives no λ,
  Table 11 reports the same accuracy for λ ∈ {0, 1, 10, 100}, and the released code scores by the
  gradient norm alone — the λ = 0 limit of S — so λ = 0 is the value the published numbers are
  consistent with. ``--set lam=1`` (or 10, 100) adds the vMF direction term; see the note below
  on what it does to the scores.
- ``pgd.official`` — sumyeongahn/PGD @ 0265520 run with ``--reproduce``: SGD lr 0.02, momentum 0.9,
  weight decay 1e-3, batch 128, StepLR(40, 0.1) (utils/pre_conf.py); score = p-norm of the fc.weight
  gradient with p = norm_scale = 0.7 (train.py:39, learner.py:330), probability ∝ score
  (learner.py:334-337), drawn i.i.d. by inverse CDF (module/data.py:50,59-64); the vMF code is never
  called; the de-biased model starts from the biased model's weights (learner.py:346); training
  batches of both phases are augmented (module/data.py:9-16).

Augmentation belongs to the dataset protocol: ``colored_mnist_ratio`` and ``watermarked_mnist``
apply the paper's RandomResizedCrop / ColorJitter / RandomRotation (batched on the device) to every
training batch the engine draws, for every method, as the paper does (App. A.1, App. C). PGD adds
none of its own; ``augment_biased`` only decides whether the biased phase, which PGD drives
itself, asks the loader for augmented batches.

Scoring runs the biased model in eval mode on un-augmented images (the official code scores
augmented ones, since its scoring loop reuses the training loader).

Note on λ (why λ = 1 is not the default): with λ ≥ 1 the aggregate is dominated by its direction
term. 1/S = (λ/D + 1/M)/(1 + λ), and with Table 4's k = 100 the fitted κ̂ is in the hundreds, so the
relative vMF likelihood spans the whole 1e-8 floor the official calc_vmf applies and a few per cent
of the samples (the least typical directions) can take most of the draws, where PGD Table 11
reports the same accuracy for every λ. How much of the draws goes to the minority under each λ,
and the resulting minority accuracy, is not measured in the result store yet: ``prepare`` records
``pgd.conflicting_draw_share`` and ``pgd.draw_ess_fraction`` in every run, and the ``pgd.table11``
suite and report compare λ ∈ {0, 1, 10, 100}; the finding, with the stored records that back it
(or "not yet measured"), is in results/papers/pgd/findings.toml and every report. For reference,
the paper's Colored MNIST minority accuracy at 99 % bias is 97.76 ± 0.36 (PGD Table 1,
results/papers/pgd/table1.csv).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from benchmark import Method, hp, register_method
from benchmark import per_sample as ps
from benchmark.pack_data import PackedData
from benchmark.pack_module import PackedModule
from benchmark.per_sample import Rebatch
from benchmark.losses import generalized_cross_entropy
from benchmark.nets import build_backbone
from benchmark import optim
from benchmark.optim import TrainHParams

_LR_GAMMA_NOTE = ("PGD Table 4 'LR decay' (CM/WM), as printed: ×0.001 at 20 % of the epochs all but stops "
                  "training there (the real-world columns print 0.1, the official StepLR gamma is 0.1); "
                  "kept literal, as benchmark/recipes.py PGD_TABLE4_MNIST does for every row")


@dataclass(frozen=True)
class Table4HParams(TrainHParams):
    """The optimisation settings PGD's Table 4 shares across all algorithms (Colored / Watermarked
    MNIST columns) as the defaults of ``pgd``, ``repair``, ``aflite`` and ``denoise``; the suites
    apply the same values to every row through :data:`benchmark.recipes.PGD_TABLE4_MNIST`."""

    lr: float = hp(0.01, "PGD Table 4 (CM/WM)", space=lambda r: r.choice([0.005, 0.01, 0.02]))
    momentum: float = hp(0.8, "PGD Table 4 (CM/WM)")
    weight_decay: float = hp(1e-3, "PGD Table 4 (CM/WM)")
    batch_size: int = hp(256, "PGD Table 4 (CM/WM)")
    epochs: int = hp(100, "PGD Table 4 (CM/WM)", space=lambda r: r.choice([50, 100]))
    lr_milestones: tuple[float, ...] = hp((0.2, 0.4, 0.6, 0.8), "PGD Table 4 'LR decay epoch'",
                                          "decay points as fractions of the epochs")
    lr_step: int = hp(0, "PGD Table 4 uses milestones; official --reproduce: 40",
                      "StepLR period in epochs (used when lr_milestones is empty)")
    lr_gamma: float = hp(0.001, _LR_GAMMA_NOTE, "learning-rate decay factor")


@dataclass(frozen=True)
class PGDHParams(Table4HParams):
    biased_epochs: int = hp(100, "PGD Table 4 epochs; official train.py:32 (one --epochs for both phases)",
                            "epochs of the GCE-trained biased model (Method.prepare)")
    q: float = hp(0.7, "PGD Table 4; official learner.py:263 (hard-coded)", "GCE q of the biased model")
    score: str = hp("harmonic", "PGD Sec. 4.2 (harmonic); official learner.py:330-337 (pnorm)",
                    "sampling score: harmonic(M, D) | magnitude | direction | pnorm (probability ∝ ‖∇θ‖_p)",
                    choices=("harmonic", "magnitude", "direction", "pnorm"))
    lam: float = hp(0.0, "PGD Sec. 4.2 defines λ, Table 4 gives none, Table 11: same accuracy for λ ∈ {0, 1, 10, "
                         "100}; official learner.py:330-337 scores by the gradient norm alone (the λ = 0 limit)",
                    "λ of the harmonic mean: 0 = magnitude only, large = direction only",
                    space=lambda r: r.choice([0.0, 1.0, 10.0, 100.0]))
    top_k: int = hp(100, "PGD Table 4 'Dimension size K' (CM/WM)", "dominant gradient dimensions for the vMF fit")
    norm_p: float = hp(2.0, "PGD Sec. 4.1 (Euclidean); official norm_scale 0.7 (train.py:39)",
                       "order of the gradient norm")
    score_params: str = hp("fc", "official learner.py:302 (fc.weight); the paper's θ is not restricted",
                           "parameters whose per-sample gradient is scored: fc (closed form), all, or name prefixes")
    sampler: str = hp("rejection", "PGD Algorithm 1; official module/data.py:50,59-64 (multinomial)",
                      "rejection (Algorithm 1) or multinomial (i.i.d. inverse-CDF draws)",
                      choices=("rejection", "multinomial"))
    init_from_biased: bool = hp(False, "PGD Algorithm 2 (fresh θ_d); official learner.py:346 (copies θ_b)",
                                "start the de-biased model from the biased model's weights")
    augment_biased: bool = hp(False, "PGD Algorithm 2 line 5 (no A(·)); official module/data.py:9-16 (augments)",
                              "let the loader augment the biased model's batches")

    def check(self):
        if self.top_k < 1:
            raise ValueError(f"top_k={self.top_k} must be >= 1")
        if self.lam < 0:
            raise ValueError(f"lam={self.lam} must be >= 0")
        if self.norm_p <= 0:
            raise ValueError(f"norm_p={self.norm_p} must be > 0")


@dataclass(frozen=True)
class PGDOfficialHParams(PGDHParams):
    lr: float = hp(0.02, "official utils/pre_conf.py (--reproduce)")
    momentum: float = hp(0.9, "official utils/pre_conf.py (--reproduce)")
    weight_decay: float = hp(1e-3, "official utils/pre_conf.py (--reproduce)")
    batch_size: int = hp(128, "official utils/pre_conf.py (--reproduce)")
    epochs: int = hp(100, "official train.py:32")
    lr_milestones: tuple[float, ...] = hp((), "official utils/pre_conf.py (StepLR, no milestones)")
    lr_step: int = hp(40, "official utils/pre_conf.py (StepLR step 40)")
    lr_gamma: float = hp(0.1, "official utils/pre_conf.py (StepLR gamma 0.1)")
    biased_epochs: int = hp(100, "official train.py:32")
    score: str = hp("pnorm", "official learner.py:330-337", choices=("harmonic", "magnitude", "direction", "pnorm"))
    norm_p: float = hp(0.7, "official train.py:39 (norm_scale)")
    sampler: str = hp("multinomial", "official module/data.py:50,59-64", choices=("rejection", "multinomial"))
    init_from_biased: bool = hp(True, "official learner.py:346")
    augment_biased: bool = hp(True, "official module/data.py:9-16 (the train loader augments)")


# --- shared helpers (also used by the denoise wrapper, REPAIR and AFLite) ----------------------------

def make_scheduler(opt: torch.optim.Optimizer, hp_: Table4HParams, epochs: int):
    """MultiStepLR at round(fraction · epochs) (Table 4), else StepLR(lr_step), else a constant
    rate (:func:`benchmark.optim.make_scheduler`, with a constant schedule instead of None)."""
    sched = optim.make_scheduler(opt, hp_, epochs)
    return sched if sched is not None else torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def fit(net: nn.Module, loader, epochs: int, hp_: Table4HParams, loss: str = "ce", q: float = 0.7,
        augment: bool = True, indices: torch.Tensor | None = None) -> list[float]:
    """Train ``net`` for ``epochs`` with Table 4's SGD and schedule on the loader's samples (or on
    ``indices``), uniform random order from the global generator; returns seconds per epoch.

    ``loader`` may also be a :class:`benchmark.pack_data.PackedData` of K runs with ``net`` their
    stacked networks (a :class:`benchmark.pack_module.PackedModule`): then each run draws its order
    and augmentation in its own RNG stream and its loss is its own batch mean, so each run trains
    as it would alone (the stacked SGD is K independent ones).

    Args:
        loss: "ce" or "gce" (generalized cross-entropy with ``q``, Zhang & Sabuncu 2018).
        augment: ask the loader for augmented batches (the dataset's train augmentation).
    """
    data = loader if isinstance(loader, PackedData) else PackedData.single(loader)
    opt = optim.make_optimizer(net.parameters(), hp_)
    sched = make_scheduler(opt, hp_, epochs)
    pool = torch.arange(len(data)) if indices is None else indices.cpu()
    net.train()
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        orders = []
        for j in range(data.size):
            with data.stream(j):
                orders.append(pool[torch.randperm(len(pool))].to(data.device))
        for i in range(0, len(pool), hp_.batch_size):
            batch = data.batch([o[i:i + hp_.batch_size] for o in orders], augment=augment)
            logits = net(batch.x)
            if loss == "gce":
                value = generalized_cross_entropy(logits, batch.y, q, reduction="none")
            else:
                value = F.cross_entropy(logits, batch.y, reduction="none")
            opt.zero_grad(set_to_none=True)
            value.reshape(data.size, -1).mean(1).sum().backward()  # each run's own mean
            opt.step()
        sched.step()
        times.append(time.perf_counter() - t0)
    return times


class ResizableBuffers:
    """Mixin for methods whose per-sample buffers get their size in ``prepare``: loading a state
    dict (checkpoint resume, ``engine.load_trained``) first resizes them to the stored shape."""

    resizable: tuple[str, ...] = ()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in self.resizable:
            stored = state_dict.get(prefix + name)
            if stored is not None:
                current = getattr(self, name)
                setattr(self, name, torch.empty(stored.shape, dtype=stored.dtype, device=current.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def gradient_sampling_weight(net: nn.Module, loader, hp_: PGDHParams, num_classes: int) -> tuple[torch.Tensor, dict]:
    """Per-sample sampling weights (∝ probability of being drawn) from the biased model ``net``.

    harmonic/magnitude/direction: weight = 1/S(i) (∝ p_s(i) = min S / S(i)), with M and D from
    :mod:`benchmark.per_sample`; pnorm: weight = ‖∇θ_i‖_p. Returns the weights (float64, N) and
    timing metrics.
    """
    was_training = net.training
    net.eval()
    t0 = time.perf_counter()
    data = Rebatch(loader)
    want_dir = hp_.score == "direction" or (hp_.score == "harmonic" and hp_.lam > 0)
    if hp_.score_params == ps.FC:
        stats = ps.closed_form_stats(net, data, num_classes, hp_.top_k, hp_.norm_p, want_sub=want_dir)
    else:
        names = ps.select_params(net, hp_.score_params)
        stats = ps.func_stats(net, names, data, num_classes, hp_.top_k, hp_.norm_p)
    y = loader.split.y
    if hp_.score == "pnorm":
        weight = stats.norm.clamp_min(ps.EPS_NORM)
    else:
        m = ps.magnitude_score(stats.norm, y, num_classes)
        if hp_.score == "magnitude" or not want_dir:
            s = m
        else:
            d = ps.direction_score(stats.sub, y, num_classes)
            s = d if hp_.score == "direction" else ps.harmonic_score(m, d, hp_.lam)
        weight = 1.0 / s
    seconds = time.perf_counter() - t0
    net.train(was_training)
    return weight, {"score_s": round(seconds, 3), "score_samples_per_s": round(len(y) / max(seconds, 1e-9), 1)}


def draw_epoch(weight: torch.Tensor, n: int, sampler: str, generator: torch.Generator) -> torch.Tensor:
    """One epoch of ``n`` indices drawn ∝ ``weight`` by Algorithm 1 (rejection) or i.i.d. draws."""
    if sampler == "rejection":
        return ps.rejection_sample(weight / weight.max(), n, generator)
    return ps.categorical_sample(weight, n, generator)


def sampling_summary(weight: torch.Tensor, aligned: torch.Tensor, prefix: str) -> dict[str, float]:
    """How much the weights favour bias-conflicting samples: their share of the training set, their
    expected share of the draws, and the effective sample size (Σw)²/Σw² as a fraction of N (how
    spread the draws are). Metrics only: training never reads ``aligned``."""
    w = weight.double().cpu()
    conflicting = ~aligned.cpu().bool()
    return {f"{prefix}conflicting_fraction": round(float(conflicting.double().mean()), 6),
            f"{prefix}conflicting_draw_share": round(float(w[conflicting].sum() / w.sum()), 6),
            f"{prefix}draw_ess_fraction": round(float(w.sum() ** 2 / (w ** 2).sum() / len(w)), 6)}


def score_histogram(weight: torch.Tensor, aligned: torch.Tensor, bins: int = 50) -> dict[str, list]:
    """Histogram of log10 of the per-sample sampling weights (the normalised scores) of bias-aligned
    and bias-conflicting training samples on shared edges — PGD Figure 4(c); read by the report's
    ``score_histogram`` figure. Metrics only: training never reads ``aligned``."""
    logw = weight.double().cpu().clamp_min(1e-300).log10()
    edges = torch.linspace(float(logw.min()), float(logw.max()) + 1e-12, bins + 1, dtype=torch.float64)
    mask = aligned.cpu().bool()
    return {"edges": [round(float(e), 6) for e in edges], "x_label": "log10 sampling weight",
            "aligned": torch.histogram(logw[mask], edges).hist.long().tolist(),
            "conflicting": torch.histogram(logw[~mask], edges).hist.long().tolist()}


@register_method("pgd")
class PGD(ResizableBuffers, Method):
    """PGD: resample by per-sample-gradient scores of a GCE-biased model (paper recipe, Table 4)."""

    HParams = PGDHParams
    paper = "Ahn et al., Mitigating Dataset Bias Using Per-Sample Gradients from a Biased Classifier (ICLR 2022 submission)"
    packable = True  # both phases: prepare_pack trains the K biased models as one stacked model
    tiny_hparams = {"biased_epochs": 1}
    quick_hparams = {"biased_epochs": 2}  # preparation budget for --quick smoke runs
    resizable = ("sample_weight",)

    def __init__(self, hparams: PGDHParams, info, epochs):
        super().__init__(hparams, info, epochs)
        self.biased = build_backbone(info)
        self.net = build_backbone(info)
        self.optimizers["main"] = optim.make_optimizer(self.net.parameters(), hparams)
        self.schedulers["main"] = make_scheduler(self.optimizers["main"], hparams, epochs)
        self.register_buffer("sample_weight", torch.zeros(0, dtype=torch.float64))

    def prepare(self, loader):
        return self.prepare_pack(PackedData.single(loader))[0]

    def prepare_pack(self, data):
        """The biased phase of every run of the pack: the K biased models trained as one stacked
        model (:func:`fit`), then each run's samples scored by its own biased model."""
        hp_ = self.hparams
        times = fit(self.biased, data, hp_.biased_epochs, hp_, loss="gce", q=hp_.q, augment=hp_.augment_biased)
        packed = isinstance(self.biased, PackedModule)
        weights, out = [], []
        for j, loader in enumerate(data.loaders):
            with data.stream(j):
                net = self.biased.member(j) if packed else self.biased
                weight, metrics = gradient_sampling_weight(net, loader, hp_, self.info.num_classes)
            weights.append(weight)
            metrics["biased_epoch_s"] = round(sum(times) / max(len(times), 1), 3)
            metrics.update(sampling_summary(weight, loader.split.aligned, "pgd."))
            metrics["pgd.score_hist"] = score_histogram(weight, loader.split.aligned)
            out.append(metrics)
        self.sample_weight = torch.cat(weights).to(self.sample_weight.device)
        if hp_.init_from_biased:
            self.net.load_state_dict(self.biased.state_dict())
        return out

    def sample_indices(self, n, generator):
        if self.sample_weight.numel() != n:
            raise RuntimeError(f"pgd scored {self.sample_weight.numel()} samples but the epoch has {n}; run prepare first")
        return draw_epoch(self.sample_weight, n, self.hparams.sampler, generator)

    def update(self, batch):
        loss = self.per_run_mean(F.cross_entropy(self.net(batch.x), batch.y, reduction="none"))
        opt = self.optimizers["main"]
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        return {"loss": loss.detach()}

    def predict(self, x):
        return self.net(x)

    def features(self, x):
        return self.net.f(x)


@register_method("pgd.official")
class PGDOfficial(PGD):
    """PGD as the released code runs it (--reproduce): p-norm score, i.i.d. draws, init from θ_b."""

    HParams = PGDOfficialHParams
    packable = True  # only the hyperparameters differ from pgd
