"""REPAIR-S (Li & Vasconcelos, "REPAIR: Removing Representation Bias by Dataset Resampling",
CVPR 2019) as the PGD paper ran it (App. C): learn a weight w_i ∈ [0, 1] per training sample that
makes a classifier on a biased representation as bad as possible, then keep each sample with
probability w_i and train the final model on what is kept.

Weight learning (official code JerryYLi/Dataset-REPAIR @ 45d4c6f, utils/repair.py): w = σ(ω), ω = 0
at the start (:24); per batch, z_i = w_i / mean(w) (:37-38), class prior q_c = Σ_{y_i=c} w_i / Σ w
(:39-40); the classifier minimises the weighted loss L = mean(z_i · CE_i) (:43-50); the weights
minimise the representation bias 1 − L / H, H = −mean(z_i log q_{y_i}) the weighted class entropy
(:53-57), i.e. they make the weighted task hard for the representation. Weights: SGD lr 10, no
momentum (:25; colored_mnist_repair.py:25); classifier: SGD lr 1e-3, momentum 0.9 (:22;
colored_mnist_repair.py:24); 200 epochs, batch 128 (colored_mnist_repair.py:19, 26). REPAIR-S: keep
sample i with probability w_i, one Bernoulli draw (colored_mnist_repair.py:58-59, ``--sampling
sample``); the other rules (threshold, rank, per-class rank) are offered too (:37-56).

Representation: the official Colored MNIST script classifies the digit colour, the per-channel
maximum over pixels (colored_mnist_repair.py:86) — ``representation="color"``, which presumes the bias
is colour. The PGD paper instead learns w "by training the classifier at the adversarial training
phase without using biased information" (App. C) — ``representation="backbone"`` (default): the
classifier is the dataset's backbone on the images, which by LfF's argument picks up the easy bias
first. The weight phase then runs for Table 4's epochs (shared by all algorithms, App. A.1); the final
model uses Table 4's optimisation. Neither mode reads bias labels. We learn w on the training set
(the official script learns it on train + test together, colored_mnist_repair.py:95).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from benchmark import Method, hp, register_method
from benchmark.nets import build_backbone
from benchmark.optim import make_optimizer
from benchmark_methods.pgd import ResizableBuffers, Table4HParams, make_scheduler, sampling_summary


@dataclass(frozen=True)
class REPAIRHParams(Table4HParams):
    representation: str = hp("backbone", "PGD App. C (backbone on images); official colored_mnist_repair.py:86 (color)",
                             "classifier whose bias the weights remove: backbone on images, or linear on digit colour",
                             choices=("backbone", "color"))
    weight_epochs: int = hp(100, "PGD Table 4 epochs (official REPAIR: 200, colored_mnist_repair.py:26)",
                            "epochs of the weight-learning phase (Method.prepare)")
    weight_lr: float = hp(10.0, "official utils/repair.py:25, colored_mnist_repair.py:25 (--lr-w)",
                          "SGD learning rate of the weight logits")
    classifier_lr: float = hp(1e-3, "official utils/repair.py:22, colored_mnist_repair.py:24 (--lr)",
                              "SGD learning rate of the representation classifier (momentum 0.9)")
    sampling: str = hp("sample", "PGD App. C (REPAIR-S); official colored_mnist_repair.py:37-66",
                       "sample: keep with probability w; threshold: w > threshold; rank / cls_rank: top keep_ratio",
                       choices=("sample", "threshold", "rank", "cls_rank"))
    threshold: float = hp(0.5, "official colored_mnist_repair.py:30")
    keep_ratio: float = hp(0.5, "official colored_mnist_repair.py:31")
    redraw: bool = hp(False, "official: one draw (colored_mnist_repair.py:59); True redraws every epoch",
                      "sampling='sample': draw the kept set anew each epoch")


def color_feature(x: torch.Tensor) -> torch.Tensor:
    """The digit colour: per-channel maximum over pixels (official colored_mnist_repair.py:86).
    A per-channel affine normalisation of x changes it by an affine map, which a linear
    classifier absorbs."""
    return x.flatten(2).max(2).values


def keep_mask(w: torch.Tensor, y: torch.Tensor, num_classes: int, hp_: REPAIRHParams,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """REPAIR's resampling rules (official colored_mnist_repair.py:37-66) on the CPU."""
    w = w.detach().cpu().double()
    if hp_.sampling == "sample":
        return torch.bernoulli(w, generator=generator).bool()
    if hp_.sampling == "threshold":
        return w > hp_.threshold
    keep = torch.zeros(len(w), dtype=torch.bool)
    groups = [torch.arange(len(w))] if hp_.sampling == "rank" else [(y.cpu() == c).nonzero().squeeze(1) for c in range(num_classes)]
    for idx in groups:
        top = w[idx].argsort(descending=True)[: round(hp_.keep_ratio * len(idx))]
        keep[idx[top]] = True
    return keep


@torch.no_grad()
def representation_bias(classifier, feat, loader, w: torch.Tensor, onehot: torch.Tensor) -> float:
    """REPAIR's bias of the reweighted set, 1 − L_w / H_w over all samples (utils/repair.py:53-57),
    with the classifier in eval mode."""
    classifier.eval()
    z = w / w.mean()
    q = onehot.T @ w
    q = q / q.sum()
    order = torch.arange(len(loader), device=loader.device)
    loss = sum(float((F.cross_entropy(classifier(feat(b.x)), b.y, reduction="none") * z[b.idx]).sum())
               for b in loader.batches(order, 1024))
    entropy = float(-(q[loader.split.y].log() * z).sum())
    return 1 - loss / entropy


@register_method("repair")
class REPAIR(ResizableBuffers, Method):
    """REPAIR-S: adversarially learned per-sample weights, keep each sample with probability w (Li & Vasconcelos 2019)."""

    HParams = REPAIRHParams
    paper = "Li & Vasconcelos, REPAIR: Removing Representation Bias by Dataset Resampling (CVPR 2019)"
    tiny_hparams = {"weight_epochs": 1}
    quick_hparams = {"weight_epochs": 2}
    resizable = ("w", "keep")

    def __init__(self, hparams: REPAIRHParams, info, epochs):
        super().__init__(hparams, info, epochs)
        self.net = build_backbone(info)
        self.optimizers["main"] = make_optimizer(self.net.parameters(), hparams)
        self.schedulers["main"] = make_scheduler(self.optimizers["main"], hparams, epochs)
        self.register_buffer("w", torch.zeros(0))
        self.register_buffer("keep", torch.zeros(0, dtype=torch.bool))

    def prepare(self, loader):
        hp_, n, dev = self.hparams, len(loader), loader.device
        c = self.info.num_classes
        if hp_.representation == "color":
            classifier, feat = nn.Linear(self.info.input_shape[0], c).to(dev), color_feature
        else:
            classifier, feat = build_backbone(self.info).to(dev), (lambda x: x)
        opt = torch.optim.SGD(classifier.parameters(), lr=hp_.classifier_lr, momentum=0.9)
        omega = torch.zeros(n, device=dev, requires_grad=True)
        opt_w = torch.optim.SGD([omega], lr=hp_.weight_lr)
        onehot = F.one_hot(loader.split.y, c).float()
        classifier.train()
        times = []
        for _ in range(hp_.weight_epochs):
            t0 = time.perf_counter()
            order = torch.randperm(n).to(dev)
            for batch in loader.batches(order, hp_.batch_size, augment=False):
                w = torch.sigmoid(omega)
                z = w[batch.idx] / w.mean()
                q = onehot.T @ w
                q = q / q.sum()
                ce = F.cross_entropy(classifier(feat(batch.x)), batch.y, reduction="none")
                loss = (ce * z.detach()).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                # The weights see the classifier's loss as a constant: only z and q depend on them.
                weighted = (ce.detach() * z).mean()
                entropy = -(q[batch.y].log() * z).mean()
                loss_w = 1 - weighted / entropy
                opt_w.zero_grad(set_to_none=True)
                loss_w.backward()
                opt_w.step()
            times.append(time.perf_counter() - t0)
        w = torch.sigmoid(omega.detach())
        bias = representation_bias(classifier, feat, loader, w, onehot)
        self.w = w.to(self.w.device)
        self.keep = keep_mask(w, loader.split.y, c, hp_).to(self.keep.device)
        metrics = {"weight_epoch_s": round(sum(times) / max(len(times), 1), 3), "repair.bias": round(bias, 6),
                   "repair.kept": int(self.keep.sum()), "repair.total": n}
        metrics.update(sampling_summary(w, loader.split.aligned, "repair."))
        metrics.update(sampling_summary(self.keep.double(), loader.split.aligned, "repair.kept_"))
        return metrics

    def sample_indices(self, n, generator):
        if self.hparams.redraw and self.hparams.sampling == "sample":
            kept = torch.bernoulli(self.w.cpu().double(), generator=generator).bool().nonzero().squeeze(1)
        else:
            kept = self.keep.cpu().nonzero().squeeze(1)
        return kept[torch.randperm(len(kept), generator=generator)]

    def update(self, batch):
        loss = F.cross_entropy(self.net(batch.x), batch.y)
        opt = self.optimizers["main"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.detach()}

    def predict(self, x):
        return self.net(x)

    def features(self, x):
        return self.net.f(x)
