"""Report specs: one TOML file per paper artefact (data, not code).

``report`` reads the built-in ``reports/specs/``, the spec folder of every plug-in that declares one
in the entry-point group ``benchmark.report_specs`` (:func:`plugin_spec_dirs`) and each
``--specs-dir``; a spec's name is its file stem and must be unique across all of them.

A spec names the runs an artefact needs and how to lay them out. Keys (unknown keys are errors,
so a typo cannot silently empty a table):

```toml
title = "PGD Table 1: ..."          # heading in the report
paper = "pgd"                       # results/papers/<paper>
artefact = "table1"                 # results/papers/<paper>/<artefact>.csv; omit when the paper
                                    # prints no numbers (e.g. LNL Figure 4)
kind = "table"                      # "table" or "figure"
figure = "curve"                    # figures only: see benchmark.reporting.figures.FIGURES
suite = "pgd.table1"                # runs tagged record["tags"]["suite"] (a string or a list)
selection = "biased_val"            # the paper's protocol (benchmark.selection); --selection overrides
scale = 100                         # ours (fractions) × scale = the paper's units (100 for percent)
digits = 2                          # decimals shown
higher_is_better = true             # which end is bold
notes = ["..."]                     # printed under the table

[filters]                           # every run must match (columns of ResultStore.query())
dataset = "colored_mnist_ratio"

[[rows]]                            # one per method row
method = "pgd"                      # our registered method name
paper = "Ours"                      # the paper's row name in the reference CSV
label = "Ours"                      # optional display name (default: the paper's)
filters = { "hp.denoise" = true }   # optional extra filters for this row

[[columns]]                         # one per setting column
paper = "Colored MNIST/bias ratio 99.5%/Minor"   # the paper's column name in the reference CSV
label = "99.5% Minor"               # header shown (default: the paper's)
panel = "Colored MNIST"             # columns sharing a panel form one sub-table
metric = "test.conflicting_acc"     # see benchmark.reporting.runs.metric_value
filters = { "p.bias_ratio" = 0.995 }
wrapped_by = "denoise"              # optional: read runs of this wrapper method whose hparam
                                    # `inner` is the row's method (e.g. PGD's de-noising module)

[figure_options]                    # figures only, passed to the figure function
x = "p.sigma2"
```

Filter values: a scalar (numbers compare with a relative tolerance of 1e-9), a list (any of), or
the string ``"<unset>"`` which matches runs where the column is absent or empty.
"""
from __future__ import annotations

import importlib.util
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from importlib import metadata
from typing import Any

from ..selection import STRATEGIES

#: Default folder of the checked-in specs: ``<repo>/reports/specs``.
DEFAULT_SPEC_DIR = Path(__file__).resolve().parents[2] / "reports" / "specs"
#: Entry-point group through which plug-ins ship report specs (value: a package folder of ``*.toml``).
SPECS_GROUP = "benchmark.report_specs"

UNSET = "<unset>"
KINDS = ("table", "figure")
_TOP_KEYS = {"title", "paper", "artefact", "kind", "figure", "suite", "selection", "scale", "digits",
             "higher_is_better", "notes", "filters", "rows", "columns", "figure_options", "metric"}
_ROW_KEYS = {"method", "paper", "label", "filters"}
_COL_KEYS = {"paper", "label", "panel", "metric", "filters", "wrapped_by"}


class SpecError(ValueError):
    """A report spec is malformed; the message names the file and the key."""


@dataclass(frozen=True)
class RowSpec:
    """One method row: our method name ↔ the paper's row name."""

    method: str
    paper: str | None
    label: str
    filters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ColumnSpec:
    """One setting column: run filters + metric ↔ the paper's column name."""

    paper: str | None
    label: str
    panel: str
    metric: str
    filters: dict[str, Any] = field(default_factory=dict)
    wrapped_by: str | None = None


@dataclass(frozen=True)
class ReportSpec:
    """A parsed spec (see the module docstring for the keys)."""

    name: str
    title: str
    paper: str
    kind: str
    artefact: str | None = None
    figure: str | None = None
    suite: tuple[str, ...] = ()
    selection: str = "last"
    scale: float = 1.0
    digits: int = 2
    higher_is_better: bool = True
    notes: tuple[str, ...] = ()
    filters: dict[str, Any] = field(default_factory=dict)
    rows: tuple[RowSpec, ...] = ()
    columns: tuple[ColumnSpec, ...] = ()
    figure_options: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def panels(self) -> list[str]:
        """Panel names in first-appearance order."""
        return list(dict.fromkeys(c.panel for c in self.columns))


def _check_keys(d: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def parse_spec(data: dict[str, Any], name: str, path: Path | None = None) -> ReportSpec:
    """Build a :class:`ReportSpec` from parsed TOML, checking every key."""
    where = str(path or name)
    _check_keys(data, _TOP_KEYS, where)
    for key in ("title", "paper", "kind"):
        if key not in data:
            raise SpecError(f"{where}: missing required key {key!r}")
    kind = data["kind"]
    if kind not in KINDS:
        raise SpecError(f"{where}: kind={kind!r}; expected one of {KINDS}")
    selection = data.get("selection", "last")
    if selection not in STRATEGIES:
        raise SpecError(f"{where}: selection={selection!r}; known: {list(STRATEGIES)}")
    default_metric = data.get("metric", "test.acc")
    rows = []
    for i, r in enumerate(data.get("rows", [])):
        _check_keys(r, _ROW_KEYS, f"{where} rows[{i}]")
        if "method" not in r:
            raise SpecError(f"{where} rows[{i}]: missing 'method'")
        paper = r.get("paper")
        rows.append(RowSpec(r["method"], paper, r.get("label") or paper or r["method"], dict(r.get("filters", {}))))
    cols = []
    for i, c in enumerate(data.get("columns", [])):
        _check_keys(c, _COL_KEYS, f"{where} columns[{i}]")
        paper = c.get("paper")
        label = c.get("label") or paper
        if not label:
            raise SpecError(f"{where} columns[{i}]: needs 'label' or 'paper'")
        cols.append(ColumnSpec(paper, label, c.get("panel", ""), c.get("metric", default_metric),
                               dict(c.get("filters", {})), c.get("wrapped_by")))
    if kind == "table" and (not rows or not cols):
        raise SpecError(f"{where}: a table needs [[rows]] and [[columns]]")
    if kind == "figure" and not data.get("figure"):
        raise SpecError(f"{where}: a figure needs figure = \"<kind>\"")
    suite = data.get("suite", ())
    suite = (suite,) if isinstance(suite, str) else tuple(suite)
    notes = data.get("notes", ())
    notes = (notes,) if isinstance(notes, str) else tuple(notes)
    return ReportSpec(
        name=name, title=data["title"], paper=data["paper"], kind=kind, artefact=data.get("artefact"),
        figure=data.get("figure"), suite=suite, selection=selection, scale=float(data.get("scale", 1.0)),
        digits=int(data.get("digits", 2)), higher_is_better=bool(data.get("higher_is_better", True)),
        notes=notes, filters=dict(data.get("filters", {})), rows=tuple(rows), columns=tuple(cols),
        figure_options=dict(data.get("figure_options", {})), path=path,
    )


def load_spec(path: str | Path) -> ReportSpec:
    """Read one ``<name>.toml``; the spec's name is the file stem (e.g. ``pgd.table1``)."""
    path = Path(path)
    with open(path, "rb") as fh:
        try:
            data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as e:
            raise SpecError(f"{path}: {e}") from None
    return parse_spec(data, path.stem, path)


def load_specs(spec_dirs: Iterable[str | Path] | str | Path = (), names: list[str] | None = None, *,
               defaults: bool | None = None) -> list[ReportSpec]:
    """Every spec of the given folders, sorted by name.

    Args:
        spec_dirs: extra folders of ``*.toml`` specs (``report --specs-dir``, repeatable), or one folder.
        names: keep only these specs; an unknown name raises, listing the known ones.
        defaults: also read the built-in folder ``reports/specs`` and the folder of every plug-in
            declared in the entry-point group ``benchmark.report_specs`` (see :func:`plugin_spec_dirs`);
            None (the default): only when ``spec_dirs`` is empty. ``report`` passes True unless
            ``--no-default-specs``.

    Raises:
        SpecError: a malformed spec, a missing folder, or two specs of one name (the message names
            both files and where each came from).
    """
    spec_dirs = [] if spec_dirs is None else [spec_dirs] if isinstance(spec_dirs, (str, Path)) else list(spec_dirs)
    if defaults is None:
        defaults = not spec_dirs
    sources: list[tuple[Path, str]] = []
    if defaults:
        sources.append((DEFAULT_SPEC_DIR, "built-in reports/specs"))
        sources.extend(plugin_spec_dirs())
    for d in spec_dirs:
        if not Path(d).is_dir():
            raise SpecError(f"--specs-dir {d}: no such folder")
        sources.append((Path(d), f"--specs-dir {d}"))
    found: dict[str, tuple[ReportSpec, str]] = {}
    for folder, origin in sources:
        for path in sorted(folder.glob("*.toml")):
            spec = load_spec(path)
            if spec.name in found:
                first, first_origin = found[spec.name]
                if first.path is not None and first.path.resolve() == path.resolve():
                    continue  # the same folder named twice
                raise SpecError(f"report spec {spec.name!r} is defined twice: {first.path} ({first_origin}) and "
                                f"{path} ({origin}); rename one file (a spec's name is its file name)")
            found[spec.name] = (spec, origin)
    specs = [found[n][0] for n in sorted(found)]
    if names:
        missing = [n for n in names if n not in found]
        if missing:
            raise SpecError(f"unknown report spec(s) {missing}; known: {sorted(found)}")
        specs = [found[n][0] for n in names]
    return specs


def plugin_spec_dirs() -> list[tuple[Path, str]]:
    """The spec folders plug-ins declare, located without importing (running) any plug-in code.

    A plug-in ships report specs by declaring a package folder of ``*.toml`` files::

        [project.entry-points."benchmark.report_specs"]
        my_plugin = "my_plugin.specs"        # the folder my_plugin/specs/

    Returns:
        ``(folder, origin)`` pairs, ``origin`` naming the distribution and the entry point.

    Raises:
        SpecError: an entry point whose folder does not exist, naming the fix.
    """
    out = []
    for ep in sorted(metadata.entry_points(group=SPECS_GROUP), key=lambda e: e.name):
        dist = getattr(ep.dist, "name", None) or "?"
        origin = f"plug-in {dist}, entry point {SPECS_GROUP} {ep.name!r} = {ep.value!r}"
        folder = _package_folder(ep.value)
        if folder is None:
            raise SpecError(f"{origin}: no package folder {ep.value!r} found; its value must name a package folder "
                            "of *.toml report specs (e.g. \"my_plugin.specs\"); fix or uninstall that plug-in")
        out.append((folder, origin))
    return out


def _package_folder(dotted: str) -> Path | None:
    """The folder of package ``dotted`` (``a.b.c`` → ``<a's folder>/b/c``), found without importing it."""
    top, *rest = dotted.strip().split(".")
    try:
        found = importlib.util.find_spec(top) if top.isidentifier() else None
    except (ImportError, ValueError):
        found = None
    for root in (found.submodule_search_locations or []) if found else []:
        folder = Path(root).joinpath(*rest)
        if folder.is_dir():
            return folder
    return None
