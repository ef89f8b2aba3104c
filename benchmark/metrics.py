"""Evaluation metrics on a split: unbiased accuracy, bias-aligned / bias-conflicting accuracy,
worst group, and the (target × bias class) accuracy matrix.

Groups are (target label × bias class) cells, as in the subpopulation-shift literature (Sagawa et
al. 2020): ``group_acc[y][b]`` with ``group_n[y][b]`` samples. Two averages of the group
accuracies are stored under names that say how they weight the groups, because papers use both
under the name "average accuracy" (jtt #2, deep_feature_reweighting #1):

* ``acc_group_size_weighted``: groups weighted by their size in this split — the plain accuracy,
  equal to ``acc``; on a biased split it is dominated by the majority groups;
* ``acc_group_unweighted``: every present group counts once ("balanced" accuracy: the accuracy
  under a uniform group distribution).

``worst_group_acc`` is the lowest accuracy over the groups present in the split. The
``align_conflict`` score is the mean of bias-aligned and bias-conflicting accuracy (the per-sample
``aligned`` flags): accuracy under equal aligned/conflicting mass, a selection criterion that
needs only the aligned flag of each validation sample, not its group. ``loss`` is the mean
cross-entropy of the split when the caller passes per-sample losses (validation-loss selection).

All counts are accumulated on the device as tensors and read back once per split.
"""
from __future__ import annotations

import torch


class SplitMeter:
    """Accumulates per-(target, bias) correct/total counts and method-specific extras."""

    def __init__(self, num_classes: int, num_bias_classes: int, device):
        self.correct = torch.zeros(num_classes, num_bias_classes, device=device)
        self.total = torch.zeros(num_classes, num_bias_classes, device=device)
        self.aligned = torch.zeros(2, 2, device=device)  # [aligned?][correct, total]
        self.extra: dict[str, torch.Tensor] = {}
        self.loss_sum = torch.zeros((), device=device)
        self.loss_n = 0

    def add(self, pred: torch.Tensor, y: torch.Tensor, b: torch.Tensor, aligned: torch.Tensor,
            loss: torch.Tensor | None = None) -> None:
        """Count one batch; ``loss`` (optional) holds per-sample losses, averaged into ``loss``."""
        if loss is not None:
            self.loss_sum += loss.detach().sum()
            self.loss_n += loss.numel()
        hit = (pred == y).float()
        a = aligned.long()
        self.aligned[:, 0] += torch.bincount(a, weights=hit, minlength=2)
        self.aligned[:, 1] += torch.bincount(a, minlength=2).float()
        nb = self.total.shape[1]
        flat = y * nb + b
        n = self.total.numel()
        self.total += torch.bincount(flat, minlength=n).view_as(self.total).float()
        self.correct += torch.bincount(flat, weights=hit, minlength=n).view_as(self.total)

    def add_extra(self, extra: dict[str, torch.Tensor]) -> None:
        for k, v in extra.items():
            self.extra[k] = self.extra.get(k, 0) + v.detach()

    def result(self) -> dict:
        """Metrics as plain Python numbers; aligned/conflicting follow the per-sample flags."""
        correct, total, al = self.correct.cpu(), self.total.cpu(), self.aligned.cpu()

        def ratio(c, t):
            return float(c / t) if t > 0 else float("nan")
        groups = total > 0
        group_acc = torch.where(groups, correct / total.clamp(min=1), torch.full_like(total, float("nan")))
        aligned_acc, conflicting_acc = ratio(al[1, 0], al[1, 1]), ratio(al[0, 0], al[0, 1])
        present = [x for x in (aligned_acc, conflicting_acc) if x == x]
        out = {
            "acc": ratio(correct.sum(), total.sum()),
            "aligned_acc": aligned_acc,
            "conflicting_acc": conflicting_acc,
            "worst_group_acc": float(group_acc[groups].min()) if groups.any() else float("nan"),
            "acc_group_size_weighted": ratio(correct.sum(), total.sum()),
            "acc_group_unweighted": float(group_acc[groups].mean()) if groups.any() else float("nan"),
            "align_conflict": sum(present) / len(present) if len(present) == 2 else float("nan"),
            "n": int(total.sum()),
            "group_acc": [[None if v != v else round(float(v), 6) for v in row] for row in group_acc],
            "group_n": total.long().tolist(),
        }
        if self.loss_n:
            out["loss"] = float(self.loss_sum.cpu()) / self.loss_n
        for k, v in self.extra.items():
            v = v.cpu()
            out[k] = ratio(v[0], v[1])
        return out
