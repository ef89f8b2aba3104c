"""LearnedMixin + H (Clark et al., "Don't Take the Easy Way Out: Ensemble Based Methods for
Avoiding Known Dataset Biases", EMNLP 2019): train the main model in a product of experts with a
fixed bias-only model whose log-probabilities enter through a learned, input-dependent gate,

    p̂(y|x) ∝ softmax( log p_main(y|x) + g(x) · log p_bias(y|x) ),   g(x) = softplus(w·h(x) + b)

(Clark Sec. 3.2.3-3.2.4), plus an entropy penalty w_H · H(softmax(g(x) · log p_bias)) so the gate
cannot switch the bias off (the "+H"). At test time the main model is used alone.

Facts (ReBias repository, clovaai/rebias @ 79d1d1d, whose implementation the PGD paper used —
PGD App. C: "inheriting the authors' official code and unofficial code made by the authors
(Bahng et al., 2020)"):

- w_H = 0.36 (criterions/comparison_methods.py:72; Clark et al. chose 0.36 on VQA-CP too).
- Gate: a linear layer on the main model's pooled features, softplus (comparison_methods.py:81,
  88-90); ``h(x)`` in Clark is the main model's last hidden layer.
- The bias model is pre-trained for 5 epochs with cross-entropy and then frozen
  (``n_g_pretrain_epochs 5``, ``n_g_update 0``, README "Learned Mixin"), like Clark's fixed
  bias-only model; the main model's only loss is the ensemble loss (trainer.py:328-333).
- ReBias mixes the bias model's *logits*; Clark mixes its log-probabilities. They differ by a
  per-sample constant, which cancels in both the softmax and the entropy: the same loss.
- Bias model loss: cross-entropy (ReBias; PGD "simply training"). With the *same* architecture
  as the main model the bias model can also fit much of the minority, and the product of experts
  then already explains the training set, leaving the main model little to learn.
  ``bias_loss="gce"`` pre-trains it with LfF's GCE (q = 0.7), which favours the easy (colour)
  samples. Whether either variant gains over vanilla is not measured in the result store (no
  stored learned_mixin run); the ``pgd.table1`` suite and report hold the comparison.
  ReBias's 1×1-kernel G (``official`` preset) cannot see shape at all.
- PGD App. C trains the bias network "simply (...) on the biased data set", i.e. on the target
  labels y (``bias_target="y"``, default). ``bias_target="b"`` trains it on the bias labels
  instead (an oracle bias-only model, closer to Clark's hand-designed bias experts); it needs the
  bias classes to coincide with the target classes (colour c ↔ digit c), and then reads bias
  labels.
- Deviation from the ReBias code: its gate layer is never optimised (it is added to the
  optimiser only if ``'fc' in criterion.__dict__``, trainer.py:228-231, which is False for a
  submodule); we train it with the main model, as Clark intends (``train_gate=False`` keeps it at
  its random initialisation, as the released code, and the ``rebias_code`` preset). The frozen bias model runs in
  eval mode (ReBias leaves it in train mode, so its BatchNorm uses batch statistics).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from benchmark import Method, hp, register_method
from benchmark.losses import generalized_cross_entropy
from benchmark.nets import build_backbone
from benchmark.optim import OPTIMIZERS, TrainHParams, add_optimizer, make_optimizer
from benchmark_methods.rebias import build_bias_net


GCE_Q = 0.7  # LfF official module/loss.py:10, PGD learner.py:263


@dataclass(frozen=True)
class LearnedMixinHParams(TrainHParams):
    entropy_weight: float = hp(0.36, "ReBias official comparison_methods.py:72; Clark et al. 2019 Sec. 4 (VQA-CP)",
                               "w_H: weight of the entropy penalty on the scaled bias distribution",
                               space=lambda r: 10 ** r.uniform(-2, 0.5))
    bias_pretrain_epochs: int = hp(5, "ReBias official README, Learned Mixin (--n_g_pretrain_epochs 5)",
                                   "epochs of bias-model training before it is frozen")
    bias_loss: str = hp("ce", "ReBias official trainer.py:299 (cross-entropy); 'gce': LfF's q = 0.7, after PGD App. C's "
                        "appeal to LfF's argument", "loss of the bias model's pre-training", choices=("ce", "gce"))
    train_gate: bool = hp(True, "Clark et al. 2019 Sec. 3.2.4 (learned gate); False: ReBias code as released "
                          "(trainer.py:228-231 never optimises it)", "optimise the gate g(x)")
    bias_target: str = hp("y", "PGD App. C (bias network trained on the biased data set)",
                          "train the bias model on the target label 'y' or on the bias label 'b' (oracle)",
                          choices=("y", "b"))
    bias_backbone: str = hp("same", "PGD App. C (same network); ReBias official: rebias_convnet_k1",
                            "backbone of the bias model: 'same' or a registered backbone name")
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
           "rebias_code": {"bias_backbone": "rebias_convnet_k1", "train_gate": False}}


@register_method("learned_mixin")
class LearnedMixin(Method):
    """LearnedMixin+H: product of experts with a frozen bias model through a learned gate, plus entropy penalty (Clark et al. 2019)."""

    HParams = LearnedMixinHParams
    paper = ("Clark et al., Don't Take the Easy Way Out: Ensemble Based Methods for Avoiding Known "
             "Dataset Biases, EMNLP 2019")
    tiny_hparams = {"bias_pretrain_epochs": 1}

    def __init__(self, hparams: LearnedMixinHParams, info, epochs):
        super().__init__(hparams, info, epochs)
        if hparams.bias_target == "b" and info.num_bias_classes != info.num_classes:
            raise ValueError(f"bias_target='b' needs as many bias classes as classes "
                             f"({info.num_bias_classes} != {info.num_classes})")
        self.net = build_backbone(info)
        self.bias_net = build_bias_net(info, hparams.bias_backbone)
        self.gate = nn.Linear(math.prod(self.net.feat_shape), 1)
        params = list(self.net.parameters()) + (list(self.gate.parameters()) if hparams.train_gate else [])
        add_optimizer(self, "f", params, epochs)
        # The bias model's optimiser lives only through prepare(); its weights are then frozen.
        self._bias_opt = make_optimizer(self.bias_net.parameters(), hparams)
        self.register_buffer("frozen", torch.tensor(False))  # set by prepare(); checkpointed

    def prepare(self, loader):
        """Train the bias model for ``bias_pretrain_epochs`` with cross-entropy, then freeze it."""
        hp_ = self.hparams
        self.bias_net.train()
        total, steps = 0.0, 0
        for _ in range(hp_.bias_pretrain_epochs):
            order = torch.randperm(len(loader)).to(loader.device)  # global RNG, seeded by the engine
            for batch in loader.batches(order, hp_.batch_size, augment=True):
                target = batch.y if hp_.bias_target == "y" else batch.b
                logits = self.bias_net(batch.x)
                loss = (generalized_cross_entropy(logits, target, GCE_Q) if hp_.bias_loss == "gce"
                        else F.cross_entropy(logits, target))
                self._bias_opt.zero_grad(set_to_none=True)
                loss.backward()
                self._bias_opt.step()
                total, steps = total + float(loss.detach()), steps + 1
        self.frozen.fill_(True)
        self.bias_net.requires_grad_(False)
        self.bias_net.eval()
        return {"bias_loss": total / max(steps, 1)}

    def train(self, mode: bool = True):
        super().train(mode)
        if bool(self.frozen):
            self.bias_net.eval()  # the frozen bias expert always runs in eval mode
        return self

    def update(self, batch):
        with torch.no_grad():
            log_p_bias = F.log_softmax(self.bias_net(batch.x), 1)
        feat = self.net.f(batch.x)
        logits = self.net.g(feat)
        scale = F.softplus(self.gate(feat.flatten(1)))          # g(x) ≥ 0, N×1
        scaled_bias = scale * log_p_bias
        loss = F.cross_entropy(F.log_softmax(logits, 1) + scaled_bias, batch.y)
        log_q = F.log_softmax(scaled_bias, 1)
        entropy = -(log_q.exp() * log_q).sum(1).mean()
        opt = self.optimizers["f"]
        opt.zero_grad(set_to_none=True)
        (loss + self.hparams.entropy_weight * entropy).backward()
        opt.step()
        return {"loss": loss.detach(), "entropy": entropy.detach(), "gate": scale.mean().detach()}

    def predict(self, x):
        return self.net(x)

    def features(self, x):
        return self.net.f(x)

    def evaluate_extra(self, batch):
        target = batch.y if self.hparams.bias_target == "y" else batch.b
        hit = (self.bias_net(batch.x).argmax(1) == target).float()
        return {"bias_model_acc": torch.stack([hit.sum(), hit.new_tensor(float(len(hit)))])}
