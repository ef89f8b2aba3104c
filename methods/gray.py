"""Gray: the baseline network trained and tested on grayscale-converted images.

The "Gray" row of Learning Not to Learn (Kim et al., CVPR 2019), Fig. 4 (Colored MNIST) and
Table 1 (Dogs and Cats, marked †): "a network trained with grayscale images and it was also tested
with grayscale images" (Sec. 5.2). It is the trivial de-biasing of a colour bias: it needs no bias
labels, only the knowledge that the bias is colour. Brightness still differs between colours, so
some of the bias survives the conversion (LNL Sec. 5.2 on Dogs and Cats).

The conversion happens inside the method, on the normalised batch: undo the dataset's
normalisation, take the grey level, repeat it on the three channels and normalise again, so the
backbone and every other part of the pipeline stay those of ``vanilla``. The grey weights are
not in the paper nor in the official code (which has no Gray baseline): ``luma`` is ITU-R
BT.601 (PIL ``convert("L")``, torchvision ``Grayscale``); ``mean`` (the channel average) is
invariant to permuting the colour channels. Optimisation: LNL's baseline (see ``vanilla``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmark import Method, hp, register_method
from benchmark.nets import build_backbone
from benchmark.optim import TrainHParams, add_optimizer

GRAY_WEIGHTS = {"luma": (0.299, 0.587, 0.114), "mean": (1 / 3, 1 / 3, 1 / 3)}  # ITU-R BT.601 luma


@dataclass(frozen=True)
class GrayHParams(TrainHParams):
    gray_weights: str = hp("luma", "ours: ITU-R BT.601 as PIL convert('L') / torchvision Grayscale (LNL gives none)",
                           "channel weights of the grey level", choices=tuple(GRAY_WEIGHTS))


@register_method("gray")
class Gray(Method):
    """Baseline on grayscale images, in training and at test time (LNL Sec. 5.2, "Gray")."""

    HParams = GrayHParams
    paper = "Kim et al., Learning Not to Learn, CVPR 2019 (Gray baseline, Sec. 5.2)"
    packable = True

    def __init__(self, hparams: GrayHParams, info, epochs):
        super().__init__(hparams, info, epochs)
        if info.input_shape[0] != 3:
            raise ValueError(f"gray needs RGB inputs; {info.name} has {info.input_shape[0]} channel(s)")
        self.net = build_backbone(info)
        shape = (1, 3, 1, 1)
        self.register_buffer("mean", torch.tensor(info.mean, dtype=torch.float32).view(shape), persistent=False)
        self.register_buffer("std", torch.tensor(info.std, dtype=torch.float32).view(shape), persistent=False)
        self.register_buffer("weights", torch.tensor(GRAY_WEIGHTS[hparams.gray_weights]).view(shape), persistent=False)
        add_optimizer(self, "main", self.net.parameters(), epochs)

    def to_gray(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised RGB batch → the normalised batch of its grey image repeated on three channels."""
        gray = ((x * self.std + self.mean) * self.weights).sum(1, keepdim=True)
        return (gray - self.mean) / self.std

    def update(self, batch):
        loss = self.per_run_mean(F.cross_entropy(self.net(self.to_gray(batch.x)), batch.y, reduction="none"))
        opt = self.optimizers["main"]
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        return {"loss": loss.detach()}

    def predict(self, x):
        return self.net(self.to_gray(x))

    def features(self, x):
        return self.net.f(self.to_gray(x))
