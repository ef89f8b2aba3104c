"""Learning Not to Learn (Kim et al., CVPR 2019): unlearn a known bias by minimising the mutual
information between features f(x) and the bias, through an adversarial bias predictor h.

Eq. 9: min_{f,g} max_h  E[ L_c(y, g(f(x))) + λ E_{b~Q(·|f(x))}[log Q(b|f(x))] ] − μ L_B(f, h).
Each iteration runs two phases (official trainer.py:95-165, read via shared/PROTOCOL-FACTS.md):

1. f and g minimise cross-entropy plus λ times the negative conditional entropy of h's
   prediction (h fixed): f is pushed to make h uncertain.
2. h minimises the bias cross-entropy L_B on f(x) seen through a gradient reversal layer, so f
   receives −μ ∂L_B/∂f: h learns to predict the bias while f learns to hide it. For the colour
   map L_B is the sum of the R, G and B losses and h is conv3×3 → BN → ReLU → conv3×3 per
   channel, as in the official code (trainer.py:144-148, models.py:47-63).

Defaults and their sources: λ = 0.01 on the mean of Σ p log p, the entropy averaged over every
label position, background included (official trainer.py:107, 137); μ = 0.1, the gradient
reversal scale (official trainer.py:22 — the code has no separate μ); SGD momentum 0.9, weight
decay 5e-4 for all networks (trainer.py:58-61); lr ×0.1 every 40 epochs, 100 epochs, batch 128
(option.py). The paper gives no learning rate; the official LNL run uses 0.001 starting from a
trained baseline (train.sh:11), while we train from scratch at the baseline's 0.01 by default
(the official two-stage recipe is ``--pretrained run:<vanilla run id> --set lr=0.001``). In phase 2 we step f's
and h's optimisers only: under PyTorch ≥ 2.0 the official code's second ``main`` optimiser step
(trainer.py:163) also leaves g untouched, since its gradients were set to None.

Measured (σ² = 0.02, seed 0, test accuracy; records in results/runs): trained from scratch at lr
0.01, LNL does not beat vanilla at the paper budget (H100, 100 epochs: 0.354, record 7b9bd9b7, vs
0.359, record c032d655; that run predates the summed R+G+B loss and the 3×3 second layer of h and
has not been rerun with them). The official two-stage recipe
does gain, by less than the paper: after a 10-epoch vanilla baseline (0.336, record 77099017), 15
epochs of LNL at lr 0.001 give 0.384 (0.37-0.44 across epochs; record da4e258c) against 0.343 for
vanilla continued at lr 0.001 (record ea7ae798) (CPU, full 60k; tests/test_lnl_vs_vanilla.py
checks a 3 + 1 epoch version).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import nn

from benchmark import Method, hp, register_method
from benchmark.method import grad_reverse
from benchmark.nets import bias_correct, bias_loss, build_backbone, make_bias_head
from benchmark.optim import TrainHParams, add_optimizer


@dataclass(frozen=True)
class LNLHParams(TrainHParams):
    lambda_entropy: float = hp(0.01, "LNL official trainer.py:107,137", "λ: weight of the negative conditional entropy",
                               space=lambda r: 10 ** r.uniform(-3, 0))
    mu_grl: float = hp(0.1, "LNL official trainer.py:22 (gradient reversal scale)", "μ: gradient reversal scale",
                       space=lambda r: 10 ** r.uniform(-2, 0))
    adversarial: bool = hp(True, "LNL Eq. 9", "phase 1 entropy term (False with grl=True is GRL alone)")
    grl: bool = hp(True, "LNL Sec. 3.2", "reverse h's gradient into f in phase 2 (False = 'Ours-adv')")


@register_method("lnl")
class LNL(Method):
    """Learning Not to Learn: adversarial bias head h + entropy term + gradient reversal (Kim et al. 2019)."""

    HParams = LNLHParams
    uses_bias_labels = True
    paper = "Kim et al., Learning Not to Learn, CVPR 2019"
    packable = True

    def __init__(self, hparams: LNLHParams, info, epochs):
        super().__init__(hparams, info, epochs)
        self.net = build_backbone(info)
        self.heads = nn.ModuleList(make_bias_head(self.net.feat_shape, h) for h in info.bias_heads)
        groups = {"f": self.net.f.parameters(), "g": self.net.g.parameters(), "h": self.heads.parameters()}
        for name, params in groups.items():
            add_optimizer(self, name, params, epochs)

    def update(self, batch):
        hp_, opt = self.hparams, self.optimizers
        # Phase 1: f, g minimise CE + λ·(negative conditional entropy of h), h fixed.
        for o in opt.values():
            o.zero_grad(set_to_none=True)
        feat = self.net.f(batch.x)
        loss_cls = self.per_run_mean(F.cross_entropy(self.net.g(feat), batch.y, reduction="none"))
        neg_entropy = feat.new_zeros(())
        if hp_.adversarial:
            for head in self.heads:
                logp = F.log_softmax(head(feat), dim=1)
                neg_entropy = neg_entropy + self.per_run_mean((logp.exp() * logp).sum(1))
        (loss_cls + hp_.lambda_entropy * neg_entropy).sum().backward()
        opt["f"].step()
        opt["g"].step()
        # Phase 2: h minimises the bias loss; f gets the reversed gradient (scaled by μ).
        for o in opt.values():
            o.zero_grad(set_to_none=True)
        feat = self.net.f(batch.x)
        if hp_.grl:
            feat = grad_reverse(feat, hp_.mu_grl)
        else:
            feat = feat.detach()
        loss_bias = feat.new_zeros(())
        for head, spec in zip(self.heads, self.info.bias_heads):
            loss_bias = loss_bias + bias_loss(head(feat), batch.bias_target(spec.key), spec, self.pack_size)
        loss_bias.sum().backward()
        opt["h"].step()
        if hp_.grl:
            opt["f"].step()
        return {"loss": loss_cls.detach(), "neg_entropy": neg_entropy.detach(), "bias_loss": loss_bias.detach()}

    def predict(self, x):
        return self.net(x)

    def features(self, x):
        return self.net.f(x)

    def evaluate_batch(self, batch):
        feat = self.net.f(batch.x)  # once, for the classifier and the bias heads
        return self.net.g(feat), self._head_accuracy(feat, batch)

    def _head_accuracy(self, feat, batch):
        return {f"bias_head_acc.{spec.name}": bias_correct(head(feat), batch.bias_target(spec.key), spec)
                for head, spec in zip(self.heads, self.info.bias_heads)}
