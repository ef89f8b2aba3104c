"""BlindEye+GRL: Turning a Blind Eye's confusion loss together with a gradient reversal layer.

The "BlindEye+GRL" row of Learning Not to Learn (Kim et al., CVPR 2019) Table 1: "We also trained
networks with both confusion loss [1] and GRL, since they can be used in conjunction with each
other" (Sec. 5.2). It is ``blind_eye`` (Alvi et al. 2018, Alg. 1) whose bias-classifier step
passes the features through a gradient reversal layer (Ganin et al. 2016), so f also takes a step
of −μ ∂L_s/∂f while the classifiers learn, before the f, g step on L_p + α L_conf. The LNL paper
gives no μ for this row; we use the official LNL reversal scale 0.1 (trainer.py:22).
"""
from __future__ import annotations

from dataclasses import dataclass

from benchmark import hp, register_method
from benchmark_methods.blind_eye import BlindEye, BlindEyeHParams


@dataclass(frozen=True)
class BlindEyeGRLHParams(BlindEyeHParams):
    mu_grl: float = hp(0.1, "LNL official trainer.py:22 (gradient reversal scale)", "μ: gradient reversal scale",
                       space=lambda r: 10 ** r.uniform(-2, 0))


@register_method("blind_eye_grl")
class BlindEyeGRL(BlindEye):
    """Blind Eye's confusion loss plus gradient reversal into f (LNL Table 1, "BlindEye+GRL")."""

    HParams = BlindEyeGRLHParams
    paper = "Kim et al., Learning Not to Learn, CVPR 2019 (Table 1, BlindEye+GRL); Alvi et al. 2018"
    use_grl = True
    packable = True  # blind_eye's per-run losses; grad_reverse acts on each run's features alone
