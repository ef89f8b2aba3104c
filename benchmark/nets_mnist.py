"""Small backbones for the MNIST variants: PGD's Simple ConvNet-1 and Learning from Failure's MLP.

Both are registered like any plug-in (``@register_backbone``) and declared in the
``benchmark.backbones`` entry-point group of pyproject.toml, so ``--backbone simple_convnet``
works without importing this module first.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .data import DatasetInfo
from .nets import Backbone, register_backbone


@register_backbone("simple_convnet")
class SimpleConvNet(Backbone):
    """PGD's Simple ConvNet-1 (PGD App. A.1, Fig. 9a): three 4×4 convolutions, 8/32/64 channels,
    with batch norm, ReLU, dropout and average pooling; global average pool; fc 64→classes.

    Layer order from the official code (sumyeongahn/PGD @ 0265520, trainer/module/net.py:19-37,
    model "CONV"): blocks 1-2 are conv(4, stride 1, no padding) → BN → ReLU → Dropout(0.5) →
    AvgPool(2); block 3 is conv → **ReLU → BN** (the code applies ReLU before BN there,
    net.py:33-34, 49-50) → Dropout(0.5) → global average pool. Dropout is element-wise
    (``nn.Dropout()``, p = 0.5). For 28×28 inputs the maps are 25 → 12 → 9 → 4 → 1; for PGD's
    56×56 Watermarked MNIST 53 → 26 → 23 → 11 → 8 → global pool.

    ``f`` ends with the pooled 64-vector, so ``g`` is the single linear layer whose per-sample
    gradients PGD scores (official learner.py:302-318 uses fc.weight only).
    """

    def __init__(self, info: DatasetInfo):
        super().__init__(info)
        c = info.input_shape[0]
        self.f = nn.Sequential(
            nn.Conv2d(c, 8, 4), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.5), nn.AvgPool2d(2),
            nn.Conv2d(8, 32, 4), nn.BatchNorm2d(32), nn.ReLU(), nn.Dropout(0.5), nn.AvgPool2d(2),
            nn.Conv2d(32, 64, 4), nn.ReLU(), nn.BatchNorm2d(64), nn.Dropout(0.5),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.g = nn.Linear(64, info.num_classes)
        self.feat_shape = (64,)


@register_backbone("lff_mlp")
class LfFMLP(Backbone):
    """Learning from Failure's Colored MNIST MLP: flatten → 3 × (Linear 100, ReLU) → Linear.

    Official alinlab/LfF @ e66796e, module/mlp.py:8-15 (3·28·28 → 100 → 100 → 100 → classes);
    PyTorch's default initialisation. This variant sees the inputs as the dataset delivers them
    (``colored_mnist_lff`` scales pixels to [0, 1], like LfF's ``ToTensor``); see
    :class:`LfFMLPOfficial` for the official code's extra division by 255.
    """

    input_scale: float = 1.0

    def __init__(self, info: DatasetInfo):
        super().__init__(info)
        d = math.prod(info.input_shape)
        self.f = nn.Sequential(
            _Scale(self.input_scale), nn.Flatten(),
            nn.Linear(d, 100), nn.ReLU(),
            nn.Linear(100, 100), nn.ReLU(),
            nn.Linear(100, 100), nn.ReLU(),
        )
        self.g = nn.Linear(100, info.num_classes)
        self.feat_shape = (100,)


@register_backbone("lff_mlp_official")
class LfFMLPOfficial(LfFMLP):
    """LfF's MLP with the official code's input quirk: its forward divides by 255 *after*
    ``ToTensor`` already scaled to [0, 1] (module/mlp.py:17), so the first layer sees inputs in
    [0, 1/255]. With Adam this slows the first layer's learning and changes the published numbers;
    use this backbone to reproduce LfF's tables exactly as released."""

    input_scale = 1.0 / 255.0


class _Scale(nn.Module):
    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.scale == 1.0 else x * self.scale

    def extra_repr(self) -> str:
        return f"scale={self.scale:g}"


@register_backbone("rebias_convnet")
class ReBiasConvNet(Backbone):
    """ReBias's Biased-MNIST network (Bahng et al., ICML 2020; clovaai/rebias @ 79d1d1d,
    models/mnist_models.py:11-60): four k×k convolutions (16/32/64/128 channels, padding k//2),
    each BN → ReLU, global average pool, fc 128→classes; Kaiming-normal (fan_out) convolutions.
    k = 7 is the de-biased network F, k = 1 the biased network G whose receptive field is a single
    pixel, so it can only see colour (main_biased_mnist.py:29-31)."""

    kernel_size: int = 7

    def __init__(self, info: DatasetInfo):
        super().__init__(info)
        k, c = self.kernel_size, info.input_shape[0]
        layers: list[nn.Module] = []
        for cin, cout in ((c, 16), (16, 32), (32, 64), (64, 128)):
            layers += [nn.Conv2d(cin, cout, k, padding=k // 2), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        self.f = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.g = nn.Linear(128, info.num_classes)
        self.feat_shape = (128,)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


@register_backbone("rebias_convnet_k1")
class ReBiasConvNetK1(ReBiasConvNet):
    """ReBias's biased network G for Biased MNIST: :class:`ReBiasConvNet` with 1×1 kernels."""

    kernel_size = 1
