"""Packed runs: K compatible runs trained as one stacked model in one process.

Runs of one method that share backbone, batch size, epoch budget, hyperparameters and training-set
size — differing in seed, dataset parameters or label noise — train together: each run's networks
become one slice of a :class:`benchmark.pack_module.PackedModule`, each step feeds the K runs'
batches (each from its own data, in its own order ``epoch_generator(seed, epoch)``) as one batch of
K·B samples, and the method's :meth:`~benchmark.method.Method.per_run_mean` keeps every run's loss
and gradient its own. Optimiser state, BatchNorm statistics and per-sample tables are stacked per
run; augmentation and dropout masks draw from each run's own RNG stream. The pack is checkpointed
every epoch and resumes as a whole.

Before the first epoch each run's :meth:`~benchmark.method.Method.prepare` runs on its own, unless
the method packs that stage too (:meth:`~benchmark.method.Method.prepare_pack`, e.g. PGD's biased
model): then the pack prepares once, on the stacked networks, and each run keeps its slice.

Each run is evaluated by its own method object (the pack's slice copied back) with the engine's
:func:`~benchmark.engine.evaluate_splits` (at the epochs its spec evaluates), and finished by :func:`benchmark.engine.run` from a checkpoint
at its last epoch, so it stores the same record, under the same run id, as a lone run; the
timings in its history are the pack's, and its tags say ``pack_size``.

Methods opt in with ``Method.packable = True`` (vanilla, gray, lff, lnl, lnl_adv, grl, blind_eye,
blind_eye_grl, pgd and pgd.official today; pgd and pgd.official pack their preparation too); :func:`run_pack`
runs the others, and packs of one, one by one through :func:`benchmark.engine.run`.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from .data import atomic_torch_save, default_home
from .engine import (Loader, RunResult, autocast, build_loaders, build_method, checkpoint_path, epoch_generator,
                     RUN_PREFIX, evaluate_splits, fast_path, has_conv, init_from_run, pick_device, run)
from .method import Method
from .pack_data import PackedData
from .pack_module import PackedModule
from .registry import METHODS
from .spec import RunSpec
from .store import ResultStore

AUTO_PACK = {"cpu": 8, "cuda": 64}  # --pack auto (see auto_pack_size); the GPU value is not measured yet


def packable(spec: RunSpec) -> bool:
    """Whether ``spec``'s method can train in a pack."""
    return bool(getattr(METHODS.get(spec.method), "packable", False))


def pack_key(spec: RunSpec) -> str:
    """Specs with equal keys can share a pack: everything but seed, dataset parameters and label noise."""
    d = spec.to_dict()
    for free in ("seed", "dataset_params", "label_noise"):
        d.pop(free, None)
    return json.dumps(d, sort_keys=True)


def group_specs(specs: list[RunSpec], size: int | str, device: str | None = None) -> list[list[RunSpec]]:
    """Split ``specs`` into packs of at most ``size`` compatible runs, in first-seen order.

    ``size="auto"`` takes :func:`auto_pack_size` of each group's first spec. Runs of methods that
    cannot be packed come back as packs of one.
    """
    if size != "auto" and (not isinstance(size, int) or size < 1):
        raise ValueError(f"pack size must be >= 1 or 'auto', got {size!r}")
    groups: dict[str, list[RunSpec]] = {}
    limits: dict[str, int] = {}
    out: list[list[RunSpec]] = []
    for spec in specs:
        if not packable(spec) or size == 1:
            out.append([spec])
            continue
        key = pack_key(spec)
        if key not in limits:
            limits[key] = auto_pack_size(spec, device) if size == "auto" else int(size)
        group = groups.setdefault(key, [])
        group.append(spec)
        if len(group) == limits[key]:
            out.append(group)
            groups[key] = []
    out.extend(g for g in groups.values() if g)
    return out


def auto_pack_size(spec: RunSpec, device: str | None = None) -> int:
    """``--pack auto``: 64 runs on a GPU; on a CPU 8 for networks without convolutions and 1 (no
    packing) for convolutional ones, whose grouped/vmapped convolutions ran slower there than the
    same convolutions one run after another (reports/perf)."""
    if pick_device(device).type == "cuda":
        return AUTO_PACK["cuda"]
    from .hparams import from_dict
    from .registry import DATASETS
    family = DATASETS.get(spec.dataset)
    info = family().info(from_dict(family.Params, spec.dataset_params))
    net = build_method(spec, info)
    return 1 if has_conv(net) else AUTO_PACK["cpu"]


def pack_checkpoint_path(specs: list[RunSpec], home: Path | None = None) -> Path:
    ids = ",".join(sorted(s.run_id for s in specs))
    return (home or default_home()) / "checkpoints" / f"pack-{hashlib.sha256(ids.encode()).hexdigest()[:16]}.pt"


def run_pack(specs: list[RunSpec], *, store: ResultStore | None = None, data_root=None, device: str | None = None,
             home: Path | None = None, mirror=None, progress: bool = True, tags: dict | list[dict] | None = None,
             on_epoch: Callable[[int, dict], None] | None = None, keep_model: bool = True) -> list[RunResult]:
    """Train ``specs`` as one pack; returns one :class:`RunResult` per spec, in order.

    Stored runs are skipped (cached results); a single remaining run, or runs of a method that
    cannot be packed, go through :func:`benchmark.engine.run`. Arguments are those of
    :func:`benchmark.engine.run`, except that ``tags`` may also be a list (one dict per spec) and
    ``on_epoch(epoch, rows)`` gets the list of the runs' history rows. Packed records get the tag
    ``pack_size``.

    Raises:
        ValueError: the specs are not compatible (see :func:`pack_key`) or their training sets
            differ in size or input shape.
    """
    store = store or ResultStore()
    home = Path(home) if home else default_home()
    common = dict(store=store, data_root=data_root, device=device, home=home, mirror=mirror, progress=progress,
                  keep_model=keep_model)
    tag_of = {s.run_id: dict((tags[i] if isinstance(tags, list) else tags) or {}) for i, s in enumerate(specs)}
    todo = [s for s in specs if not store.has(s.run_id)]
    if len(todo) <= 1 or not all(packable(s) for s in todo):
        results = {s.run_id: run(s, tags=tag_of[s.run_id], **common) for s in specs}
        return [results[s.run_id] for s in specs]
    if len({pack_key(s) for s in todo}) > 1:
        raise ValueError("run_pack: these specs differ in more than seed, dataset parameters and label noise; "
                         "group them with benchmark.pack.group_specs")
    if not all(_finished(s, home) for s in todo):  # else an earlier call trained the pack and stopped before the records
        _train_pack(todo, home=home, data_root=data_root, dev=pick_device(device), progress=progress,
                    on_epoch=on_epoch)
    done = {s.run_id: run(s, tags={**tag_of[s.run_id], "pack_size": len(todo)}, **common)
            for s in todo}  # each finishes from its last-epoch checkpoint
    return [done[s.run_id] if s.run_id in done else RunResult(store.get(s.run_id), cached=True) for s in specs]


def _finished(spec: RunSpec, home: Path) -> bool:
    """Whether the run has a checkpoint at its last epoch (the pack's hand-over to engine.run)."""
    path = checkpoint_path(spec, home)
    return path.is_file() and torch.load(path, map_location="cpu", weights_only=False).get("epoch") == spec.epochs


class _Member:
    """One run of a pack: its spec, data, own method object (for evaluation) and RNG state."""

    def __init__(self, spec: RunSpec, dataset, loaders: dict[str, Loader], method: Method, rng: torch.Tensor,
                 cuda_rng: torch.Tensor | None):
        self.spec, self.dataset, self.loaders, self.method = spec, dataset, loaders, method
        self.rng, self.cuda_rng = rng, cuda_rng
        self.history: list[dict[str, Any]] = []
        self.prepare: dict = {}


def _train_pack(specs: list[RunSpec], *, home: Path, data_root, dev: torch.device, progress: bool,
                on_epoch) -> None:
    """Train the pack to its last epoch and leave each run an ordinary checkpoint at that epoch."""
    t0 = time.time()
    k = len(specs)
    data: dict[str, tuple] = {}  # runs with the same data share one set of loaders (one gather per step)
    members: list[_Member] = []
    for spec in specs:
        key = json.dumps([spec.dataset, spec.dataset_params, spec.max_train, spec.max_eval, spec.label_noise],
                         sort_keys=True)
        if key not in data:
            data[key] = build_loaders(spec, dev, data_root, home)
        dataset, loaders = data[key]
        torch.manual_seed(spec.seed)  # exactly as engine.run: the same initial weights
        method = build_method(spec, dataset.info)
        if spec.pretrained and spec.pretrained.startswith(RUN_PREFIX):
            init_from_run(method, spec.pretrained, home)
        method = method.to(dev)
        members.append(_Member(spec, dataset, loaders, method, torch.get_rng_state(),
                               torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None))
    n = len(members[0].loaders["train"])
    shapes = {(len(m.loaders["train"]), tuple(m.loaders["train"].split.x.shape[1:])) for m in members}
    if len(shapes) > 1:
        raise ValueError(f"run_pack: the runs' training sets differ in size or shape {sorted(shapes)}; "
                         f"pack only runs with equal training sets")

    ckpt = pack_checkpoint_path(specs, home)
    state = torch.load(ckpt, map_location=dev, weights_only=False) if ckpt.exists() else None
    data = PackedData([m.loaders["train"] for m in members], [_rng(m, dev) for m in members])
    if state is None:
        _prepare(members, data, dev)
    pack = fast_path(_assemble(members, dev, data.streams), {str(j): m.loaders["train"] for j, m in enumerate(members)},
                     dev)
    start_epoch, elapsed_before = 0, 0.0
    if state is not None:
        pack.load_training_state(state["pack"])
        for m, rng, cuda_rng, hist, prep in zip(members, state["rng"], state["cuda_rng"], state["history"],
                                                state["prepare"]):
            m.rng, m.cuda_rng, m.history, m.prepare = rng, cuda_rng, hist, prep
        start_epoch, elapsed_before = state["epoch"], state["elapsed"]
        _unpack(pack, members)  # the runs' own objects draw the epochs' orders (sample_indices)

    def save(epoch: int) -> None:
        atomic_torch_save({"pack": pack.training_state(), "rng": [m.rng for m in members],
                           "cuda_rng": [m.cuda_rng for m in members], "history": [m.history for m in members],
                           "prepare": [m.prepare for m in members], "epoch": epoch,
                           "elapsed": elapsed_before + time.time() - t0, "specs": [s.to_dict() for s in specs]}, ckpt)

    if state is None:
        save(0)
    spec0 = specs[0]
    batch_size = int(spec0.hparams["batch_size"])
    info = members[0].dataset.info
    bar = tqdm(total=spec0.epochs, initial=start_epoch, desc=f"pack of {k} {spec0.method}/{spec0.dataset}",
               unit="ep", disable=not progress, dynamic_ncols=True, leave=False)
    for epoch in range(start_epoch, spec0.epochs):
        pack.train()
        orders = []
        for m in members:
            gen = epoch_generator(m.spec.seed, epoch)
            order = m.method.sample_indices(n, gen)
            orders.append((torch.randperm(n, generator=gen) if order is None else order).to(dev))
        sums: dict[str, torch.Tensor] = {}
        steps = 0
        te = time.time()
        for i in range(0, n, batch_size):
            with autocast(spec0, dev):
                logs = pack.update(data.batch([o[i:i + batch_size] for o in orders], augment=True))
            for key, v in logs.items():
                v = v.detach() if torch.is_tensor(v) else torch.tensor(float(v))
                sums[key] = sums.get(key, 0) + v.reshape(-1)
            steps += 1
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        train_time = time.time() - te
        extra = pack.end_epoch(epoch + 1) or {}
        _unpack(pack, members)
        rows = []
        for j, m in enumerate(members):
            row: dict[str, Any] = {"epoch": epoch + 1, "train_time_s": round(train_time, 3),
                                   "images_per_s": round(n / max(train_time, 1e-9), 1)}
            row.update({f"train.{key}": float(v[j] if v.numel() == k else v[0]) / max(steps, 1)
                        for key, v in sums.items()})
            row.update({f"train.{key}": v for key, v in extra.items()})
            if m.spec.evaluates(epoch + 1):
                row.update(evaluate_splits(m.method, m.loaders, info, m.spec.precision))
            m.history.append(row)
            rows.append(row)
        save(epoch + 1)
        bar.update(1)
        if on_epoch is not None:
            on_epoch(epoch + 1, rows)
    bar.close()

    _unpack(pack, members)
    elapsed = elapsed_before + time.time() - t0
    for m in members:  # engine.run resumes each from here: no epoch left, it writes the record
        atomic_torch_save({"method": m.method.training_state(), "rng": m.rng, "cuda_rng": m.cuda_rng,
                           "history": m.history, "epoch": m.spec.epochs, "prepare": m.prepare,
                           "elapsed": elapsed / k, "spec": m.spec.to_dict()}, checkpoint_path(m.spec, home))
    ckpt.unlink(missing_ok=True)


class _rng:
    """Swap member ``m``'s RNG stream in (CPU, and CUDA on a GPU) for the block, then store it back."""

    def __init__(self, m: _Member, dev: torch.device):
        self.m, self.dev = m, dev

    def __enter__(self):
        self.saved = torch.get_rng_state()
        torch.set_rng_state(self.m.rng)
        if self.dev.type == "cuda" and self.m.cuda_rng is not None:
            self.saved_cuda = torch.cuda.get_rng_state(self.dev)
            torch.cuda.set_rng_state(self.m.cuda_rng, self.dev)

    def __exit__(self, *exc):
        self.m.rng = torch.get_rng_state()
        torch.set_rng_state(self.saved)
        if self.dev.type == "cuda" and self.m.cuda_rng is not None:
            self.m.cuda_rng = torch.cuda.get_rng_state(self.dev)
            torch.cuda.set_rng_state(self.saved_cuda, self.dev)


def _prepare(members: list[_Member], data: PackedData, dev: torch.device) -> None:
    """Each run's preparation stage: once for the pack where the method packs it
    (:meth:`Method.prepare_pack`, on the stacked networks; each run keeps its slice), else one run
    after another, each in its own RNG stream."""
    method = members[0].method
    if type(method).prepare_pack is Method.prepare_pack:
        for m, stream in zip(members, data.streams):
            with stream:
                m.method.train()
                m.prepare = m.method.prepare(m.loaders["train"]) or {}
        return
    pack = _assemble(members, dev, data.streams)
    pack.train()
    metrics = pack.prepare_pack(data)
    if len(metrics) != len(members):
        raise ValueError(f"{type(method).__name__}.prepare_pack returned {len(metrics)} metric dicts for "
                         f"{len(members)} runs")
    _unpack(pack, members)
    for m, prep in zip(members, metrics):
        m.prepare = prep or {}


def stack_methods(methods: list[Method], template: Method, rng_streams: list | None = None) -> Method:
    """``template`` made into a pack of ``methods``: its child modules become :class:`PackedModule`
    stacks of the methods' children (drawing run j's dropout masks in ``rng_streams[j]``), its
    optimisers step the stacked parameters (their state must still be empty), its per-sample tables
    (persistent buffers) hold the methods' tables one after another, and its ``pack_size`` is
    ``len(methods)``. ``template`` is a fresh instance of the same method with the same
    hyperparameters (its own initial values are discarded)."""
    if template._parameters:
        raise ValueError(f"{type(template).__name__}: parameters outside child modules cannot be packed")
    swap: dict[int, torch.nn.Parameter] = {}
    for name, child in list(template.named_children()):
        packed = PackedModule([getattr(m, name) for m in methods], rng_streams)
        stacked = dict(packed.named_parameters())
        for pname, p in child.named_parameters():
            swap[id(p)] = stacked[pname.replace(".", "/")]
        setattr(template, name, packed)
    for opt in template.optimizers.values():
        if opt.state:
            raise ValueError("stack_methods: the template's optimisers have already stepped")
        for group in opt.param_groups:
            group["params"] = [swap[id(p)] for p in group["params"]]
    for name in list(template._buffers):
        if _stacked_buffer(template, name):
            template._buffers[name] = torch.cat([m._buffers[name] for m in methods])
    template.pack_size = len(methods)
    return template


def _assemble(members: list[_Member], dev: torch.device, rng_streams: list) -> Method:
    """One method object whose networks are the members' networks stacked, with fresh stacked optimisers."""
    template = build_method(members[0].spec, members[0].dataset.info)
    return stack_methods([m.method for m in members], template, rng_streams).to(dev)


def _unpack(pack: Method, members: list[_Member]) -> None:
    """Copy each run's slice of the pack into its own method object."""
    k = len(members)
    children = [(name, child) for name, child in pack.named_children() if isinstance(child, PackedModule)]
    for j, m in enumerate(members):
        state = {}
        for name, child in children:
            state.update({f"{name}.{key}": v for key, v in child.member_state(j).items()})
        for name, buf in pack._buffers.items():
            if _stacked_buffer(pack, name):
                state[name] = buf.chunk(k)[j] if buf.numel() else buf
        m.method.load_state_dict(state)


def _stacked_buffer(method: Method, name: str) -> bool:
    """Whether the method's own buffer ``name`` holds one block per run (persistent, at least 1-D);
    other buffers (constants such as Gray's channel weights) are shared."""
    buf = method._buffers[name]
    return name not in method._non_persistent_buffers_set and buf is not None and buf.dim() > 0
