"""Vanilla: the backbone trained with cross-entropy on the biased training set (the baseline).

Defaults are LNL's baseline (the "Baseline" of LNL Fig. 4 / Tables 1-2), read off the official
code (feidfoe/learning-not-to-learn @ fad2ec8; shared/PROTOCOL-FACTS.md): SGD, momentum 0.9,
weight decay 5e-4 (trainer.py:58-61), lr 0.01 (option.py:12, baseline_train.sh:15), ×0.1 every
40 epochs (option.py:13-14), 100 epochs, batch 128.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmark import Method, hp, register_method
from benchmark.nets import build_backbone


@dataclass(frozen=True)
class VanillaHParams:
    lr: float = hp(0.01, "LNL official option.py:12", space=lambda r: 10 ** r.uniform(-3, -1))
    momentum: float = hp(0.9, "LNL official trainer.py:58-61")
    weight_decay: float = hp(5e-4, "LNL official trainer.py:58-61", space=lambda r: 10 ** r.uniform(-5, -3))
    batch_size: int = hp(128, "LNL official option.py", space=lambda r: r.choice([64, 128, 256]))
    epochs: int = hp(100, "LNL official option.py")
    lr_step: int = hp(40, "LNL official option.py:13-14", "epochs between ×lr_gamma decays")
    lr_gamma: float = hp(0.1, "LNL official option.py:13-14")


@register_method("vanilla")
class Vanilla(Method):
    """Plain empirical risk minimisation on the biased training data (baseline)."""

    HParams = VanillaHParams
    paper = "baseline"
    packable = True

    def __init__(self, hparams: VanillaHParams, info, epochs):
        super().__init__(hparams, info, epochs)
        self.net = build_backbone(info)
        self.optimizers["main"] = torch.optim.SGD(self.net.parameters(), lr=hparams.lr, momentum=hparams.momentum,
                                                  weight_decay=hparams.weight_decay)
        self.schedulers["main"] = torch.optim.lr_scheduler.StepLR(self.optimizers["main"], hparams.lr_step,
                                                                  hparams.lr_gamma)

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
