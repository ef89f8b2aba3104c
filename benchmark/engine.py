"""The one training loop for every method.

Small datasets live on the device as uint8 tensors and are batched by index there; inputs are
normalised per batch on the device. Each epoch ends with an evaluation of every split (only every
``spec.eval_every``-th epoch and the last, when the spec asks for fewer) and an atomic checkpoint
(method state, optimisers, RNG state, history), so a killed run resumes from its last finished
epoch and ends with exactly the numbers of an uninterrupted run. The finished record goes to the
result store first and is then mirrored to MLflow.
"""
from __future__ import annotations

import ctypes
import functools
import os
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from .data import Split, atomic_torch_save, default_home
from .dropout import use_fast_dropout
from .failpoints import failpoint
from .hparams import from_dict
from .method import Batch, Method
from .metrics import SplitMeter
from .noise import flip_labels
from .provenance import fingerprint
from .registry import DATASETS, METHODS
from .spec import RunSpec
from .store import ResultStore, code_version, library_versions, now_iso

EVAL_BATCH = 2048  # ×4 on GPUs with >= 40 GiB; on a CPU, networks without convolutions (the LfF MLP: as fast as 256)
EVAL_BATCH_CPU_CONV = 256  # convolutional networks on a CPU, where 2048 outgrows the caches: with channels-last,
# LNL conv net evaluation went 4,188 -> 14,669 img/s (reports/perf/cpu-2-cores.md at e7aabc3 and 8d5fa88)
EVAL_BATCH_ELEMENTS = 2**24  # cap on input values per evaluation batch: 2048 MNIST images, 111 at 3×224×224
SUBSET_SEED = 0  # the fixed generator that picks the max_train subset, independent of the run seed
MAX_DEVICE_BYTES = int(float(os.environ.get("BENCHMARK_MAX_DEVICE_GB", "8")) * 2**30)
FAST_ENV = "BENCHMARK_FAST"  # GPU opt-ins, comma-separated: "channels_last", "compile" (see fast_path)


@dataclass
class RunResult:
    """What :func:`run` did: the record, and whether it was already stored (a no-op)."""

    record: dict[str, Any]
    cached: bool


def pick_device(device: str | None = None) -> torch.device:
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Loader:
    """Batches a :class:`Split`: index, gather, (augment), normalise — on the device.

    Labels always live on the device. Inputs live there too unless they are larger than
    ``max_device_bytes`` (e.g. a memory-mapped image cache), in which case each batch is gathered
    on the host and copied over.

    Args:
        split: the tensors (on the host).
        mean, std: per-channel normalisation of inputs scaled to [0, 1].
        device: where batches are delivered.
        augment: optional function of a float batch in [0, 1] (train-time augmentation).
    """

    def __init__(self, split: Split, mean, std, device, augment=None, max_device_bytes: int = MAX_DEVICE_BYTES):
        x_bytes = split.x.numel() * split.x.element_size()
        self.x_on_device = device.type == "cpu" or x_bytes <= max_device_bytes
        x = split.x.to(device) if self.x_on_device else split.x
        self.split = Split(x, split.y.to(device), split.b.to(device), split.aligned.to(device),
                           {k: v.to(device) for k, v in split.attrs.items()})
        self.device = device
        self.augment = augment
        shape = (1, -1, 1, 1) if split.x.dim() == 4 else (1, -1)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(shape)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(shape)
        self.channels_last = False  # deliver NHWC batches (see benchmark.engine.fast_path)

    def __len__(self) -> int:
        return len(self.split)

    def batch(self, idx: torch.Tensor, augment: bool = False) -> Batch:
        s = self.split
        x = s.x[idx] if self.x_on_device else s.x[idx.cpu()].to(self.device, non_blocking=True)
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)  # in place on the fresh float copy: same numbers, fewer allocations
            if augment and self.augment is not None:
                x = self.augment(x)
            x = x.sub_(self.mean).div_(self.std)
        else:
            x = x.float()
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return Batch(x, s.y[idx], s.b[idx], s.aligned[idx], idx, {k: v[idx] for k, v in s.attrs.items()})

    def batches(self, order: torch.Tensor, batch_size: int, augment: bool = False, drop_last: bool = False):
        n = len(order)
        stop = n - n % batch_size if drop_last and n >= batch_size else n
        for i in range(0, stop, batch_size):
            yield self.batch(order[i:i + batch_size], augment)


def _fixed_subset(split: Split, n: int | None) -> Split:
    """A random subset of ``n`` samples fixed by ``SUBSET_SEED`` (independent of the run seed)."""
    if n is None or n >= len(split):
        return split
    pick = torch.randperm(len(split), generator=torch.Generator().manual_seed(SUBSET_SEED))
    return split.subset(pick[:n].sort().values)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A fresh generator per (seed, epoch): batch order does not depend on what ran before."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def evaluate(method: Method, loader: Loader, num_classes: int, num_bias_classes: int,
             precision: str = "fp32") -> dict[str, Any]:
    """Accuracy, aligned/conflicting, worst-group and (target × bias) matrix on one split
    (``precision="bf16"``: under bfloat16 autocast, as the run trained)."""
    was_training = method.training
    method.eval()
    meter = SplitMeter(num_classes, num_bias_classes, loader.device)
    order = torch.arange(len(loader), device=loader.device)
    with torch.no_grad(), torch.autocast(loader.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        for batch in loader.batches(order, eval_batch_size(loader, method)):
            logits, extra = method.evaluate_batch(batch)
            meter.add(logits.argmax(1), batch.y, batch.b, batch.aligned,
                      loss=torch.nn.functional.cross_entropy(logits.float(), batch.y, reduction="none"))
            meter.add_extra(extra)
    method.train(was_training)
    return meter.result()


def evaluate_splits(method: Method, loaders: dict[str, Loader], info, precision: str = "fp32") -> dict[str, dict]:
    """:func:`evaluate` on every split but ``train``: the split metrics of one history row."""
    return {name: evaluate(method, loader, info.num_classes, info.num_bias_classes, precision)
            for name, loader in loaders.items() if name != "train"}


def eval_batch_size(loader: Loader, net: torch.nn.Module | None = None) -> int:
    """The evaluation batch for this loader's device and input size, and on a CPU for the network
    (``EVAL_BATCH_CPU_CONV`` when ``net`` has convolutions; see ``EVAL_BATCH*``)."""
    per_sample = max(1, loader.split.x[0].numel()) if len(loader) else 1
    if loader.device.type != "cuda":
        size = EVAL_BATCH_CPU_CONV if net is not None and has_conv(net) else EVAL_BATCH
        return max(1, min(size, EVAL_BATCH_ELEMENTS // per_sample))
    scale = 4 if torch.cuda.get_device_properties(loader.device).total_memory >= 40 * 2**30 else 1
    return max(1, min(EVAL_BATCH * scale, EVAL_BATCH_ELEMENTS * scale // per_sample))


def has_conv(net: torch.nn.Module) -> bool:
    """Whether ``net`` has a convolution layer (CPU evaluation batch, channels-last, auto pack size)."""
    return any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in net.modules())


def autocast(spec: RunSpec, dev: torch.device):
    """The spec's precision as an autocast context (a no-op for fp32)."""
    return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=spec.precision == "bf16")


def fast_path(method: Method, loaders: dict[str, "Loader"], dev: torch.device) -> Method:
    """The device's fast settings; none is part of the run id, as none changes the arithmetic beyond
    the order of float sums and, for dropout on a CPU, which random numbers a mask is drawn from
    (the same distribution).

    On a CPU, a network with convolutions trains and evaluates in channels-last (NHWC) layout: its
    4-D weights and every batch (oneDNN's preferred layout); every plain ``nn.Dropout`` becomes
    :class:`benchmark.dropout.FastDropout` (the same distribution from fewer random numbers); and the
    process keeps freed memory (:func:`keep_freed_memory`). Together with the CPU evaluation batch,
    the first two took training on this 2-core CPU from 3,508 to 3,794 img/s (LNL conv net) and from
    7,189 to 10,836 (Simple ConvNet-1; reports/perf/cpu-2-cores.md at e7aabc3 and 8d5fa88).

    On a GPU, opt-ins named in ``$BENCHMARK_FAST`` (comma-separated):

    - ``channels_last``: the same NHWC layout (faster cuDNN convolutions, above all under bf16);
    - ``compile``: ``method.update`` compiled with ``torch.compile(mode="reduce-overhead")`` (CUDA
      graphs: one launch per step instead of dozens; the first steps compile, a last smaller batch
      compiles once more).

    The GPU opt-ins are not measured on a GPU yet: run ``python -m benchmark perf`` with and without
    them first.
    """
    wanted = {w.strip() for w in os.environ.get(FAST_ENV, "").split(",") if w.strip()}
    unknown = wanted - {"channels_last", "compile"}
    if unknown:
        raise ValueError(f"${FAST_ENV}: unknown option(s) {sorted(unknown)}; use channels_last, compile")
    if dev.type == "cuda":
        channels_last = "channels_last" in wanted
    else:
        channels_last, wanted = has_conv(method), set()
        keep_freed_memory()
    use_fast_dropout(method)  # on a GPU FastDropout is nn.Dropout; one module type on every device
    if channels_last:
        method = method.to(memory_format=torch.channels_last)
        for loader in loaders.values():
            loader.channels_last = True
    if "compile" in wanted:
        method.update = torch.compile(method.update, mode="reduce-overhead")
    return method


_MALLOPT = {-3: 32 * 2**20, -1: 256 * 2**20, -2: 64 * 2**20}  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, M_TOP_PAD


@functools.lru_cache(maxsize=None)
def keep_freed_memory() -> bool:
    """Tell glibc's allocator to keep freed blocks of up to 32 MiB in the process (``mallopt``).

    By default a CPU step's large activations and gradients go back to the operating system when
    they are freed and come back as fresh, page-faulting memory in the next step. With this setting
    the LNL conv net trained at 4,134 img/s instead of 3,794 and its unlearning step at 1,325 instead
    of 1,238 (reports/perf/cpu-2-cores.md at 8d5fa88 and 8f9f02d; the reference pipeline, in the same
    process, gained too). Process-wide and idempotent; False where the C library is not glibc (the
    allocator is left alone)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return all(libc.mallopt(option, value) == 1 for option, value in _MALLOPT.items())
    except (OSError, AttributeError):
        return False


def build_loaders(spec: RunSpec, dev: torch.device, data_root=None, home: Path | None = None):
    """The run's dataset and a :class:`Loader` per split: the training subset (``max_train``, label
    noise) with the dataset's augmentation, and every other split (``max_eval``)."""
    home = Path(home) if home else default_home()
    dataset = DATASETS.get(spec.dataset)().build(spec.dataset_params, data_root=data_root, cache_dir=home / "cache")
    info = dataset.info
    train_split = _fixed_subset(dataset["train"], spec.max_train)
    if spec.label_noise:
        train_split = flip_labels(train_split, spec.label_noise, info.num_classes)
    loaders = {"train": Loader(train_split, info.mean, info.std, dev, augment=dataset.augment)}
    for name, split in dataset.splits.items():
        if name != "train":
            loaders[name] = Loader(_fixed_subset(split, spec.max_eval), info.mean, info.std, dev)
    return dataset, loaders


def checkpoint_path(spec: RunSpec, home: Path | None = None) -> Path:
    return (home or default_home()) / "checkpoints" / f"{spec.run_id}.pt"


def model_path(run_id: str, home: Path | None = None) -> Path:
    """Where :func:`run` keeps a finished run's final weights (``keep_model=True``)."""
    return (Path(home) if home else default_home()) / "models" / f"{run_id}.pt"


def load_trained(spec_or_record, home: Path | None = None, device: str | None = "cpu") -> Method:
    """Rebuild a finished run's method and load its final weights, in eval mode.

    Args:
        spec_or_record: a :class:`RunSpec`, a spec dict, or a stored record (with ``"spec"``).
        home: the working folder the run used (default ``$BENCHMARK_HOME``).
        device: where to put the model.

    Raises:
        FileNotFoundError: the run kept no weights (it finished with ``keep_model=False``).
    """
    spec = spec_or_record
    if isinstance(spec, dict):
        spec = RunSpec.from_dict(spec.get("spec", spec))
    path = model_path(spec.run_id, home)
    if not path.is_file():
        raise FileNotFoundError(f"run {spec.run_id} kept no weights at {path}; rerun it with keep_model=True")
    family = DATASETS.get(spec.dataset)
    info = family().info(from_dict(family.Params, spec.dataset_params))
    dev = pick_device(device)
    method = build_method(spec, info)
    method.load_state_dict(torch.load(path, map_location=dev, weights_only=True)["model"])
    return method.to(dev).eval()


def build_method(spec: RunSpec, info) -> Method:
    cls = METHODS.get(spec.method)
    hp = from_dict(cls.HParams, spec.hparams)
    if spec.backbone:
        info = type(info)(**{**info.__dict__, "backbone": spec.backbone})
    if spec.pretrained and not _is_run_ref(spec.pretrained):
        from .nets import BACKBONES
        if not getattr(BACKBONES.get(info.backbone), "takes_pretrained", False):  # never ignore it silently
            raise ValueError(f"pretrained {spec.pretrained!r}: backbone {info.backbone!r} loads no weights files; "
                             "use pretrained run:RUN_ID or a backbone that takes them (resnet18)")
        info = type(info)(**{**info.__dict__, "backbone_options": {**info.backbone_options, "pretrained": spec.pretrained}})
    return cls(hp, info, spec.epochs)


RUN_PREFIX = "run:"


def _is_run_ref(pretrained: str | None) -> bool:
    return bool(pretrained) and pretrained.startswith(RUN_PREFIX)


def init_from_run(method: Method, ref: str, home: Path | None = None) -> str:
    """Load the backbone (``net``) of the finished run ``ref`` = ``run:RUN_ID`` into ``method.net``.

    This is how a method starts from a trained baseline (LNL's official recipe: a vanilla run,
    then LNL at lr 0.001 from its weights). Only the backbone moves; heads and optimisers start
    fresh. Returns the run id.
    """
    run_id = ref[len(RUN_PREFIX):]
    path = model_path(run_id, home)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained {ref!r}: no weights at {path}; run that spec first (runs keep their "
                                f"final weights unless keep_model=False) or pass a state-dict file")
    state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    net_state = {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")}
    if not net_state or not hasattr(method, "net"):
        raise ValueError(f"pretrained {ref!r}: that run or this method has no backbone 'net' to transfer")
    try:
        method.net.load_state_dict(net_state)
    except RuntimeError as err:
        raise ValueError(f"pretrained {ref!r}: its backbone does not fit this run's ({err})") from None
    return run_id


def load_checkpoint(path: Path, device="cpu") -> dict | None:
    """A run's epoch checkpoint, read with ``weights_only=True`` (tensors, numbers, strings,
    lists and dicts only: a planted file cannot run code). A damaged or unsafe checkpoint is moved
    to ``<path>.damaged`` with a warning and None is returned: the run starts again from epoch 0."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        if not isinstance(state, dict) or not {"method", "rng", "history", "epoch"} <= set(state):
            raise ValueError("not a checkpoint of this engine")
        return state
    except Exception as e:  # noqa: BLE001 - any damage: restart rather than trust the file
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        warnings.warn(f"checkpoint {path} is damaged or not a plain tensor file ({type(e).__name__}: {first}); "
                      f"moved to {path.name}.damaged, the run starts from epoch 0", RuntimeWarning, stacklevel=2)
        try:
            os.replace(path, path.with_name(path.name + ".damaged"))
        except OSError:
            pass
        return None


def run(spec: RunSpec, *, store: ResultStore | None = None, data_root=None, device: str | None = None,
        home: Path | None = None, mirror=None, progress: bool = True, tags: dict | None = None,
        on_epoch: Callable[[int, dict], None] | None = None, keep_model: bool = True) -> RunResult:
    """Train and evaluate ``spec``, store the record, mirror it; a stored spec is a no-op.

    Args:
        spec: the run.
        store: the result store (default location if None).
        data_root: where dataset files live (see ``benchmark.data.resolve_data_root``).
        device: "cpu", "cuda", "cuda:1"; None picks CUDA when present.
        home: working folder for the dataset cache and checkpoints.
        mirror: an object with ``log_record(record)`` (e.g. ``MLflowMirror``), or None.
        tags: labels stored with the record but not part of the spec (e.g. suite, profile).
        progress: show tqdm bars.
        on_epoch: called as ``on_epoch(epoch, history_row)`` after each checkpoint (tests use it
            to interrupt a run).
        keep_model: save the final ``method.state_dict()`` to ``<home>/models/<run_id>.pt``
            (see :func:`load_trained`; bias probes read it).
    """
    store = store or ResultStore()
    if store.has(spec.run_id):
        return RunResult(store.get(spec.run_id), cached=True)
    home = Path(home) if home else default_home()
    dev = pick_device(device)
    t0 = time.time()
    code_fp = fingerprint(spec)  # at the start: the code that runs is the code loaded now

    dataset, loaders = build_loaders(spec, dev, data_root, home)
    info = dataset.info

    torch.manual_seed(spec.seed)
    method = build_method(spec, info)
    if _is_run_ref(spec.pretrained):
        init_from_run(method, spec.pretrained, home)
    method = fast_path(method.to(dev), loaders, dev)
    method.attach_splits(loaders)
    batch_size = int(spec.hparams["batch_size"])

    ckpt = checkpoint_path(spec, home)
    history: list[dict[str, Any]] = []
    start_epoch, prepared, prep_metrics, elapsed_before = 0, False, {}, 0.0
    state = load_checkpoint(ckpt, dev) if ckpt.exists() else None
    if state is not None:
        method.load_training_state(state["method"])
        torch.set_rng_state(state["rng"])
        if dev.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], dev)
        history, start_epoch = state["history"], state["epoch"]
        prepared, prep_metrics, elapsed_before = True, state.get("prepare", {}), state.get("elapsed", 0.0)

    def save(epoch: int) -> None:
        atomic_torch_save({"method": method.training_state(), "rng": torch.get_rng_state(),
                           "cuda_rng": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
                           "history": history, "epoch": epoch, "prepare": prep_metrics,
                           "elapsed": elapsed_before + time.time() - t0, "spec": spec.to_dict()}, ckpt)

    if not prepared:
        method.train()
        prep_metrics = method.prepare(loaders["train"]) or {}
        save(0)

    label = f"{spec.method}/{spec.dataset} seed={spec.seed}"
    bar = tqdm(total=spec.epochs, initial=start_epoch, desc=label, unit="ep", disable=not progress,
               dynamic_ncols=True, leave=False)
    n_train = len(loaders["train"])
    for epoch in range(start_epoch, spec.epochs):
        method.train()
        gen = epoch_generator(spec.seed, epoch)
        order = method.sample_indices(n_train, gen)
        if order is None:
            order = torch.randperm(n_train, generator=gen)
        order = order.to(dev)
        sums: dict[str, torch.Tensor] = {}
        steps = 0
        te = time.time()
        for i, batch in enumerate(loaders["train"].batches(order, batch_size, augment=True)):
            if epoch and i == (n_train // batch_size) // 2:
                failpoint("epoch.mid")
            with autocast(spec, dev):
                logs = method.update(batch)
            for k, v in logs.items():
                v = v.detach() if torch.is_tensor(v) else torch.tensor(float(v))
                sums[k] = sums.get(k, 0) + v
            steps += 1
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)  # the step queues work without waiting for it (no .item() in the loop)
        train_time = time.time() - te
        row: dict[str, Any] = {"epoch": epoch + 1, "train_time_s": round(train_time, 3),
                               "images_per_s": round(len(order) / max(train_time, 1e-9), 1)}
        row.update({f"train.{k}": float(v) / max(steps, 1) for k, v in sums.items()})
        row.update({f"train.{k}": v for k, v in (method.end_epoch(epoch + 1) or {}).items()})
        if spec.evaluates(epoch + 1):
            row.update(evaluate_splits(method, loaders, info, spec.precision))
        history.append(row)
        save(epoch + 1)
        bar.update(1)
        test = row.get("test", {})
        bar.set_postfix(loss=f"{row.get('train.loss', float('nan')):.3f}", test_acc=f"{test.get('acc', float('nan')):.3f}")
        if on_epoch is not None:
            on_epoch(epoch + 1, row)
    bar.close()

    final = {k: v for k, v in history[-1].items() if isinstance(v, dict)} if history else {}
    record = {
        "run_id": spec.run_id,
        "status": "done",
        "spec": spec.to_dict(),
        "tags": dict(tags or {}),
        "dataset_fingerprint": dataset.fingerprint,
        "prepare": prep_metrics,
        "history": history,
        "final": final,
        "code": {**code_version(), "fingerprint": code_fp},
        "libraries": library_versions(),
        "device": _device_name(dev),
        "wall_time_s": round(elapsed_before + time.time() - t0, 3),
        "created": now_iso(),
        "host": os.uname().nodename,
    }
    if keep_model:
        atomic_torch_save({"spec": spec.to_dict(), "model": method.state_dict()}, model_path(spec.run_id, home))
    store.put(record)
    failpoint("record.stored")
    ckpt.unlink(missing_ok=True)
    if mirror is not None:
        mirror.log_record(record)
    return RunResult(record, cached=False)


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(dev)}"
    return f"cpu:{torch.get_num_threads()} threads"


def format_exception(e: BaseException) -> str:
    return "".join(traceback.format_exception(type(e), e, e.__traceback__))
