"""Learning from Failure (Nam et al., "Learning from Failure: Training Debiased Classifier from
Biased Classifier", NeurIPS 2020): train an intentionally biased model with generalized
cross-entropy and, simultaneously, a de-biased model whose per-sample cross-entropy is weighted
by the relative difficulty W(x) = CE_b(x) / (CE_b(x) + CE_d(x)) (LfF Eq. 2-3).

Details from the official code (alinlab/LfF @ e66796e; shared/PROTOCOL-FACTS.md):

- Biased model: GCE with q = 0.7 (module/loss.py:10). LfF writes GCE in its gradient form,
  ``CE · q · p_y^q`` with p_y detached (module/loss.py:14-24); ``q · GCE`` with
  GCE = (1 − p_y^q)/q (``benchmark.losses``) has exactly that gradient, which we use.
- Per-sample losses are CE of both models on the batch (train mode), detached, smoothed by a
  per-sample exponential moving average ``ema[i] = α·ema[i] + (1 − α·seen[i])·loss`` — the first
  visit takes the loss as is — with α = 0.7 (train.py:136-137, util.py:32-35).
- Class-wise normalisation: each EMA loss is divided by the maximum EMA loss over *all*
  training samples of its class (train.py:207-215, util.py:37-39), then
  W = ema_b / (ema_b + ema_d + 1e-8) (train.py:218).
- One step updates both models on ``GCE_b.mean() + (CE_d · W).mean()`` (train.py:227-240).
- Adam, lr 1e-3, no weight decay, batch 256 (config.py:37-40); 100 epochs on Colored MNIST
  (config.py:60: 235 steps × 100). The paper reports the de-biased model.

The EMA tables are buffers sized to the training set (created in :meth:`prepare`), so they are
checkpointed with the model and a resumed run continues with exactly the same weights.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmark import Method, hp, register_method
from benchmark.losses import generalized_cross_entropy
from benchmark.nets import build_backbone
from benchmark.optim import OPTIMIZERS, TrainHParams, add_optimizer


@dataclass(frozen=True)
class LfFHParams(TrainHParams):
    q: float = hp(0.7, "LfF official module/loss.py:10", "GCE exponent of the biased model",
                  space=lambda r: r.choice([0.5, 0.7, 0.9]))
    ema_alpha: float = hp(0.7, "LfF official train.py:136-137", "weight of the old value in the per-sample loss EMA",
                          space=lambda r: r.choice([0.5, 0.7, 0.9]))
    optimizer: str = hp("adam", "LfF official config.py:38", choices=OPTIMIZERS)
    lr: float = hp(1e-3, "LfF official config.py:39", space=lambda r: 10 ** r.uniform(-4, -2))
    momentum: float = hp(0.9, "LfF official train.py:96 (SGD branch only)")
    weight_decay: float = hp(0.0, "LfF official config.py:40")
    batch_size: int = hp(256, "LfF official config.py:37,65")
    epochs: int = hp(100, "LfF official config.py:60 (235 steps × 100 on Colored MNIST)")
    lr_step: int = hp(0, "LfF official (no schedule)", "epochs between ×lr_gamma decays (0 = none)")
    lr_milestones: tuple[float, ...] = hp((), "LfF official (no schedule)", "decay at these fractions of the epochs")
    lr_gamma: float = hp(0.1, "unused by LfF")


@register_method("lff")
class LfF(Method):
    """Learning from Failure: GCE-biased model + de-biased model weighted by relative difficulty (Nam et al. 2020)."""

    HParams = LfFHParams
    paper = "Nam et al., Learning from Failure: Training Debiased Classifier from Biased Classifier, NeurIPS 2020"
    packable = True

    def __init__(self, hparams: LfFHParams, info, epochs):
        super().__init__(hparams, info, epochs)
        self.net_b = build_backbone(info)
        self.net_d = build_backbone(info)
        add_optimizer(self, "b", self.net_b.parameters(), epochs)
        add_optimizer(self, "d", self.net_d.parameters(), epochs)
        # Per-sample EMA tables; sized to the training set in prepare() (or by a loaded state).
        for name, dtype in (("ema_b", torch.float32), ("ema_d", torch.float32), ("seen", torch.float32),
                            ("train_y", torch.int64)):
            self.register_buffer(name, torch.zeros(0, dtype=dtype))
        self._register_load_state_dict_pre_hook(self._resize_tables)

    def _resize_tables(self, state_dict, prefix, *args, **kwargs):
        for name in ("ema_b", "ema_d", "seen", "train_y"):
            saved = state_dict.get(prefix + name)
            if saved is not None and saved.shape != getattr(self, name).shape:
                setattr(self, name, torch.zeros_like(saved, device=getattr(self, name).device))

    def prepare(self, loader):
        n, dev = len(loader), loader.device
        self.ema_b = torch.zeros(n, device=dev)
        self.ema_d = torch.zeros(n, device=dev)
        self.seen = torch.zeros(n, device=dev)
        self.train_y = loader.split.y.clone()
        return {}

    def _ema(self, table: torch.Tensor, idx: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
        a = self.hparams.ema_alpha
        table[idx] = a * table[idx] + (1 - a * self.seen[idx]) * loss
        return table[idx]

    def _class_of(self, idx: torch.Tensor) -> torch.Tensor:
        """The normalisation group of training samples ``idx``: their class, within their run of a pack
        (the tables hold ``pack_size`` runs' samples one after another)."""
        per_run = len(self.train_y) // self.pack_size
        return self.train_y[idx] + self.info.num_classes * torch.div(idx, per_run, rounding_mode="floor")

    def _class_max(self, table: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(self.info.num_classes * self.pack_size, device=table.device)
        groups = self._class_of(torch.arange(len(table), device=table.device))
        return out.scatter_reduce(0, groups, table, reduce="amax", include_self=True)

    def update(self, batch):
        hp_ = self.hparams
        idx, y = batch.idx, batch.y
        logits_b = self.net_b(batch.x)
        logits_d = self.net_d(batch.x)
        with torch.no_grad():
            ce_b = F.cross_entropy(logits_b, y, reduction="none")
            ce_d = F.cross_entropy(logits_d, y, reduction="none")
            ema_b = self._ema(self.ema_b, idx, ce_b)
            ema_d = self._ema(self.ema_d, idx, ce_d)
            self.seen[idx] = 1.0
            # Class-wise normalisation by the max over all training samples of the class.
            group = self._class_of(idx)
            ema_b = ema_b / self._class_max(self.ema_b)[group].clamp_min(1e-12)
            ema_d = ema_d / self._class_max(self.ema_d)[group].clamp_min(1e-12)
            weight = ema_b / (ema_b + ema_d + 1e-8)
        loss_b = hp_.q * self.per_run_mean(generalized_cross_entropy(logits_b, y, hp_.q, reduction="none"))
        loss_d = self.per_run_mean(F.cross_entropy(logits_d, y, reduction="none") * weight)
        for o in self.optimizers.values():
            o.zero_grad(set_to_none=True)
        (loss_b + loss_d).sum().backward()
        for o in self.optimizers.values():
            o.step()
        return {"loss": loss_d.detach(), "loss_b": loss_b.detach(), "ce_d": self.per_run_mean(ce_d),
                "ce_b": self.per_run_mean(ce_b), "weight": self.per_run_mean(weight)}

    def predict(self, x):
        return self.net_d(x)

    def features(self, x):
        return self.net_d.f(x)

    def evaluate_extra(self, batch):
        hit = (self.net_b(batch.x).argmax(1) == batch.y).float()
        return {"biased_model_acc": torch.stack([hit.sum(), hit.new_tensor(float(len(hit)))])}
