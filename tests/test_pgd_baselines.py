"""The PGD paper's baselines from this suite: lff, rebias, rubi, learned_mixin — tiny real runs on
the MNIST benchmarks, and the mechanism each method rests on (LfF's per-sample EMA and weights,
checkpoint resume, ReBias's HSIC estimator, the RUBi / LearnedMixin update rules)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from benchmark import DATASETS, METHODS, make_spec
from benchmark.engine import Loader, build_method, run
from benchmark.hparams import from_dict, to_dict
from benchmark.store import ResultStore
from benchmark import optim
from benchmark.recipes import PGD_TABLE4_MNIST
from benchmark_methods.rebias import hsic_unbiased, rbf_kernel

MINE = ("lff", "rebias", "rubi", "learned_mixin")


@pytest.fixture(scope="session")
def cm_lff(bench_home, data_root):
    return DATASETS.get("colored_mnist_lff")().build({}, data_root, bench_home / "cache")


def _tiny(method, dataset, tmp_path, bench_home, data_root, **kw):
    hparams = {**METHODS.get(method).tiny_hparams, **kw.pop("hparams", {})}
    spec = make_spec(method, dataset, epochs=kw.pop("epochs", 1), max_train=kw.pop("max_train", 512),
                     max_eval=256, hparams=hparams, **kw)
    return run(spec, store=ResultStore(tmp_path / "runs"), data_root=data_root, home=bench_home,
               progress=False, keep_model=False).record


@pytest.mark.parametrize("method", MINE)
def test_tiny_run_on_colored_mnist_ratio(method, tmp_path, bench_home, data_root):
    rec = _tiny(method, "colored_mnist_ratio", tmp_path, bench_home, data_root)
    row = rec["history"][-1]
    losses = {k: v for k, v in row.items() if k.startswith("train.")}
    assert losses and all(math.isfinite(v) for v in losses.values()), losses
    for split in ("val", "test"):
        assert 0.0 <= row[split]["acc"] <= 1.0 and row[split]["n"] == 256
        assert math.isfinite(row[split]["conflicting_acc"])


@pytest.mark.parametrize("method", MINE)
def test_hparams_round_trip_and_presets(method):
    cls = METHODS.get(method)
    hp = cls.HParams()
    assert from_dict(cls.HParams, to_dict(hp)) == hp
    presets = getattr(__import__(cls.__module__, fromlist=["PRESETS"]), "PRESETS", {})  # method-specific only
    for name, overrides in presets.items():
        assert from_dict(cls.HParams, overrides) is not None, name
    assert from_dict(cls.HParams, dict(PGD_TABLE4_MNIST.values)).momentum == 0.8


def test_schedules():
    p = torch.nn.Parameter(torch.zeros(1))
    hp = from_dict(METHODS.get("lff").HParams, dict(PGD_TABLE4_MNIST.values))
    opt = optim.make_optimizer([p], hp)
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.8
    sched = optim.make_scheduler(opt, hp, 100)
    assert sched.milestones == {20: 1, 40: 1, 60: 1, 80: 1}
    assert optim.make_scheduler(opt, from_dict(METHODS.get("lff").HParams, {}), 100) is None
    step = optim.make_scheduler(opt, from_dict(METHODS.get("rebias").HParams, {}), 80)
    assert isinstance(step, torch.optim.lr_scheduler.StepLR) and step.step_size == 20


# ----------------------------------------------------------------------------- LfF

class _OfficialEMA:
    """alinlab/LfF util.py:26-39, transcribed (the reference)."""

    def __init__(self, label, alpha):
        self.label, self.alpha = label, alpha
        self.parameter = torch.zeros(len(label))
        self.updated = torch.zeros(len(label))

    def update(self, data, index):
        self.parameter[index] = self.alpha * self.parameter[index] + (1 - self.alpha * self.updated[index]) * data
        self.updated[index] = 1

    def max_loss(self, label):
        return self.parameter[self.label == label].max()


def test_lff_ema_and_weights_match_the_official_loop(cm_lff):
    info = cm_lff.info
    split = cm_lff["train"].subset(torch.arange(0, 60000, 100))        # 600 real samples
    loader = Loader(split, info.mean, info.std, torch.device("cpu"))
    spec = make_spec("lff", "colored_mnist_lff", epochs=2)
    torch.manual_seed(0)
    method = build_method(spec, info)
    method.train()
    method.prepare(loader)
    ref_b, ref_d = _OfficialEMA(split.y, 0.7), _OfficialEMA(split.y, 0.7)
    g = torch.Generator().manual_seed(3)
    for step in range(6):                                              # batches revisit samples
        idx = torch.randperm(600, generator=g)[:128]
        batch = loader.batch(idx)
        with torch.no_grad():                                          # the MLP is deterministic
            ce_b = F.cross_entropy(method.net_b(batch.x), batch.y, reduction="none")
            ce_d = F.cross_entropy(method.net_d(batch.x), batch.y, reduction="none")
        ref_b.update(ce_b, idx)
        ref_d.update(ce_d, idx)
        lb, ld = ref_b.parameter[idx].clone(), ref_d.parameter[idx].clone()
        for c in range(10):
            lb[batch.y == c] /= ref_b.max_loss(c)
            ld[batch.y == c] /= ref_d.max_loss(c)
        expected_w = lb / (lb + ld + 1e-8)
        logs = method.update(batch)
        assert torch.allclose(method.ema_b, ref_b.parameter, atol=1e-6)
        assert torch.allclose(method.ema_d, ref_d.parameter, atol=1e-6)
        assert math.isclose(float(logs["weight"]), float(expected_w.mean()), rel_tol=1e-5)
    assert 0 < float(method.seen.sum()) < 600


def test_lff_gce_has_the_official_gradient():
    """q·GCE (benchmark.losses) has the gradient of LfF's CE·q·p_y^q with p_y detached."""
    from benchmark.losses import generalized_cross_entropy
    logits = torch.randn(16, 10, requires_grad=True)
    y = torch.randint(0, 10, (16,))
    (0.7 * generalized_cross_entropy(logits, y, 0.7)).backward()
    ours = logits.grad.clone()
    logits.grad = None
    p = F.softmax(logits, 1).gather(1, y[:, None]).squeeze(1).detach()
    (F.cross_entropy(logits, y, reduction="none") * p ** 0.7 * 0.7).mean().backward()
    assert torch.allclose(ours, logits.grad, atol=1e-7)


def test_lff_resume_is_exact(tmp_path, bench_home, data_root):
    """Killed after epoch 1 and resumed, a run ends with the metrics of an uninterrupted one —
    the per-sample EMA tables travel in the checkpoint."""
    spec = make_spec("lff", "colored_mnist_lff", epochs=2, max_train=512, max_eval=256, seed=7)
    full = run(spec, store=ResultStore(tmp_path / "a"), data_root=data_root, home=bench_home,
               progress=False, keep_model=False).record

    class Stop(Exception):
        pass

    def stop(epoch, row):
        if epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        run(spec, store=ResultStore(tmp_path / "b"), data_root=data_root, home=bench_home, progress=False,
            on_epoch=stop, keep_model=False)
    state = torch.load(bench_home / "checkpoints" / f"{spec.run_id}.pt", weights_only=False)
    assert state["method"]["model"]["ema_b"].shape == (512,) and state["method"]["model"]["seen"].sum() == 512
    resumed = run(spec, store=ResultStore(tmp_path / "b"), data_root=data_root, home=bench_home,
                  progress=False, keep_model=False).record
    assert resumed["history"][-1]["test"] == full["history"][-1]["test"]
    assert resumed["history"][-1]["train.loss"] == full["history"][-1]["train.loss"]


# ----------------------------------------------------------------------------- ReBias

def test_hsic_unbiased_estimator():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 8, generator=g)
    k = rbf_kernel(x, 1.0)
    # the official formula, literally (clovaai/rebias criterions/hsic.py:79-97)
    kt = k - torch.diag(torch.diag(k))
    n = 128
    official = (torch.trace(kt @ kt) + kt.sum() * kt.sum() / (n - 1) / (n - 2)
                - 2 * kt.sum(0).dot(kt.sum(0)) / (n - 2)) / (n * (n - 3))
    assert torch.allclose(hsic_unbiased(k, k), official, rtol=1e-5)
    independent = hsic_unbiased(k, rbf_kernel(torch.randn(128, 8, generator=g), 1.0))
    dependent = hsic_unbiased(k, rbf_kernel(x[:, :4] + 0.1 * torch.randn(128, 4, generator=g), 1.0))
    assert abs(float(independent)) < 0.1 * float(dependent) and float(dependent) > 0
    assert float(hsic_unbiased(k[:3, :3], k[:3, :3])) == 0.0           # undefined below 4 samples


def test_rebias_update_moves_both_players(cm_lff):
    info = cm_lff.info
    loader = Loader(cm_lff["train"].subset(torch.arange(256)), info.mean, info.std, torch.device("cpu"))
    torch.manual_seed(0)
    method = build_method(make_spec("rebias", "colored_mnist_lff"), info).train()
    f0 = [p.clone() for p in method.net.parameters()]
    g0 = [p.clone() for p in method.g_nets.parameters()]
    logs = method.update(loader.batch(torch.arange(256)))
    assert float(logs["hsic"]) > 0
    assert all(not torch.equal(a, b) for a, b in zip(f0, method.net.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(g0, method.g_nets.parameters()))
    official = build_method(make_spec("rebias", "colored_mnist_lff", hparams={"bias_backbone": "rebias_convnet_k1"}), info)
    assert all(m.kernel_size == (1, 1) for m in official.g_nets.modules() if isinstance(m, torch.nn.Conv2d))


# ----------------------------------------------------------------------------- RUBi, LearnedMixin

def test_rubi_trains_bias_branch_and_masks_logits(cm_lff):
    info = cm_lff.info
    loader = Loader(cm_lff["train"].subset(torch.arange(256)), info.mean, info.std, torch.device("cpu"))
    torch.manual_seed(0)
    method = build_method(make_spec("rubi", "colored_mnist_lff"), info).train()
    batch = loader.batch(torch.arange(256))
    branch0, g0 = method.branch.weight.clone(), method.bias_net.g.weight.clone()
    logs = method.update(batch)
    assert not torch.equal(branch0, method.branch.weight)     # trained (ReBias's code leaves it fixed)
    assert not torch.equal(g0, method.bias_net.g.weight)
    assert math.isfinite(float(logs["loss"])) and math.isfinite(float(logs["question_loss"]))
    method.eval()
    assert torch.equal(method.predict(batch.x), method.net(batch.x))   # no mask at test time
    as_released = build_method(make_spec("rubi", "colored_mnist_lff", hparams={"train_branch": False}), info).train()
    branch0 = as_released.branch.weight.clone()
    as_released.update(batch)
    assert torch.equal(branch0, as_released.branch.weight)          # ReBias's code: never optimised


def test_learned_mixin_freezes_bias_model_and_learns_gate(cm_lff):
    info = cm_lff.info
    loader = Loader(cm_lff["train"].subset(torch.arange(512)), info.mean, info.std, torch.device("cpu"))
    torch.manual_seed(0)
    method = build_method(make_spec("learned_mixin", "colored_mnist_lff", hparams={"bias_pretrain_epochs": 2}), info)
    method.train()
    before = [p.clone() for p in method.bias_net.parameters()]
    out = method.prepare(loader)
    assert math.isfinite(out["bias_loss"]) and bool(method.frozen)
    assert any(not torch.equal(a, b) for a, b in zip(before, method.bias_net.parameters()))
    method.train()
    assert not method.bias_net.training and method.net.training
    frozen = [p.clone() for p in method.bias_net.parameters()]
    gate0 = method.gate.weight.clone()
    for _ in range(2):
        logs = method.update(loader.batch(torch.arange(256)))
    assert all(torch.equal(a, b) for a, b in zip(frozen, method.bias_net.parameters()))
    assert not torch.equal(gate0, method.gate.weight)
    assert float(logs["gate"]) > 0 and math.isfinite(float(logs["entropy"]))
    with pytest.raises(ValueError):
        build_method(make_spec("learned_mixin", "colored_mnist_lff", hparams={"bias_target": "z"}), info)
    fixed = build_method(make_spec("learned_mixin", "colored_mnist_lff", hparams={"train_gate": False}), info)
    assert all(p is not q for p in fixed.gate.parameters() for g in fixed.optimizers["f"].param_groups
               for q in g["params"])


# ----------------------------------------------------------------------------- headline (slow)

@pytest.mark.slow
def test_lff_beats_vanilla_on_minority_colored_mnist_lff(tmp_path, bench_home, data_root):
    """LfF Table 2 / PGD's ordering on Colored MNIST (LfF protocol) at 1 % conflicting: the
    de-biased model's accuracy on bias-conflicting test samples exceeds vanilla's. Full training
    set, the MLP, a few epochs; vanilla with its own optimiser (SGD 0.01, momentum 0.9) at batch 256."""
    store = ResultStore(tmp_path / "runs")
    params = {"conflicting_ratio": 0.01}
    acc = {}
    for method, hparams in (("vanilla", {"batch_size": 256}), ("lff", {})):
        spec = make_spec(method, "colored_mnist_lff", dataset_params=params, epochs=EPOCHS_SLOW, hparams=hparams)
        rec = run(spec, store=store, data_root=data_root, home=bench_home, progress=False, keep_model=False).record
        acc[method] = rec["history"][-1]["test"]["conflicting_acc"]
    print("minority (conflicting) test accuracy:", acc)
    assert acc["lff"] > acc["vanilla"] + 0.05


EPOCHS_SLOW = 5
