"""RUBi (Cadene et al., "RUBi: Reducing Unimodal Biases for Visual Question Answering",
NeurIPS 2019): during training, mask the main model's logits with the sigmoid of a bias-only
branch's logits, ``logits · σ(logits_bias)``. Samples the bias branch already gets right keep
their loss small, so the main model learns most from the samples the bias cannot explain; the
mask is dropped at test time.

Loss (official cdancette/rubi.bootstrap.pytorch @ 04743c7, models/criterions/rubi_criterion.py:8-30):
``CE(logits · σ(q), y) + w_q · CE(q_out, y)`` with ``w_q = 1`` ("question_loss_weight"), where
``q`` is the bias-only branch applied to bias features that carry no gradient back to their
encoder (models/networks/rubi.py:30-33, ``grad_mul_const(q_emb, 0.0)``).

Image adaptation, as the PGD paper ran it (App. C: "we implement this method using the authors
official code and unofficial code from (Bahng et al., 2020)") — the ReBias repository's version
(clovaai/rebias @ 79d1d1d, criterions/comparison_methods.py:35-63, trainer.py:287-352):

- The bias "encoder" is a separate biased network G trained with its own cross-entropy on the
  target labels, updated once per step before the main model (RUBi row of the ReBias README:
  ``g_lambda_inner 0``). PGD App. C: G is "simply trained on the biased data set" (the LfF
  argument that the easy bias is learnt first); ``bias_backbone`` as in ``rebias``.
- The bias-only branch is one linear layer on G's pooled features, detached
  (comparison_methods.py:43, 55-57); its logits both mask F and carry the question loss
  (no second classifier ``c_2``, unlike the VQA code's ``end_classif``).
- The main model gets no plain cross-entropy, only the RUBi loss (trainer.py:328-333).
- Deviation from the ReBias code: there the branch's linear layer is never optimised (it is
  added to the optimiser only if ``'fc' in criterion.__dict__``, trainer.py:228-231, which is
  False for a submodule), so the mask is a fixed random projection. We train it with F's
  optimiser, as RUBi intends; ``train_branch=False`` (preset ``rebias_code``) keeps it fixed.
- Optimisation as ReBias's Biased-MNIST runs (Adam 1e-3, weight decay 1e-4, StepLR 20, 80
  epochs, batch 256; main_biased_mnist.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from benchmark import Method, hp, register_method
from benchmark.nets import build_backbone
from benchmark.optim import OPTIMIZERS, TrainHParams, add_optimizer
from benchmark_methods.rebias import build_bias_net


@dataclass(frozen=True)
class RUBiHParams(TrainHParams):
    question_loss_weight: float = hp(1.0, "RUBi official rubi_criterion.py:10; options/vqacp2/rubi.yaml",
                                     "w_q: weight of the bias-only branch's cross-entropy",
                                     space=lambda r: r.choice([0.5, 1.0, 2.0]))
    train_branch: bool = hp(True, "RUBi (Cadene et al. 2019); False: ReBias code as released (trainer.py:228-231 never "
                            "optimises it)", "optimise the bias-only branch")
    bias_backbone: str = hp("same", "PGD App. C (same network); ReBias official: rebias_convnet_k1",
                            "backbone of the biased network G: 'same' or a registered backbone name")
    optimizer: str = hp("adam", "ReBias official main_biased_mnist.py:46", choices=OPTIMIZERS)
    lr: float = hp(1e-3, "ReBias official main_biased_mnist.py:45", space=lambda r: 10 ** r.uniform(-4, -2))
    momentum: float = hp(0.9, "unused by Adam")
    weight_decay: float = hp(1e-4, "ReBias official main_biased_mnist.py:123-124")
    batch_size: int = hp(256, "ReBias official main_biased_mnist.py:41")
    epochs: int = hp(80, "ReBias official main_biased_mnist.py:47")
    lr_step: int = hp(20, "ReBias official main_biased_mnist.py:48")
    lr_milestones: tuple[float, ...] = hp((), "ReBias official (StepLR, no milestones)")
    lr_gamma: float = hp(0.1, "StepLR default gamma")


PRESETS = {"official": {"bias_backbone": "rebias_convnet_k1"},
           "rebias_code": {"bias_backbone": "rebias_convnet_k1", "train_branch": False}}


@register_method("rubi")
class RUBi(Method):
    """RUBi: mask the logits with σ(bias-only logits) during training (Cadene et al. 2019)."""

    HParams = RUBiHParams
    paper = "Cadene et al., RUBi: Reducing Unimodal Biases for Visual Question Answering, NeurIPS 2019"

    def __init__(self, hparams: RUBiHParams, info, epochs):
        super().__init__(hparams, info, epochs)
        self.net = build_backbone(info)
        self.bias_net = build_bias_net(info, hparams.bias_backbone)
        self.branch = nn.Linear(math.prod(self.bias_net.feat_shape), info.num_classes)
        params = list(self.net.parameters()) + (list(self.branch.parameters()) if hparams.train_branch else [])
        add_optimizer(self, "f", params, epochs)
        add_optimizer(self, "g", self.bias_net.parameters(), epochs)

    def update(self, batch):
        x, y = batch.x, batch.y
        # 1) The biased network G: plain cross-entropy on the biased data.
        feat_g = self.bias_net.f(x)
        loss_g = F.cross_entropy(self.bias_net.g(feat_g), y)
        self.optimizers["g"].zero_grad(set_to_none=True)
        loss_g.backward()
        self.optimizers["g"].step()
        # 2) F and the bias-only branch: RUBi loss on the updated G's features, without gradient
        #    into G (official trainer.py:338-340 recomputes them; rubi.py:31 grad_mul_const 0).
        with torch.no_grad():
            feat_g = self.bias_net.f(x)
        q = self.branch(feat_g.flatten(1))
        logits = self.net(x)
        fusion = F.cross_entropy(logits * torch.sigmoid(q), y)
        question = F.cross_entropy(q, y)
        loss = fusion + self.hparams.question_loss_weight * question
        self.optimizers["f"].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers["f"].step()
        return {"loss": fusion.detach(), "question_loss": question.detach(), "loss_g": loss_g.detach()}

    def predict(self, x):
        return self.net(x)

    def features(self, x):
        return self.net.f(x)

    def evaluate_extra(self, batch):
        hit = (self.bias_net(batch.x).argmax(1) == batch.y).float()
        return {"biased_model_acc": torch.stack([hit.sum(), hit.new_tensor(float(len(hit)))])}
