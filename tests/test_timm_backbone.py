"""Any timm model as a backbone by name (``--backbone timm:<model>``), weights only from a local file."""
from __future__ import annotations

import pytest
import torch

from benchmark import make_spec
from benchmark._registry import RegistryError
from benchmark.data import DatasetInfo
from benchmark.engine import run
from benchmark.nets import BACKBONES, build_backbone
from benchmark.store import ResultStore

MODEL = "timm:test_resnet"  # timm's smallest ResNet, meant for tests


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # any download attempt would fail


def _info(num_classes=10, **options) -> DatasetInfo:
    return DatasetInfo("t", (3, 28, 28), num_classes, num_classes, (), MODEL, (0.0,) * 3, (1.0,) * 3, options)


def test_a_timm_model_is_a_backbone_by_name_and_loads_weights_from_a_file(tmp_path):
    net = build_backbone(_info())
    assert BACKBONES.get(MODEL).name == MODEL and MODEL in BACKBONES and "timm:no_such_model" not in BACKBONES
    feats = net.f(torch.rand(4, 3, 28, 28))
    assert feats.shape == (4, *net.feat_shape) and net(torch.rand(4, 3, 28, 28)).shape == (4, 10)
    import timm
    source = timm.create_model("test_resnet", num_classes=7)  # its classifier is dropped on loading
    torch.save(source.state_dict(), tmp_path / "w.pth")
    loaded = build_backbone(_info(2, pretrained=str(tmp_path / "w.pth")))
    assert loaded.pretrained_from == str(tmp_path / "w.pth")
    for key, value in loaded.f.state_dict().items():
        assert torch.equal(value, source.state_dict()[key]), key
    with pytest.raises(RegistryError, match="unknown timm model 'resnet_nope'"):
        BACKBONES.get("timm:resnet_nope")
    with pytest.raises(ValueError, match="not a state dict of this model"):
        torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "bad.pth")
        build_backbone(_info(pretrained=str(tmp_path / "bad.pth")))
    with pytest.raises(ValueError, match="imagenet"):
        build_backbone(_info(pretrained="imagenet"))


def test_a_run_trains_a_timm_backbone_and_fingerprints_its_code(tmp_path):
    spec = make_spec("vanilla", "colored_mnist", backbone=MODEL, epochs=1, max_train=64, max_eval=64)
    record = run(spec, store=ResultStore(tmp_path / "runs"), progress=False).record
    assert record["spec"]["backbone"] == MODEL and 0.0 <= record["final"]["test"]["acc"] <= 1.0
    assert "benchmark.nets_timm" in record["code"]["fingerprint"]["modules"]
