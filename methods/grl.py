"""GRL: a bias classifier h on f(x) behind a gradient reversal layer (Ganin et al., JMLR 2016), alone.

The "GRL [8]" row of Learning Not to Learn (Kim et al., CVPR 2019) Table 1: "GRL alone notably
improved the performance suggesting that GRL itself is able to remove bias" (Sec. 5.2). Each batch,
f and g minimise the classification loss; then h minimises the bias loss L_B on f(x) seen
through the reversal layer, so f receives −μ ∂L_B/∂f. This is ``lnl`` without the entropy term
(``adversarial=False``, ``grl=True``): same networks, same bias head, same optimisation (official
code feidfoe/learning-not-to-learn @ fad2ec8, see methods/lnl.py), μ = 0.1 the official reversal
scale (trainer.py:22). Bias-head accuracy on every evaluated split is logged per epoch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from benchmark import hp, register_method
from benchmark.optim import TrainHParams
from benchmark_methods.lnl import LNL


@dataclass(frozen=True)
class GRLHParams(TrainHParams):
    # LNL's switches, fixed for this method (class constants, not hyperparameters).
    adversarial: ClassVar[bool] = False
    grl: ClassVar[bool] = True
    lambda_entropy: ClassVar[float] = 0.0
    mu_grl: float = hp(0.1, "LNL official trainer.py:22 (gradient reversal scale)", "μ: gradient reversal scale",
                       space=lambda r: 10 ** r.uniform(-2, 0))


@register_method("grl")
class GRL(LNL):
    """Gradient reversal between f and the bias head h, nothing else (LNL Table 1, "GRL")."""

    HParams = GRLHParams
    paper = "Ganin et al., Domain-Adversarial Training of Neural Networks, JMLR 2016 (LNL Table 1, GRL)"
    packable = True  # LNL's update unchanged (per-run losses), only its switches are fixed
