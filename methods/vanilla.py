"""Vanilla: the backbone trained with cross-entropy on the biased training set (the baseline).

Defaults are LNL's baseline (the "Baseline" of LNL Fig. 4 / Tables 1-2), read off the official
code (feidfoe/learning-not-to-learn @ fad2ec8; shared/PROTOCOL-FACTS.md): SGD, momentum 0.9,
weight decay 5e-4 (trainer.py:58-61), lr 0.01 (option.py:12, baseline_train.sh:15), ×0.1 every
40 epochs (option.py:13-14), 100 epochs, batch 128 — the defaults of :class:`benchmark.optim.TrainHParams`.
A suite replaces them with its paper's recipe (:mod:`benchmark.recipes`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from benchmark import Method, register_method
from benchmark.nets import build_backbone
from benchmark.optim import TrainHParams, add_optimizer


@dataclass(frozen=True)
class VanillaHParams(TrainHParams):
    """Only the shared training fields; their defaults are LNL's baseline (benchmark.optim)."""


@register_method("vanilla")
class Vanilla(Method):
    """Plain empirical risk minimisation on the biased training data (baseline)."""

    HParams = VanillaHParams
    paper = "baseline"
    packable = True

    def __init__(self, hparams: VanillaHParams, info, epochs):
        super().__init__(hparams, info, epochs)
        self.net = build_backbone(info)
        add_optimizer(self, "main", self.net.parameters(), epochs)

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
