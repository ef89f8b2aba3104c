"""The method contract, in the spirit of DomainBed's ``Algorithm``.

A method is an ``nn.Module`` built from ``(hparams, info, epochs)``. It owns its networks and
optimisers (kept in ``self.optimizers`` / ``self.schedulers`` so the engine can checkpoint
them), trains with :meth:`Method.update` on one batch at a time and predicts with
:meth:`Method.predict`. Optional hooks serve families that need more: :meth:`Method.prepare`
(a stage before the main loop, e.g. training a biased model), :meth:`Method.sample_indices`
(a custom epoch order / sampler) and :meth:`Method.end_epoch` (schedulers, extra metrics).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from .data import DatasetInfo


@dataclass
class Batch:
    """A batch on the device: normalised float inputs, labels, bias labels and extra attributes.

    Attributes:
        x: inputs, float N×C×H×W, normalised with the dataset's ``DatasetInfo.mean``/``std`` (and
            augmented during training when the dataset defines an augmentation).
        y: target labels, int64 N.
        b: bias class per sample, int64 N (``Split.b``); reading it (or ``aligned``, ``attrs``) in
            :meth:`Method.update` means the method uses bias labels: set ``uses_bias_labels``.
        aligned: True where the bias agrees with the target.
        idx: each sample's index in the training split (stable across epochs), for per-sample tables
            a method keeps (e.g. LfF's moving-average losses).
        attrs: the split's further per-sample tensors (``Split.attrs``: bias maps, second attributes,
            label-noise flags).
    """

    x: torch.Tensor
    y: torch.Tensor
    b: torch.Tensor
    aligned: torch.Tensor
    idx: torch.Tensor
    attrs: dict[str, torch.Tensor] = field(default_factory=dict)

    def bias_target(self, key: str) -> torch.Tensor:
        """The label tensor a :class:`~benchmark.data.BiasHead` with this ``key`` predicts."""
        return self.b if key == "b" else self.attrs[key]


class Method(nn.Module):
    """Base class of a de-biasing method. Subclass, set ``HParams``, implement ``update``/``predict``.

    Class attributes:
        HParams: frozen dataclass of hyperparameters (fields declared with ``benchmark.hp``); it
            must have ``batch_size``.
        uses_bias_labels: True if training reads bias labels (reports mark such methods).
        paper: the paper the method implements, for reports.
        tiny_hparams: overrides that make a run take seconds (e.g. one preparation epoch): applied by
            the registry-wide contract test (``tests/test_method_contract.py``) and by suite profiles
            marked ``tiny=True`` (CPU smoke profiles). They exist so every method can be exercised in
            seconds; never used for reported numbers.
        quick_hparams: overrides applied by ``run --quick`` only (the 2-epoch smoke budget of a single
            run): shorten whatever ``--quick`` alone would leave long (a preparation stage's own
            epochs). Explicit ``--set`` values win. Unlike ``tiny_hparams`` they aim at a run that
            still does something recognisable, not at the shortest possible one.
        packable: True if several runs of this method can train as one stacked model
            (``benchmark.pack``). A packable method keeps every learnable part in child modules
            (each is stacked across runs), reduces per-sample losses with :meth:`per_run_mean`
            and sums the result before ``backward``, and treats ``batch.idx`` as an index into
            tables sized to ``len(loader)`` in :meth:`prepare` (the pack offsets each run's
            indices). Its networks may use ``nn.Dropout`` (a pack draws each run's masks from the
            run's own RNG stream) but no other randomness in the forward pass, or packed and lone
            runs differ. Its :meth:`prepare` runs once per run before the pack is assembled, unless
            it also implements :meth:`prepare_pack`. Not inherited: a subclass may change ``update``,
            ``prepare`` or the sampling (JTT on vanilla), so it packs only when it says
            ``packable = True`` itself.

    Attributes:
        pack_size: how many runs this instance trains at once (1 unless ``benchmark.pack`` built it).
    """

    name: ClassVar[str]
    HParams: ClassVar[type]
    uses_bias_labels: ClassVar[bool] = False
    paper: ClassVar[str] = ""
    tiny_hparams: ClassVar[dict] = {}
    quick_hparams: ClassVar[dict] = {}
    packable: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "packable" not in cls.__dict__:  # see ``packable``: a subclass opts in for itself
            cls.packable = False

    def __init__(self, hparams, info: DatasetInfo, epochs: int):
        """Build networks and optimisers.

        Args:
            hparams: an instance of ``HParams`` with the run's resolved values.
            info: the dataset's shapes, class counts, bias heads and default backbone (pass it to
                :func:`benchmark.nets.build_backbone`).
            epochs: the run's number of epochs (for schedules); it may differ from ``hparams.epochs``
                (``--epochs``, suite budgets).
        """
        super().__init__()
        self.hparams = hparams
        self.info = info
        self.epochs = epochs
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}
        self.pack_size = 1

    def per_run_mean(self, per_sample: torch.Tensor) -> torch.Tensor:
        """Each run's mean of a per-sample quantity, shape ``(pack_size,)``.

        A packed batch holds ``pack_size`` equal runs of samples one after another, so
        ``per_run_mean(ce).sum()`` is the sum of the runs' own mean losses: its gradient for each
        run's parameters is that run's gradient alone. Log the vector itself; the engine gives
        each run its own entry.
        """
        return per_sample.reshape(self.pack_size, -1).mean(1)

    def update(self, batch: Batch) -> dict[str, float]:
        """One optimisation step on ``batch``; returns losses to log: scalars, or shape-``(pack_size,)``
        tensors (one entry per packed run, see :meth:`per_run_mean`)."""
        raise NotImplementedError

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits for normalised inputs ``x``."""
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The representation f(x) that bias probes read (default: the input flattened)."""
        return x.flatten(1)

    def prepare(self, loader) -> dict[str, float]:
        """Optional stage before the main loop (e.g. PGD's biased model and sampler).

        Called once per run, in train mode, after :meth:`attach_splits` and before epoch 1; a run
        resumed from a checkpoint does not call it again. So whatever it computes must be part of
        :meth:`training_state`: keep it in sub-modules or registered buffers (a buffer whose size is
        only known here, e.g. one weight per training sample, needs ``ResizableBuffers`` from
        ``methods/pgd.py`` so a checkpoint can be loaded into the empty one).

        Args:
            loader: the engine's :class:`benchmark.engine.Loader` over the training split
                (``len(loader)`` samples; ``loader.split`` holds its tensors on the device;
                ``loader.batches(order, batch_size, augment=True)`` yields :class:`Batch` objects).

        Returns:
            Metrics (name → number) stored in the record's ``prepare`` field.
        """
        return {}

    def prepare_pack(self, data) -> list[dict[str, float]]:
        """Optional, for packable methods: :meth:`prepare` of all the runs of a pack at once.

        Implement it when the preparation trains networks (PGD's biased model), so that stage is
        packed too; without it each run's :meth:`prepare` runs alone. It is called on the assembled
        pack (``self.pack_size`` = K; every child module a :class:`~benchmark.pack_module.PackedModule`
        whose ``member(j)`` is run j's network; per-sample buffers hold the K runs' tables one after
        another), in train mode, before epoch 1 and never again on resume. Each run must end exactly
        as its lone :meth:`prepare` would leave it: reduce losses with :meth:`per_run_mean`, draw
        run j's randomness (orders, augmentation) inside ``data.stream(j)`` in the order a lone run
        draws it, and leave every result in child modules or per-sample buffers (each run gets its
        slice; optimisers made here are discarded, the pack's own start fresh). One implementation
        can serve both: ``prepare(loader)`` may return
        ``self.prepare_pack(PackedData.single(loader))[0]``.

        Args:
            data: a :class:`benchmark.pack_data.PackedData`: the runs' training loaders (equal
                sizes), their RNG streams, and packed batches (``data.batch(idx_per_run, augment)``).

        Returns:
            One metrics dict per run, in run order (each run's record's ``prepare`` field).
        """
        raise NotImplementedError(f"{type(self).__name__} does not pack its preparation")

    def attach_splits(self, loaders: dict) -> None:
        """Optional: called by the engine before ``prepare`` (and again on resume) with the loaders
        of every split (``"train"``, ``"val"``, ``"test"``, ...). Methods that learn from a held-out
        split (DFR's last-layer re-training) keep the ones they need; reading the test split here
        would be test-set leakage."""

    def sample_indices(self, n: int, generator: torch.Generator) -> torch.Tensor | None:
        """Optional: the training indices of one epoch, in order (None = a uniform permutation of ``n``).

        The engine cuts the returned 1-D int64 tensor into batches of ``batch_size`` (the last one may
        be smaller) and trains on each. Its length is the epoch: it may be longer than ``n`` (JTT
        repeats its error set λ_up times, so an epoch has more steps) or shorter, and indices may
        repeat (PGD and ``rwg`` draw ``n`` indices with replacement, ∝ per-sample weights). Every
        index must be in ``[0, n)``.

        Args:
            n: the training split's size (``len(loader)`` in :meth:`prepare`).
            generator: a CPU generator seeded from (run seed, epoch); draw all randomness from it, so
                an epoch's order does not depend on earlier epochs or on a resume.
        """
        return None

    def end_epoch(self, epoch: int) -> dict[str, float]:
        """Called after each epoch: steps the schedulers; may return extra metrics."""
        for s in self.schedulers.values():
            s.step()
        return {}

    def evaluate_batch(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Class logits and :meth:`evaluate_extra`'s quantities for one evaluation batch (no grad).

        Override when both need the same features, to compute them once (LNL's bias heads read f(x));
        such a method needs no :meth:`evaluate_extra`.
        """
        return self.predict(batch.x), self.evaluate_extra(batch)

    def evaluate_extra(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Optional per-batch evaluation quantities summed over the split (e.g. bias-head accuracy).

        Returns a dict of (numerator, denominator) tensor pairs stacked as shape-(2,) tensors.
        """
        return {}

    def training_state(self) -> dict:
        """Everything a resumed run needs, saved in the epoch checkpoint (read back with
        ``torch.load(weights_only=True)``: tensors, numbers, strings, lists and dicts only).

        The default holds ``state_dict()`` (every sub-module's parameters and registered buffers)
        and the state of every optimiser in ``self.optimizers`` and scheduler in ``self.schedulers``.
        Override both this and :meth:`load_training_state` only to keep state outside them; a resumed
        run must end with the numbers of an uninterrupted one.
        """
        return {
            "model": self.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
        }

    def load_training_state(self, state: dict) -> None:
        """Restore :meth:`training_state`'s output into a freshly built method (same hparams and data)."""
        self.load_state_dict(state["model"])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        for k, s in self.schedulers.items():
            s.load_state_dict(state["schedulers"][k])


class GradReverse(torch.autograd.Function):
    """Identity forward, gradient multiplied by ``-scale`` backward (Ganin et al., 2016)."""

    @staticmethod
    def forward(ctx, x, scale: float):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """``x`` forward; its gradient times ``-scale`` backward (a gradient reversal layer)."""
    return GradReverse.apply(x, scale)
