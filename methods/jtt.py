"""JTT — Just Train Twice (Liu et al., "Just Train Twice: Improving Group Robustness without
Training Group Information", ICML 2021): train an ERM identification model for T epochs, collect
the training samples it misclassifies (the error set E), then train the final model with E
up-weighted by λ_up.

Algorithm 1: (1) ERM for T epochs → f_id; (2) E = {i : f_id(x_i) ≠ y_i}; (3) train from scratch on
the training set with every sample of E repeated λ_up times (the official code and BalancingGroups
@ 5b6d540 models.py ``JTT`` up-sample by duplication; here each epoch's order holds every sample
once and E's samples λ_up − 1 more times, shuffled). Steps (1)-(2) run in ``prepare`` (checkpointed,
so a resumed run does not repeat them). Training reads no bias labels; they enter only through
model selection, as in the paper (Sec. 4, worst-group validation accuracy).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmark import hp, register_method
from benchmark.nets import build_backbone
from benchmark_methods._subpop import GroupERMHParams
from benchmark_methods.pgd import ResizableBuffers
from benchmark_methods.vanilla import Vanilla


@dataclass(frozen=True)
class JTTHParams(GroupERMHParams):
    jtt_epochs: int = hp(60, "Liu et al. 2021 App. B (Waterbirds T = 60; CelebA T = 1)",
                         "T: epochs of the ERM identification model", space=lambda r: r.choice([1, 2, 3, 5]))
    jtt_up: float = hp(100.0, "Liu et al. 2021 App. B (Waterbirds λ_up = 100; CelebA 50)",
                       "λ_up: how many times each error-set sample appears per epoch",
                       space=lambda r: float(r.choice([4, 5, 6, 20, 50, 100])))  # BalancingGroups train.py grid

    def check(self):
        if self.jtt_epochs < 1:
            raise ValueError(f"jtt_epochs={self.jtt_epochs} must be >= 1")
        if self.jtt_up < 1 or not float(self.jtt_up).is_integer():
            raise ValueError(f"jtt_up={self.jtt_up} must be an integer >= 1 (samples are repeated)")


@register_method("jtt")
class JTT(ResizableBuffers, Vanilla):
    """JTT (Liu et al. 2021): up-weight the training errors of a briefly trained ERM model."""

    HParams = JTTHParams
    uses_bias_labels = False
    paper = "Liu et al., Just Train Twice: Improving Group Robustness without Training Group Information, ICML 2021"
    # Smoke budgets: an identification model trained for one epoch errs on most samples of a
    # 10-class task, and λ_up = 100 then makes an epoch ~100× longer; λ_up = 5 keeps it short.
    tiny_hparams = {"jtt_epochs": 1, "jtt_up": 5.0}
    quick_hparams = {"jtt_epochs": 1, "jtt_up": 5.0}
    resizable = ("error_set",)

    def __init__(self, hparams: JTTHParams, info, epochs):
        super().__init__(hparams, info, epochs)
        self.register_buffer("error_set", torch.zeros(0, dtype=torch.long))

    def prepare(self, loader):
        hp_ = self.hparams
        ident = build_backbone(self.info).to(loader.device)
        opt = torch.optim.SGD(ident.parameters(), lr=hp_.lr, momentum=hp_.momentum, weight_decay=hp_.weight_decay)
        n = len(loader)
        ident.train()
        for epoch in range(hp_.jtt_epochs):
            order = torch.randperm(n).to(loader.device)  # the run's seeded global generator
            for batch in loader.batches(order, hp_.batch_size, augment=True):
                loss = F.cross_entropy(ident(batch.x), batch.y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        ident.eval()
        wrong = torch.zeros(n, dtype=torch.bool, device=loader.device)
        with torch.no_grad():
            order = torch.arange(n, device=loader.device)
            for batch in loader.batches(order, 2048):
                wrong[batch.idx] = ident(batch.x).argmax(1) != batch.y
        self.error_set = wrong.nonzero().flatten().to(self.error_set.device)
        conflicting = ~loader.split.aligned
        return {"jtt.error_set_size": int(wrong.sum()),
                "jtt.error_set_fraction": float(wrong.float().mean()),
                # diagnostics only (training never reads them): how much of E is bias-conflicting
                "jtt.error_set_conflicting_share": float((wrong & conflicting).sum() / wrong.sum().clamp(min=1)),
                "jtt.conflicting_recall": float((wrong & conflicting).sum() / conflicting.sum().clamp(min=1))}

    def sample_indices(self, n, generator):
        extra = int(self.hparams.jtt_up) - 1
        order = torch.cat([torch.arange(n), self.error_set.cpu().repeat(extra)])
        return order[torch.randperm(len(order), generator=generator)]
