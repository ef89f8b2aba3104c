"""An out-of-tree plug-in: a method and a suite in one file, and a report spec in ``specs/``.

This folder is a complete example for plug-in authors: ``pyproject.toml`` declares the entry
points (``benchmark.methods``, ``benchmark.suites``, ``benchmark.report_specs``; ``pip install -e
tests/plugin`` installs it); the checked-in ``*.dist-info`` lets the tests load it by putting this
folder on ``PYTHONPATH`` instead of installing it.
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmark import Method, hp, register_method
from benchmark.nets import build_backbone
from benchmark.suites import Profile, Setting, Suite, register_suite


@dataclass(frozen=True)
class LabelSmoothingHParams:
    smoothing: float = hp(0.1, "Szegedy et al. 2016", "label smoothing ε")
    lr: float = hp(0.01, "ours")
    batch_size: int = hp(128, "ours")
    epochs: int = hp(10, "ours")


@register_method("label_smoothing")
class LabelSmoothing(Method):
    """Cross-entropy with label smoothing (an example plug-in method)."""

    HParams = LabelSmoothingHParams

    def __init__(self, hparams, info, epochs):
        super().__init__(hparams, info, epochs)
        self.net = build_backbone(info)
        self.optimizers["main"] = torch.optim.SGD(self.net.parameters(), lr=hparams.lr, momentum=0.9)

    def update(self, batch):
        loss = F.cross_entropy(self.net(batch.x), batch.y, label_smoothing=self.hparams.smoothing)
        self.optimizers["main"].zero_grad(set_to_none=True)
        loss.backward()
        self.optimizers["main"].step()
        return {"loss": loss.detach()}

    def predict(self, x):
        return self.net(x)


@register_suite("example.smoothing")
class SmoothingSuite(Suite):
    """A suite shipped with the plug-in (entry point ``benchmark.suites``): label smoothing on
    Colored MNIST, with a seconds-long profile."""

    title = "Example: label smoothing on Colored MNIST"
    methods = ("label_smoothing",)
    settings = (Setting("colored_mnist", {"sigma2": 0.02}),)
    profiles = {"quick": Profile(seeds=(0,), epochs=1, max_train=256, max_eval=256, tiny=True,
                                 source="a smoke test")}
