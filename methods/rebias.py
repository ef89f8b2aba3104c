"""ReBias (Bahng et al., "Learning De-biased Representations with Biased Representations",
ICML 2020): make the representation of the de-biased model F statistically independent of those
of biased models G that can only capture the bias, measured by the Hilbert-Schmidt Independence
Criterion, through the minimax game

    min_F max_G  L(F) + λ Σ_g [HSIC(F(x), G_g(x)) − L(G_g)]           (ReBias Eq. 4)

played as two alternating minimisations per batch (official trainer.py:49-62, 287-362): each G
minimises its cross-entropy − λ_g·HSIC(G, F) (G is kept biased but pushed to explain what F
knows), then F minimises its cross-entropy + λ_f·Σ_g HSIC(F, G_g).

Facts from the official code (clovaai/rebias @ 79d1d1d):

- HSIC: the unbiased estimator of Song et al. (2012) with RBF kernels (criterions/hsic.py:79-120),
  on the globally pooled features ("feature_pos='post'", models/mnist_models.py:45-60). Kernel radius
  σ = 1 for Biased MNIST (main_biased_mnist.py:58-61, the "median" option is not used there);
  ``sigma_median=True`` computes it once from the median pairwise distance of 25 % of the training
  data (criterions/sigma_utils.py:17-48, trainer.py:198-217, as for ImageNet).
- λ_f = λ_g = 1, one G update per F update, one G (main_biased_mnist.py:51-66).
- Adam, lr 1e-3, weight decay 1e-4 for both, StepLR(20, ×0.1), 80 epochs, batch 256
  (main_biased_mnist.py:41-48, 123-127).
- G: ReBias uses a network with 1×1 kernels (backbone ``rebias_convnet_k1``) beside F with 7×7
  kernels (``rebias_convnet``). The PGD paper (App. C) ran ReBias with "the same network" for
  both "for a fair comparison", which is our default (``bias_backbone="same"``).
- Neither network's gradient crosses into the other's update (the official code back-propagates
  through both but steps one optimiser, zeroing the other's gradients before its own step); we
  compute the other network's features without gradient, which is equivalent.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from benchmark import Method, hp, register_method
from benchmark.nets import build_backbone
from benchmark.optim import OPTIMIZERS, TrainHParams, add_optimizer


def rbf_kernel(x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """exp(−‖x_i − x_j‖² / (2σ²)) over the flattened rows of ``x`` (official hsic.py:106-114)."""
    x = x.flatten(1)
    sq = x.pow(2).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2 * x @ x.t()).clamp_min(0)
    return torch.exp(-d2 / (2 * sigma ** 2))


def hsic_unbiased(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC estimator (Song et al. 2012, ReBias Eq. 3; official hsic.py:79-97):
    [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1/((m−1)(m−2)) − 2/(m−2)·1ᵀK̃L̃1] / (m(m−3)), K̃, L̃ with zero diagonals.
    Returns 0 (with a graph) for fewer than 4 samples, where the estimator is undefined."""
    m = k.shape[0]
    if m < 4:  # undefined below 4 samples (e.g. a tiny last batch): contribute nothing
        return k.new_zeros(()) * k.sum()
    kt = k - torch.diag_embed(torch.diagonal(k))
    lt = l - torch.diag_embed(torch.diagonal(l))
    value = ((kt * lt.t()).sum()
             + kt.sum() * lt.sum() / ((m - 1) * (m - 2))
             - 2 * kt.sum(0).dot(lt.sum(0)) / (m - 2))
    return value / (m * (m - 3))


@dataclass(frozen=True)
class ReBiasHParams(TrainHParams):
    lambda_f: float = hp(1.0, "ReBias official main_biased_mnist.py:51 (f_lambda_outer)",
                         "weight of HSIC(F, G) in F's loss", space=lambda r: 10 ** r.uniform(-1, 1))
    lambda_g: float = hp(1.0, "ReBias official main_biased_mnist.py:52 (g_lambda_inner)",
                         "weight of −HSIC(G, F) in G's loss", space=lambda r: 10 ** r.uniform(-1, 1))
    n_g_nets: int = hp(1, "ReBias official main_biased_mnist.py:66", "number of biased networks G")
    bias_backbone: str = hp("same", "PGD App. C ('we ignore this for a fair comparison with same network'); "
                            "ReBias official: rebias_convnet_k1 (main_biased_mnist.py:29-31)",
                            "backbone of each G: 'same' as F, or a registered backbone name")
    sigma_x: float = hp(1.0, "ReBias official main_biased_mnist.py:60 (rbf_sigma_x)", "RBF radius on F's features")
    sigma_y: float = hp(1.0, "ReBias official main_biased_mnist.py:61 (rbf_sigma_y)", "RBF radius on G's features")
    sigma_median: bool = hp(False, "ReBias official: False on MNIST; 'median' for ImageNet (README)",
                            "set σ once (before training) to the median pairwise feature distance × sigma_x/sigma_y")
    optimizer: str = hp("adam", "ReBias official main_biased_mnist.py:46", choices=OPTIMIZERS)
    lr: float = hp(1e-3, "ReBias official main_biased_mnist.py:45", space=lambda r: 10 ** r.uniform(-4, -2))
    momentum: float = hp(0.9, "unused by Adam")
    weight_decay: float = hp(1e-4, "ReBias official main_biased_mnist.py:123-124")
    batch_size: int = hp(256, "ReBias official main_biased_mnist.py:41")
    epochs: int = hp(80, "ReBias official main_biased_mnist.py:47")
    lr_step: int = hp(20, "ReBias official main_biased_mnist.py:48 (StepLR step_size)")
    lr_milestones: tuple[float, ...] = hp((), "ReBias official (StepLR, no milestones)")
    lr_gamma: float = hp(0.1, "StepLR default gamma (ReBias passes only step_size)")


PRESETS = {"official": {"bias_backbone": "rebias_convnet_k1"}}


def build_bias_net(info, name: str) -> nn.Module:
    """The biased network: the dataset's backbone ('same') or any registered backbone."""
    return build_backbone(info, None if name == "same" else name)


@register_method("rebias")
class ReBias(Method):
    """ReBias: de-bias F by minimising HSIC with biased networks G that maximise it (Bahng et al. 2020)."""

    HParams = ReBiasHParams
    paper = "Bahng et al., Learning De-biased Representations with Biased Representations, ICML 2020"

    def __init__(self, hparams: ReBiasHParams, info, epochs):
        super().__init__(hparams, info, epochs)
        self.net = build_backbone(info)
        self.g_nets = nn.ModuleList(build_bias_net(info, hparams.bias_backbone) for _ in range(hparams.n_g_nets))
        add_optimizer(self, "f", self.net.parameters(), epochs)
        add_optimizer(self, "g", self.g_nets.parameters(), epochs)
        self.register_buffer("sigma", torch.tensor([hparams.sigma_x, hparams.sigma_y]))

    def prepare(self, loader):
        """Optionally set the kernel radii from the median pairwise distance (official
        sigma_utils.py:17-48: networks in train mode, the first 25 % of the batches)."""
        if not self.hparams.sigma_median:
            return {}
        n_batches = max(1, int(0.25 * len(loader) / self.hparams.batch_size) + 1)
        order = torch.randperm(len(loader), device=loader.device)
        f_d2, g_d2 = [], []
        with torch.no_grad():
            for i, batch in enumerate(loader.batches(order, self.hparams.batch_size, augment=True)):
                if i >= n_batches:
                    break
                f_d2.append(_pairwise_sq(self.net.f(batch.x)))
                g_d2 += [_pairwise_sq(g.f(batch.x)) for g in self.g_nets]
        sig = torch.stack([torch.cat(f_d2).median().sqrt(), torch.cat(g_d2).median().sqrt()])
        self.sigma = sig * torch.tensor([self.hparams.sigma_x, self.hparams.sigma_y], device=sig.device)
        return {"sigma_x": float(self.sigma[0]), "sigma_y": float(self.sigma[1])}

    def update(self, batch):
        hp_ = self.hparams
        x, y = batch.x, batch.y
        sx, sy = self.sigma[0], self.sigma[1]
        # 1) Each G: cross-entropy − λ_g·HSIC(G, F), F fixed.
        with torch.no_grad():
            k_f_fixed = rbf_kernel(self.net.f(x), sx)
        loss_g = x.new_zeros(())
        ce_g = x.new_zeros(())
        for g in self.g_nets:
            feat = g.f(x)
            ce = F.cross_entropy(g.g(feat), y)
            ce_g = ce_g + ce.detach()
            loss_g = loss_g + ce - hp_.lambda_g * hsic_unbiased(rbf_kernel(feat, sy), k_f_fixed)
        opt_g = self.optimizers["g"]
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        # 2) F: cross-entropy + λ_f·Σ_g HSIC(F, G), G fixed.
        feat = self.net.f(x)
        ce_f = F.cross_entropy(self.net.g(feat), y)
        k_f = rbf_kernel(feat, sx)
        with torch.no_grad():
            k_gs = [rbf_kernel(g.f(x), sy) for g in self.g_nets]
        hsic = sum(hsic_unbiased(k_f, k_g) for k_g in k_gs)
        opt_f = self.optimizers["f"]
        opt_f.zero_grad(set_to_none=True)
        (ce_f + hp_.lambda_f * hsic).backward()
        opt_f.step()
        return {"loss": ce_f.detach(), "hsic": hsic.detach(), "loss_g_ce": ce_g / len(self.g_nets)}

    def predict(self, x):
        return self.net(x)

    def features(self, x):
        return self.net.f(x)

    def evaluate_extra(self, batch):
        hit = (self.g_nets[0](batch.x).argmax(1) == batch.y).float()
        return {"biased_model_acc": torch.stack([hit.sum(), hit.new_tensor(float(len(hit)))])}


def _pairwise_sq(x: torch.Tensor) -> torch.Tensor:
    x = x.flatten(1)
    sq = x.pow(2).sum(1)
    return (sq[:, None] + sq[None, :] - 2 * x @ x.t()).clamp_min(0).flatten()
