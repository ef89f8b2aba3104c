"""Turning a Blind Eye (Alvi, Zisserman and Nellåker, ECCV Workshops 2018): joint learning and
unlearning (JLU) — spurious-variation classifiers learn to predict each bias from the features,
and the features learn to make every one of them output the uniform distribution.

Algorithm 1, per training batch here:

1. (lines 3-5) the spurious-variation classifiers h_m minimise L_s = Σ_m β_m L_m (Eq. 5), the
   cross-entropy of each bias label, on the current features f(x) (held fixed);
2. (line 6) f and the primary classifier g minimise L_p + α L_conf, with
   L_conf = (1/M) Σ_m L_conf,m (Eq. 4) and L_conf,m = −(1/K_m) Σ_k log p_k (Eq. 2), the
   cross-entropy between h_m's softmax and the uniform distribution (h fixed).

M heads (Eq. 4) are the dataset's ``DatasetInfo.bias_heads`` (or the ones named in ``heads``), each
with its own label column; a dense label (LNL's per-patch colour map of ``colored_mnist``) gets
LNL's convolutional head and its confusion loss is averaged over the labelled positions (Eq. 2
sums over the samples of the spurious dataset; unlabelled background has none). This is the
"BlindEye" of Learning Not to Learn Fig. 4, Table 1 and Table 2 ("a network trained with
confusion loss [1] instead of our regularization", LNL Sec. 5.2, re-implemented by the LNL
authors; their official code has no BlindEye), so the networks, the heads and the optimisation
are LNL's (feidfoe/learning-not-to-learn @ fad2ec8, see shared/PROTOCOL-FACTS.md).

Where the papers are silent: Alg. 1 trains h "while dL_s/dθ_s ≠ 0" — to convergence — before each
f step; ``h_steps`` h updates per batch approximate that (default 1, the one-h-step-per-f-step
schedule of the official LNL code, trainer.py:95-165, under which LNL compared the methods).
Blind Eye Sec. 5.5 also "approximated" the confusion loss by a KL divergence between the softmax
and the uniform distribution without saying which direction; ``confusion="kl"`` is KL(p‖u)
= −H(p) + log K (LNL's entropy term up to a constant), the default is Eq. 2. Sec. 5.5 weights the
losses by the inverse class frequency (``class_weighting``; off by default: MNIST digits are
balanced) and boosts the classification layers' learning rate ×10 on a frozen, pretrained
VGG-M (``head_lr_mult``; 1 here, since LNL trains every network at one rate from scratch).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from benchmark import Method, hp, register_method
from benchmark.method import grad_reverse
from benchmark.nets import bias_correct, build_backbone, make_bias_head
from benchmark.optim import TrainHParams, add_optimizer


@dataclass(frozen=True)
class BlindEyeHParams(TrainHParams):
    alpha: float = hp(0.1, "Blind Eye Sec. 5.5 (α in Eq. 3)", "α: weight of the confusion loss",
                      space=lambda r: 10 ** r.uniform(-2, 0))
    beta: float = hp(1.0, "Blind Eye Sec. 5.5 (β_m = 1 for every m)", "β_m: weight of each spurious classifier's loss (Eq. 5)")
    h_steps: int = hp(1, "LNL official trainer.py:95-165 (one h step per f step); Blind Eye Alg. 1 fits h to convergence",
                      "updates of the spurious classifiers per batch before the f, g update",
                      space=lambda r: r.choice([1, 2, 5]))
    heads: tuple[str, ...] = hp((), "ours", "names of the bias heads to unlearn (empty = every head of the dataset)")
    confusion: str = hp("ce_uniform", "Blind Eye Eq. 2", "'ce_uniform' = Eq. 2; 'kl' = KL(softmax‖uniform) (Sec. 5.5)",
                        choices=("ce_uniform", "kl"))
    class_weighting: bool = hp(False, "Blind Eye Sec. 5.5 (on for their imbalanced faces)",
                               "weight L_p and each L_m by the inverse relative class frequency in training")
    head_lr_mult: float = hp(1.0, "LNL official trainer.py:58-61 (one lr for all nets; Blind Eye Sec. 5.5: ×10)",
                             "learning-rate factor of the spurious classifiers")


def inverse_frequency(target: torch.Tensor, num_classes: int, ignore_index: int = -100) -> torch.Tensor:
    """Class weights ∝ 1 / relative frequency, scaled so the average sample weighs 1 (0 for absent classes)."""
    t = target.reshape(-1).long()
    t = t[(t != ignore_index) & (t >= 0) & (t < num_classes)]
    counts = torch.bincount(t, minlength=num_classes).float()
    w = torch.where(counts > 0, counts.sum() / counts.clamp(min=1), torch.zeros_like(counts))
    return w / max(int((counts > 0).sum()), 1)


def confusion_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int, kind: str = "ce_uniform",
                   runs: int = 1) -> torch.Tensor:
    """Blind Eye Eq. 2 per label position, averaged over each run's labelled positions: shape
    ``(runs,)`` for a batch of ``runs`` equal runs one after another (``Method.per_run_mean``)."""
    logp = F.log_softmax(logits, dim=1)
    if kind == "ce_uniform":
        per = -logp.mean(1)
    else:
        per = (logp.exp() * logp).sum(1) + math.log(logits.shape[1])
    per = per.reshape(runs, -1)
    valid = (target != ignore_index).to(per.dtype).reshape(runs, -1)
    return (per * valid).sum(1) / valid.sum(1).clamp(min=1)


def weighted_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, ignore_index: int,
                           runs: int = 1) -> torch.Tensor:
    """``F.cross_entropy(logits, target, weight, ignore_index=...)`` within each of ``runs`` equal
    runs of a packed batch, shape ``(runs,)``: run r's weighted mean over its labelled samples or
    positions, with its own class weights ``weight.view(runs, -1)[r]`` (the runs' weight vectors
    one after another, as ``benchmark.pack`` stacks the ``weight_*`` buffers)."""
    ce = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none").reshape(runs, -1)
    t = target.reshape(runs, -1)
    valid = t != ignore_index
    w = weight.view(runs, -1).gather(1, torch.where(valid, t, torch.zeros_like(t))) * valid
    return (w * ce).sum(1) / w.sum(1)


def accuracy_per_run(logits: torch.Tensor, target: torch.Tensor, ignore_index: int, runs: int = 1) -> torch.Tensor:
    """Each run's accuracy over its labelled samples or positions, shape ``(runs,)``."""
    valid = (target != ignore_index).reshape(runs, -1)
    correct = ((logits.argmax(1) == target).reshape(runs, -1) & valid).sum(1).float()
    return correct / valid.sum(1).clamp(min=1)


@register_method("blind_eye")
class BlindEye(Method):
    """Turning a Blind Eye's JLU: bias classifiers vs. a confusion loss to the uniform (Alvi et al. 2018)."""

    HParams = BlindEyeHParams
    uses_bias_labels = True
    paper = "Alvi et al., Turning a Blind Eye, ECCV Workshops 2018"
    use_grl: ClassVar[bool] = False  # blind_eye_grl: h's reversed gradient also reaches f
    packable = True  # every loss is per run; the class weights are stacked buffers, one block per run

    def __init__(self, hparams: BlindEyeHParams, info, epochs):
        super().__init__(hparams, info, epochs)
        known = [h.name for h in info.bias_heads]
        unknown = sorted(set(hparams.heads) - set(known))
        if not known:
            raise ValueError(f"{self.name} needs a dataset with bias heads; {info.name} has none")
        if unknown:
            raise ValueError(f"{self.name}: unknown bias heads {unknown} for {info.name}; its heads: {known}")
        self.head_specs = tuple(h for h in info.bias_heads if not hparams.heads or h.name in hparams.heads)
        self.net = build_backbone(info)
        self.heads = nn.ModuleList(make_bias_head(self.net.feat_shape, h) for h in self.head_specs)
        # Inverse-frequency class weights (Sec. 5.5), filled by prepare(); buffers, so checkpointed.
        self.register_buffer("weight_y", torch.ones(info.num_classes))
        for i, h in enumerate(self.head_specs):
            self.register_buffer(f"weight_h{i}", torch.ones(h.num_classes))
        groups = {"f": (self.net.f, 1.0), "g": (self.net.g, 1.0), "h": (self.heads, hparams.head_lr_mult)}
        for name, (module, mult) in groups.items():
            add_optimizer(self, name, module.parameters(), epochs, lr=hparams.lr * mult)

    def prepare(self, loader):
        if not self.hparams.class_weighting:
            return {}
        s = loader.split
        self.weight_y.copy_(inverse_frequency(s.y, self.info.num_classes))
        for i, h in enumerate(self.head_specs):
            target = s.b if h.key == "b" else s.attrs[h.key]
            getattr(self, f"weight_h{i}").copy_(inverse_frequency(target, h.num_classes, h.ignore_index))
        return {}

    def _zero_grad(self):
        for o in self.optimizers.values():
            o.zero_grad(set_to_none=True)

    def update(self, batch):
        hp_, opt, k = self.hparams, self.optimizers, self.pack_size
        targets = [batch.bias_target(h.key).long() for h in self.head_specs]
        logs = {}
        # Alg. 1 lines 3-5: the spurious classifiers minimise L_s on the current features.
        feat = self.net.f(batch.x)
        for step in range(hp_.h_steps):
            if self.use_grl and step > 0:
                feat = self.net.f(batch.x)
            self._zero_grad()
            h_in = grad_reverse(feat, hp_.mu_grl) if self.use_grl else feat.detach()
            loss_s = feat.new_zeros(())
            for i, (head, spec, t) in enumerate(zip(self.heads, self.head_specs, targets)):
                logits = head(h_in)
                loss_s = loss_s + hp_.beta * weighted_cross_entropy(logits, t, getattr(self, f"weight_h{i}"),
                                                                    spec.ignore_index, k)
                if step == 0:
                    logs[f"bias_acc.{spec.name}"] = accuracy_per_run(logits.detach(), t, spec.ignore_index, k)
            loss_s.sum().backward()
            opt["h"].step()
            if self.use_grl:
                opt["f"].step()
        if self.use_grl:
            feat = self.net.f(batch.x)  # f moved in the reversed-gradient step
        # Alg. 1 line 6: f and g minimise L_p + α L_conf with the classifiers fixed.
        self._zero_grad()
        self.heads.requires_grad_(False)
        loss_p = weighted_cross_entropy(self.net.g(feat), batch.y, self.weight_y, -100, k)
        conf = sum(confusion_loss(head(feat), t, spec.ignore_index, hp_.confusion, k)
                   for head, spec, t in zip(self.heads, self.head_specs, targets)) / len(self.heads)
        (loss_p + hp_.alpha * conf).sum().backward()
        self.heads.requires_grad_(True)
        opt["f"].step()
        opt["g"].step()
        return {"loss": loss_p.detach(), "conf_loss": conf.detach(), "bias_loss": loss_s.detach(), **logs}

    def predict(self, x):
        return self.net(x)

    def features(self, x):
        return self.net.f(x)

    def evaluate_batch(self, batch):
        feat = self.net.f(batch.x)  # once, for the classifier and the bias heads
        return self.net.g(feat), self._head_accuracy(feat, batch)

    def _head_accuracy(self, feat, batch):
        return {f"bias_head_acc.{spec.name}": bias_correct(head(feat), batch.bias_target(spec.key), spec)
                for head, spec in zip(self.heads, self.head_specs)}
