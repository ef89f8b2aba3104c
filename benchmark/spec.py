"""Run specifications: everything that determines a run, frozen, hashed to the run id."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from .hparams import from_dict, to_dict

SPEC_SCHEMA = 1
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class RunSpec:
    """A run: method + dataset + protocol parameters + hyperparameters + seed + budget.

    Every field is fully resolved (defaults written out), so a changed default gives a new id.

    Attributes:
        method, dataset: registered names.
        dataset_params: the dataset family's ``Params`` as a dict.
        hparams: the method's ``HParams`` as a dict.
        seed: training seed (initialisation, batch order, dropout).
        epochs: training epochs.
        max_train: train on this many samples (a fixed random subset) instead of all; None = all.
        backbone: backbone name, or None for the dataset's default.
        label_noise: fraction of training labels flipped to a wrong class (PGD App. B.3).
        max_eval: evaluate on a fixed random subset of this many samples per split (smoke tests);
            None = the whole split, as every reported number must be.
        pretrained: backbone weights to start from: "imagenet" or a file path (see
            ``benchmark.nets_resnet``), or "run:RUN_ID", the final backbone of a stored run (see
            ``benchmark.engine.init_from_run``); None = random initialisation. Left out of the canonical
            JSON when None, so run ids of specs without it are unchanged.
        precision: "fp32" (default) or "bf16" (bfloat16 autocast of training and evaluation on a
            GPU; it changes the numbers, so it is part of the run id). Left out of the canonical
            JSON when "fp32", so run ids of existing specs are unchanged.
        eval_every: evaluate the non-train splits after every ``eval_every``-th epoch and after the
            last (see :meth:`evaluates`); the other epochs' history rows hold training metrics only,
            so only the ``last`` selection rule can read such a run. 1 (every epoch) is the default
            and is left out of the canonical JSON, so run ids of existing specs are unchanged.
    """

    method: str
    dataset: str
    dataset_params: dict[str, Any] = field(default_factory=dict)
    hparams: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    epochs: int = 1
    max_train: int | None = None
    backbone: str | None = None
    label_noise: float = 0.0
    max_eval: int | None = None
    pretrained: str | None = None
    precision: str = "fp32"
    eval_every: int = 1

    def evaluates(self, epoch: int) -> bool:
        """Whether the 1-based ``epoch`` ends with an evaluation of the non-train splits."""
        return epoch % self.eval_every == 0 or epoch == self.epochs

    def to_dict(self) -> dict[str, Any]:
        d = {"schema": SPEC_SCHEMA, **dataclasses.asdict(self)}
        if d["pretrained"] is None:
            del d["pretrained"]
        if d["precision"] == "fp32":
            del d["precision"]
        if d["eval_every"] == 1:
            del d["eval_every"]
        return d

    def canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def run_id(self) -> str:
        """First 16 hex digits of SHA-256 of the canonical JSON."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunSpec":
        d = {k: v for k, v in d.items() if k != "schema"}
        return cls(**d)


def make_spec(method: str, dataset: str, *, dataset_params: dict | None = None, hparams: dict | None = None,
              seed: int = 0, epochs: int | None = None, max_train: int | None = None,
              backbone: str | None = None, label_noise: float = 0.0, max_eval: int | None = None,
              pretrained: str | None = None, precision: str = "fp32", eval_every: int = 1) -> RunSpec:
    """Resolve names and overrides into a complete :class:`RunSpec`.

    ``dataset_params`` and ``hparams`` hold overrides only (strings from the CLI are converted);
    unknown names raise with the list of known ones. ``epochs=None`` uses the method's default.
    """
    from .registry import DATASETS, METHODS

    method_cls = METHODS.get(method)
    family = DATASETS.get(dataset)
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if epochs is not None and epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    for name, value in (("max_train", max_train), ("max_eval", max_eval), ("eval_every", eval_every)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: choose from {PRECISIONS}")
    if not 0.0 <= label_noise < 1.0:
        raise ValueError(f"label_noise={label_noise} must be in [0, 1)")
    hp = from_dict(method_cls.HParams, hparams)
    if epochs is None and not isinstance(getattr(hp, "epochs", None), int):
        raise ValueError(f"method {method!r} declares no epochs hyperparameter: pass the budget (--epochs N)")
    return RunSpec(
        method=method, dataset=dataset,
        dataset_params=to_dict(from_dict(family.Params, dataset_params)),
        hparams=to_dict(hp), seed=int(seed),
        epochs=int(epochs if epochs is not None else hp.epochs),
        max_train=max_train, backbone=backbone, label_noise=float(label_noise), max_eval=max_eval,
        pretrained=pretrained or None, precision=precision,
        eval_every=int(eval_every),
    )
