"""Experiment suites: one paper artefact (a table or a figure) as a grid of runs.

A suite is data: the methods it compares, the settings (dataset + protocol parameters, label
noise, per-setting hyperparameters) it sweeps, the paper's shared training recipe
(:mod:`benchmark.recipes`) that every row runs with — except the rows the suite lists in
``exceptions``, each with the paper's reason — and its budget profiles — ``paper`` (the
publication's epochs and hyperparameters) and ``quick`` (a CPU-sized smoke version whose records
are tagged ``profile=quick`` and whose specs differ from the paper's, so the two never mix) — and,
for a few suites, ``demo`` (a few CPU minutes on one cell, long enough to show the paper's effect:
the README's main job; tagged ``profile=demo``, never a paper number). The report spec that renders
the artefact carries the suite's name.

Adding a suite is adding one file, registered like methods and datasets::

    @register_suite("lnl.figure4")
    class LNLFigure4(Suite):
        title = "LNL Figure 4: ..."
        methods = ("vanilla", "gray", "blind_eye", "lnl")
        settings = tuple(Setting("colored_mnist", {"sigma2": s}) for s in SIGMA2_GRID)
        profiles = {"paper": Profile(seeds=(0, 1, 2), source="..."),
                    "quick": dataclasses.replace(QUICK, keep={"sigma2": (0.02, 0.05)})}

and one line under ``[project.entry-points."benchmark.suites"]`` in pyproject.toml (the built-in
suites are found through the same entry points as third-party ones).
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator, Mapping

from .._registry import Registry
from ..recipes import Recipe

PROFILES = ("paper", "quick", "demo")


@dataclass(frozen=True)
class Setting:
    """One column of the artefact: a dataset with its protocol parameters.

    Attributes:
        dataset: registered dataset name.
        params: overrides of the dataset family's ``Params`` (the rest keep their defaults).
        label_noise: fraction of training labels flipped (PGD Appendix B.3).
        hparams: hyperparameter overrides for every method in this setting, e.g.
            ``{"pgd": {"denoise": True}}``; ``"*"`` applies to every method that has the field.
        label: a short name for dry-run listings (default: the parameters).
        backbone: a backbone other than the recipe's / dataset's default (None: the recipe's, else
            the dataset's).
        pretrained: backbone weights to start from ("imagenet" or a file; see ``RunSpec``); None:
            the recipe's.
        recipe: this setting's training recipe when it differs from the suite's (e.g. one Table 4
            column per dataset).
    """

    dataset: str
    params: Mapping[str, Any] = field(default_factory=dict)
    label_noise: float = 0.0
    hparams: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    label: str = ""
    backbone: str | None = None
    pretrained: str | None = None
    recipe: Recipe | None = None

    def describe(self) -> str:
        if self.label:
            return self.label
        parts = [f"{k}={v}" for k, v in self.params.items()]
        if self.label_noise:
            parts.append(f"noise={self.label_noise}")
        return f"{self.dataset}({', '.join(parts)})"

    def value(self, key: str):
        """The value of a parameter for :attr:`Profile.keep` (``label_noise`` included)."""
        if key == "label_noise":
            return self.label_noise
        if key == "dataset":
            return self.dataset
        return self.params.get(key)


@dataclass(frozen=True)
class Profile:
    """A budget for a suite.

    Attributes:
        seeds: training seeds; one run per (method, setting, seed).
        epochs: training epochs; None = each method's published default (its ``HParams.epochs``).
        max_train: train on a fixed subset of this many samples (None = all, as the papers did).
        max_eval: evaluate on a fixed subset of this many samples per split (None = all; every
            reported number must use None).
        tiny: apply each method's ``tiny_hparams`` (short preparation stages) — smoke runs only.
        methods: restrict to these methods (None = all of the suite's).
        keep: restrict settings to those whose parameter values are listed, e.g.
            ``{"sigma2": (0.02, 0.05)}`` (keys: dataset parameters, ``label_noise``, ``dataset``).
        hparams: hyperparameter overrides per method (``"*"``: every method with the field).
        source: where the budget comes from (paper section, table), for listings.
    """

    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int | None = None
    max_train: int | None = None
    max_eval: int | None = None
    tiny: bool = False
    methods: tuple[str, ...] | None = None
    keep: Mapping[str, tuple] = field(default_factory=dict)
    hparams: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    source: str = ""


QUICK = Profile(seeds=(0,), epochs=1, max_train=512, max_eval=500, tiny=True,
                source="ours: a CPU smoke test (1 epoch, 512 training and 500 evaluation samples); "
                       "never compare its numbers with the paper's")
"""The default quick profile: seconds per run on a CPU. Suites narrow the grid with ``keep``."""


@dataclass(frozen=True)
class Cell:
    """One run of a suite before it is resolved into a :class:`benchmark.spec.RunSpec`."""

    method: str
    setting: Setting
    seed: int
    hparams: Mapping[str, Any]
    epochs: int | None
    max_train: int | None
    max_eval: int | None
    tiny: bool = False
    profile_hparams: Mapping[str, Any] = field(default_factory=dict)
    recipe: Recipe | None = None
    starts_from: str | None = None
    eval_every: int = 1

    @property
    def backbone(self) -> str | None:
        return self.setting.backbone or (self.recipe.backbone if self.recipe else None)

    @property
    def pretrained(self) -> str | None:
        return self.setting.pretrained or (self.recipe.pretrained if self.recipe else None)

    def resolved_hparams(self, method_cls) -> tuple[dict[str, Any], list[str]]:
        """The hyperparameter overrides for ``method_cls``, in increasing precedence: the recipe's,
        the suite's (its per-row exceptions included) and the setting's, the method's
        ``tiny_hparams`` (if the profile is tiny), the profile's. ``"*"`` entries apply only where
        the method has the field; returns (overrides, names of ``"*"`` entries the method does not
        have). Every recipe field must exist on the method (a recipe is shared by every row)."""
        names = {f.name for f in dataclasses.fields(method_cls.HParams)}
        out: dict[str, Any] = {}
        ignored: list[str] = []

        def layer(table: Mapping[str, Any]) -> None:
            for k, v in table.items():
                if k.startswith("*"):
                    if k[1:] in names:
                        out[k[1:]] = v
                    elif k[1:] not in ignored:
                        ignored.append(k[1:])
                else:
                    out[k] = v

        if self.recipe is not None:
            lacking = sorted(set(self.recipe.values) - names)
            if lacking:
                raise ValueError(f"{method_cls.__name__} has no {lacking}: recipe {self.recipe.name!r} cannot apply "
                                 f"(derive its HParams from benchmark.optim.TrainHParams)")
            layer(dict(self.recipe.values))
        layer(self.hparams)
        if self.tiny:
            layer(dict(method_cls.tiny_hparams))
        layer(self.profile_hparams)
        return out, ignored


class Suite:
    """Base class of an experiment suite. Subclass, set the class attributes, register.

    Class attributes:
        title: the paper artefact it mirrors ("LNL Figure 4: accuracy vs σ² on Colored MNIST").
        paper: the citation.
        methods: method names compared (rows of the artefact).
        settings: the :class:`Setting` grid (columns of the artefact).
        recipe: the paper's shared training recipe (:mod:`benchmark.recipes`) for every row and
            setting (a setting may name its own); None: each method's own published defaults.
        hparams: method-specific hyperparameter overrides for every profile (``"*"``: every method
            that has the field); each value should name its source in a comment. Recipe fields do
            not belong here (they go in ``exceptions``).
        exceptions: rows that the paper runs with other values than the recipe:
            ``{method: {field: (value, "the paper's sentence, page")}}``.
        starts_from: rows trained from another row's finished run, ``{method: base_method}``:
            the row starts from the final backbone of the base method's run in the same setting,
            seed and profile (``pretrained = "run:<its id>"``; LNL's official two-stage recipe). The
            planner runs the base first.
        profiles: ``{"paper": Profile(...), "quick": Profile(...)}``.
        eval_every: evaluate the non-train splits every ``eval_every`` epochs and at the last
            (``RunSpec.eval_every``), in every profile. Leave it at 1 unless every report spec that
            reads the suite selects the ``last`` epoch and draws no per-epoch curve; say why in the
            suite. Changing it changes the suite's run ids.
        notes: what the suite leaves out or does differently from the paper, for listings.

    Override :meth:`cells` for grids that are not methods × settings × seeds.
    """

    name: ClassVar[str]
    title: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    methods: ClassVar[tuple[str, ...]] = ()
    settings: ClassVar[tuple[Setting, ...]] = ()
    recipe: ClassVar[Recipe | None] = None
    hparams: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    exceptions: ClassVar[Mapping[str, Mapping[str, tuple[Any, str]]]] = {}
    starts_from: ClassVar[Mapping[str, str]] = {}
    profiles: ClassVar[Mapping[str, Profile]] = {}
    eval_every: ClassVar[int] = 1
    notes: ClassVar[str] = ""

    @property
    def report(self) -> str:
        """The report spec that renders this suite (same name as the suite)."""
        return self.name

    def profile(self, name: str) -> Profile:
        try:
            return self.profiles[name]
        except KeyError:
            raise KeyError(f"suite {self.name!r} has no profile {name!r}; profiles: {sorted(self.profiles)}") from None

    def datasets(self) -> list[str]:
        """Names of the datasets the suite needs (its required data)."""
        return sorted({s.dataset for s in self.settings})

    def cells(self, profile: str) -> Iterator[Cell]:
        """Every run of ``profile``, in the artefact's order: methods × settings × seeds."""
        prof = self.profile(profile)
        methods = [m for m in self.methods if prof.methods is None or m in prof.methods]
        settings = [s for s in self.settings
                    if all(s.value(k) in tuple(v) for k, v in prof.keep.items())]
        for method, setting, seed in itertools.product(methods, settings, prof.seeds):
            exceptions = {k: v for k, (v, _) in self.exceptions.get(method, {}).items()}
            hp = {**_for(self.hparams, method), **exceptions, **_for(setting.hparams, method)}
            yield Cell(method, setting, seed, hp, prof.epochs, prof.max_train, prof.max_eval,
                       prof.tiny, _for(prof.hparams, method), setting.recipe or self.recipe,
                       self.starts_from.get(method), self.eval_every)

    def recipes(self) -> list[Recipe]:
        """The distinct recipes of the suite's settings."""
        out: list[Recipe] = []
        for s in self.settings:
            r = s.recipe or self.recipe
            if r is not None and r not in out:
                out.append(r)
        return out

    def __repr__(self) -> str:
        return f"<suite {self.name}>"


def _for(table: Mapping[str, Mapping[str, Any]], method: str) -> dict[str, Any]:
    """Overrides for ``method``: ``"*"`` entries (marked as optional) then the method's own."""
    out = {f"*{k}": v for k, v in table.get("*", {}).items()}
    out.update(table.get(method, {}))
    return out


SUITES: Registry[Suite] = Registry("suite", "benchmark.suites", Suite)
register_suite = SUITES.register

__all__ = ["Suite", "Setting", "Profile", "Cell", "QUICK", "PROFILES", "SUITES", "register_suite", "Recipe"]
