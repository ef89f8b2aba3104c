"""GroupDRO (Sagawa et al., "Distributionally Robust Neural Networks for Group Shifts", ICLR 2020):
minimise the worst expected loss over the (label × bias) groups with an online mirror-ascent
weighting of the groups.

Algorithm 1: for each batch, the mean loss ℓ_g of each group g in it; group weights
q_g ← q_g · exp(η_q · (ℓ_g + C / √n_g)) then renormalised; the model takes an SGD step on
Σ_g q_g ℓ_g. C is the group adjustment of Sec. 5 (a larger loss bonus for small groups, n_g =
training samples of group g); C = 0 is plain GroupDRO. As in the official code (kohpangwei/group_DRO
loss.py), groups absent from a batch have ℓ_g = 0 there, and q is a buffer carried across epochs
(checkpointed with the model). Batches are drawn uniformly, as in the paper's Algorithm 1
(BalancingGroups additionally samples groups uniformly for GroupDRO; ``rwg`` does that alone).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmark import hp, register_method
from benchmark_methods._subpop import GroupERMHParams, group_counts, group_ids
from benchmark_methods.vanilla import Vanilla


@dataclass(frozen=True)
class GroupDROHParams(GroupERMHParams):
    eta_q: float = hp(0.01, "group_DRO official run_expt.py (--robust_step_size default 0.01)",
                      "step size η_q of the group-weight update", space=lambda r: 10 ** r.uniform(-3, -1))
    adjustment: float = hp(0.0, "group_DRO official run_expt.py (--generalization_adjustment default 0); "
                                "Sagawa et al. 2020 Sec. 5 tune C ∈ {0, …, 5}",
                           "group adjustment C (loss bonus C/√n_g for small groups)",
                           space=lambda r: float(r.choice([0, 1, 2, 3, 4, 5])))


@register_method("group_dro")
class GroupDRO(Vanilla):
    """GroupDRO (Sagawa et al. 2020): online worst-group weighting of per-group losses."""

    HParams = GroupDROHParams
    uses_bias_labels = True
    paper = "Sagawa et al., Distributionally Robust Neural Networks for Group Shifts, ICLR 2020"

    def __init__(self, hparams: GroupDROHParams, info, epochs):
        super().__init__(hparams, info, epochs)
        self.n_groups = info.num_classes * info.num_bias_classes
        self.register_buffer("q", torch.full((self.n_groups,), 1.0 / self.n_groups))
        self.register_buffer("bonus", torch.zeros(self.n_groups))

    def prepare(self, loader):
        s = loader.split
        n = group_counts(s.y, s.b, self.info.num_classes, self.info.num_bias_classes)
        c = self.hparams.adjustment
        self.bonus = torch.where(n > 0, c / n.clamp(min=1).sqrt(), torch.zeros_like(n)).to(self.q.device)
        return {"group_dro.train_group_n": n.tolist()}

    def update(self, batch):
        losses = F.cross_entropy(self.net(batch.x), batch.y, reduction="none")
        g = group_ids(batch.y, batch.b, self.info.num_bias_classes)
        count = torch.bincount(g, minlength=self.n_groups).float()
        group_loss = torch.zeros(self.n_groups, device=losses.device).index_add(0, g, losses) / count.clamp(min=1)
        with torch.no_grad():
            q = self.q * torch.exp(self.hparams.eta_q * (group_loss.detach() + self.bonus))
            self.q.copy_(q / q.sum())
        loss = (self.q * group_loss).sum()
        opt = self.optimizers["main"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": losses.detach().mean(), "robust_loss": loss.detach(),
                "q_max": self.q.max(), "q_entropy": -(self.q * self.q.clamp(min=1e-12).log()).sum() / math.log(self.n_groups)}
