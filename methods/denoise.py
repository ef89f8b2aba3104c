"""De-noising module of PGD (Ahn et al., ICLR 2022 submission, Sec. 5, Algorithm 3), as a wrapper
that runs in front of any registered method: drop the samples whose loss under a noise model is
high *relative to its uncertainty*, then de-bias on what is left.

Algorithm 3: (1) train a noise model f_θn with cross-entropy on the raw (biased, noisy) training set
(App. B.3: with the RandomResizedCrop / ColorJitter / RandomRotation augmentation); (2) split by the
compensated loss L̃_i = L_CE(x_i, y_i; θ_n) / H(softmax f_θn(x_i)) (Eq. 2): D_clean = {L̃_i < δ},
D_noise = {L̃_i ≥ δ}, with δ = Σ_i L_CE,i / Σ_i H_i; (3) run the de-biasing method on D_clean.
Dividing by the entropy compensates the high loss of clean *minority* samples, which the noise model
also fails on but with an uncertain prediction, while noisy labels get a confident wrong one
(Sec. 5, Fig. 6). The paper gives no epochs for the noise model; we use Table 4's (its
hyperparameters are shared by all algorithms, App. A.1).

Usage — the wrapped method is named by ``inner`` and configured with ``inner_set``::

    python -m benchmark run --method denoise --dataset colored_mnist_ratio --bias-ratio 0.99 \\
        --set inner=pgd --set inner_set=biased_epochs=100,lam=1 --set noise_epochs=100
    # with 10 % flipped training labels (App. B.3) from the Python API: make_spec(..., label_noise=0.1)

``batch_size`` is the wrapper's and is passed to the inner method (the engine batches the main loop
with it); the inner method's ``epochs`` is the run's. The record's ``prepare`` holds the split's
counts by clean/noisy × majority/minority (Table 16) when the run has label noise.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmark import Method, hp, register_method
from benchmark.engine import Loader
from benchmark.hparams import from_dict
from benchmark.method import Batch
from benchmark.nets import build_backbone
from benchmark.optim import TrainHParams
from benchmark.registry import METHODS
from benchmark.per_sample import Rebatch
from benchmark_methods.pgd import ResizableBuffers, Table4HParams, fit

ENTROPY_EPS = 1e-12


def parse_overrides(text: str) -> dict[str, str]:
    """``"a=1,b=x"`` → {"a": "1", "b": "x"} (values are converted by the inner HParams)."""
    out = {}
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        if "=" not in item:
            raise ValueError(f"inner_set item {item!r} must look like name=value")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


@dataclass(frozen=True)
class DenoiseHParams(Table4HParams):
    inner: str = hp("pgd", "PGD Sec. 5 ('applicable in front of all prior de-biasing algorithms')",
                    "registered method trained on the clean split")
    inner_set: str = hp("", "ours", "overrides for the inner method's hyperparameters: name=value,name=value")
    noise_epochs: int = hp(100, "PGD Table 4 epochs (the paper does not state the noise model's)",
                           "epochs of the CE-trained noise model")
    augment_noise: bool = hp(True, "PGD App. B.3 (noise model trained with the three augmentations)",
                             "let the loader augment the noise model's batches")
    delta: float = hp(0.0, "PGD Eq. 2 (δ = Σ L / Σ H when 0)", "threshold on L/H; 0 = the paper's δ")

    def check(self):
        if self.inner == "denoise":
            raise ValueError("denoise cannot wrap itself")
        cls = METHODS.get(self.inner)
        sets = parse_overrides(self.inner_set)
        if "batch_size" in sets and int(sets["batch_size"]) != self.batch_size:
            raise ValueError("set batch_size on denoise itself (it batches the main loop), not in inner_set")
        from_dict(cls.HParams, sets)


def compensated_loss(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_CE, H(softmax)) per sample, in float64 so confident predictions do not round to 0."""
    logp = F.log_softmax(logits.double(), dim=1)
    loss = -logp.gather(1, y[:, None]).squeeze(1)
    entropy = -(logp.exp() * logp).sum(1)
    return loss, entropy


def clean_split(loss: torch.Tensor, entropy: torch.Tensor, delta: float = 0.0) -> tuple[torch.Tensor, float]:
    """D_clean mask {L/H < δ} and δ (PGD Eq. 2; δ = ΣL/ΣH unless given)."""
    if delta <= 0:
        delta = float(loss.sum() / entropy.sum().clamp_min(ENTROPY_EPS))
    return loss / entropy.clamp_min(ENTROPY_EPS) < delta, delta


def split_counts(keep: torch.Tensor, noisy: torch.Tensor, aligned: torch.Tensor) -> dict[str, int]:
    """PGD Table 16: samples before / after cleansing by clean/noisy × majority/minority."""
    out = {}
    for nname, nmask in (("clean", ~noisy), ("noisy", noisy)):
        for gname, gmask in (("major", aligned), ("minor", ~aligned)):
            cell = nmask & gmask
            out[f"denoise.before.{nname}_{gname}"] = int(cell.sum())
            out[f"denoise.kept.{nname}_{gname}"] = int((cell & keep).sum())
    return out


def subset_loader(loader: Loader, idx: torch.Tensor) -> Loader:
    """A :class:`Loader` over ``idx`` of ``loader``'s split (same device, normalisation, augmentation)."""
    return Loader(loader.split.subset(idx.to(loader.device)), loader.mean.flatten().tolist(),
                  loader.std.flatten().tolist(), loader.device, augment=loader.augment)


@register_method("denoise")
class Denoise(ResizableBuffers, Method):
    """PGD's de-noising module (Algorithm 3) in front of the method named by ``inner``."""

    HParams = DenoiseHParams
    paper = "Ahn et al. (PGD), Sec. 5 / Algorithm 3"
    tiny_hparams = {"noise_epochs": 1, "inner_set": "biased_epochs=1"}  # for the default inner (pgd)
    quick_hparams = {"noise_epochs": 2, "inner_set": "biased_epochs=2"}
    resizable = ("clean_idx", "position")

    def __init__(self, hparams: DenoiseHParams, info, epochs):
        super().__init__(hparams, info, epochs)
        cls = METHODS.get(hparams.inner)
        # The shared training fields (a suite's recipe) pass on to the inner method; inner_set overrides them.
        names = {f.name for f in dataclasses.fields(cls.HParams)}
        shared = {f.name: getattr(hparams, f.name) for f in dataclasses.fields(TrainHParams) if f.name in names}
        inner_hp = from_dict(cls.HParams, {**shared, **parse_overrides(hparams.inner_set),
                                           "batch_size": hparams.batch_size})
        self.inner = cls(inner_hp, info, epochs)
        self.noise_net = build_backbone(info)
        self.optimizers = self.inner.optimizers
        self.schedulers = self.inner.schedulers
        self.register_buffer("clean_idx", torch.zeros(0, dtype=torch.long))
        self.register_buffer("position", torch.zeros(0, dtype=torch.long))

    def prepare(self, loader):
        hp_ = self.hparams
        times = fit(self.noise_net, loader, hp_.noise_epochs, hp_, loss="ce", augment=hp_.augment_noise)
        t0 = time.perf_counter()
        self.noise_net.eval()
        with torch.no_grad():
            parts = [compensated_loss(self.noise_net(x), y) for x, y in Rebatch(loader)]
        loss, entropy = (torch.cat(t) for t in zip(*parts))
        keep, delta = clean_split(loss, entropy, hp_.delta)
        self.clean_idx = keep.nonzero().squeeze(1).to(self.clean_idx.device)
        position = torch.full((len(keep),), -1, dtype=torch.long, device=self.position.device)
        position[self.clean_idx] = torch.arange(len(self.clean_idx), device=position.device)
        self.position = position
        metrics = {"noise_epoch_s": round(sum(times) / max(len(times), 1), 3),
                   "denoise_split_s": round(time.perf_counter() - t0, 3), "denoise.delta": round(delta, 6),
                   "denoise.kept": int(keep.sum()), "denoise.total": len(keep)}
        split = loader.split
        if "noisy" in split.attrs:
            metrics.update(split_counts(keep.cpu(), split.attrs["noisy"].bool().cpu(), split.aligned.bool().cpu()))
        inner = self.inner.prepare(subset_loader(loader, self.clean_idx)) or {}
        metrics.update({f"inner.{k}": v for k, v in inner.items()})
        return metrics

    def sample_indices(self, n, generator):
        m = len(self.clean_idx)
        order = self.inner.sample_indices(m, generator)
        if order is None:
            order = torch.randperm(m, generator=generator)
        return self.clean_idx.cpu()[order.cpu()]

    def update(self, batch):
        local = self.position[batch.idx]
        return self.inner.update(Batch(batch.x, batch.y, batch.b, batch.aligned, local, batch.attrs))

    def predict(self, x):
        return self.inner.predict(x)

    def features(self, x):
        return self.inner.features(x)

    def end_epoch(self, epoch):
        return self.inner.end_epoch(epoch)

    def evaluate_batch(self, batch):
        return self.inner.evaluate_batch(batch)  # the inner method's, so features it shares are computed once
