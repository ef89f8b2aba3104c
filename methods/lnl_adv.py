"""Ours-adv: Learning Not to Learn trained with Eq. 9 but without the gradient reversal layer.

The "Ours-adv" row of Learning Not to Learn (Kim et al., CVPR 2019) Table 1: "a model trained with
Eq. (9) without using gradient reversal layer". Each batch, f and g minimise the classification
loss plus λ times the negative conditional entropy of h's prediction (the adversarial strategy);
then h alone minimises the bias loss on detached features, so f never sees −μ ∂L_B/∂f. This is
``lnl`` with ``grl=False`` (methods/lnl.py; defaults from the official code
feidfoe/learning-not-to-learn @ fad2ec8, λ = 0.01 at trainer.py:107,137).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from benchmark import hp, register_method
from benchmark.optim import TrainHParams
from benchmark_methods.lnl import LNL


@dataclass(frozen=True)
class LNLAdvHParams(TrainHParams):
    # LNL's switches, fixed for this method (class constants, not hyperparameters).
    adversarial: ClassVar[bool] = True
    grl: ClassVar[bool] = False
    mu_grl: ClassVar[float] = 0.0
    lambda_entropy: float = hp(0.01, "LNL official trainer.py:107,137", "λ: weight of the negative conditional entropy",
                               space=lambda r: 10 ** r.uniform(-3, 0))


@register_method("lnl_adv")
class LNLAdv(LNL):
    """Learning Not to Learn without gradient reversal: entropy term only (LNL Table 1, "Ours-adv")."""

    HParams = LNLAdvHParams
    paper = "Kim et al., Learning Not to Learn, CVPR 2019 (Table 1, Ours-adv)"
    packable = True
