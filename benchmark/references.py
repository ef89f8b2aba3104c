"""Reference numbers transcribed from the papers, with reproduction tolerances.

The transcriptions live under ``results/papers/<paper_id>/``: one CSV per table of a
paper (``<artefact>.csv``), a ``meta.json`` with the paper's citation, units and
recommended tolerances, and a ``README.md`` describing transcription doubts.

Every CSV has the columns ``paper, artefact, row, column, value, std, metric,
selection, page, note``. :func:`load_references` concatenates all of them and adds:

* ``units``: the artefact's ``units`` from ``meta.json``, else the paper's ``units``
  (``"percent"``, ``"fraction"``, or for a few non-accuracy artefacts ``"score"``,
  ``"seconds"`` or ``"count"``).
* ``reproduction_target``: ``False`` for artefacts that ``meta.json`` marks as not
  meant to be matched (e.g. wall-clock training times), else ``True``.
* ``tolerance``: the artefact's ``tolerance`` from ``meta.json`` when it is a number,
  else the paper's ``default_tolerance``; ``NaN`` for artefacts that are not
  reproduction targets and have no tolerance of their own.
* ``effective_tolerance``: ``max(tolerance, 2 * std)`` where the paper prints a
  standard deviation, else ``tolerance``.

Only the standard library and pandas are used, so this module can be imported
without the rest of the package.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

#: Columns every reference CSV must have, in this order.
CSV_COLUMNS = [
    "paper",
    "artefact",
    "row",
    "column",
    "value",
    "std",
    "metric",
    "selection",
    "page",
    "note",
]

#: Columns added by :func:`load_references`.
DERIVED_COLUMNS = ["units", "reproduction_target", "tolerance", "effective_tolerance"]

#: Default location of the transcriptions: ``<repo>/results/papers``.
DEFAULT_ROOT = Path(__file__).resolve().parents[1] / "results" / "papers"

_TEXT_COLUMNS = ["paper", "artefact", "row", "column", "metric", "selection", "page", "note"]


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def load_meta(paper_dir: Path) -> dict:
    """Read the ``meta.json`` of one paper directory.

    Args:
        paper_dir: A directory ``results/papers/<paper_id>``.

    Returns:
        The parsed JSON object, or an empty dict when the file is missing.
    """
    path = Path(paper_dir) / "meta.json"
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _read_csv(path: Path) -> pd.DataFrame:
    df = pd.read_csv(
        path,
        dtype={c: "string" for c in _TEXT_COLUMNS},
        keep_default_na=False,
        na_values={"value": [""], "std": [""]},
        encoding="utf-8",
    )
    missing = [c for c in CSV_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    df = df[CSV_COLUMNS].copy()
    df["value"] = pd.to_numeric(df["value"], errors="raise").astype(float)
    df["std"] = pd.to_numeric(df["std"], errors="raise").astype(float)
    for c in _TEXT_COLUMNS:
        df[c] = df[c].astype(str)
    return df


def load_references(root: Path | None = None) -> pd.DataFrame:
    """Load every transcribed paper table into one data frame.

    Args:
        root: Directory holding one sub-directory per paper (``<paper_id>/*.csv`` plus
            ``meta.json``). Defaults to the repository's ``results/papers``, located
            relative to this file.

    Returns:
        A data frame with the CSV columns (``paper, artefact, row, column, value, std,
        metric, selection, page, note``) followed by ``units``,
        ``reproduction_target``, ``tolerance`` and ``effective_tolerance`` (see the
        module docstring). ``std`` is ``NaN`` where the paper prints no standard
        deviation. Rows keep file order; files are read in sorted path order.

    Raises:
        FileNotFoundError: If ``root`` does not exist or holds no CSV file.
        ValueError: If a CSV lacks a required column or has a non-numeric value.
    """
    root = Path(root) if root is not None else DEFAULT_ROOT
    if not root.is_dir():
        raise FileNotFoundError(f"reference directory not found: {root}")
    frames = []
    for csv_path in sorted(root.glob("*/*.csv")):
        df = _read_csv(csv_path)
        meta = load_meta(csv_path.parent)
        art_meta = meta.get("artefacts", {}).get(csv_path.stem, {})
        units = art_meta.get("units") or meta.get("units") or ""
        target = bool(art_meta.get("reproduction_target", True))
        tol = art_meta.get("tolerance")
        if not _is_number(tol):
            default = meta.get("default_tolerance")
            tol = default if (target and _is_number(default)) else float("nan")
        df["units"] = units
        df["reproduction_target"] = target
        df["tolerance"] = float(tol)
        frames.append(df)
    if not frames:
        raise FileNotFoundError(f"no reference CSV under {root}")
    out = pd.concat(frames, ignore_index=True)
    two_std = 2.0 * out["std"]
    out["effective_tolerance"] = out["tolerance"].where(
        two_std.isna() | (out["tolerance"] >= two_std), two_std
    )
    out.loc[out["tolerance"].isna(), "effective_tolerance"] = float("nan")
    return out


def reference_value(df: pd.DataFrame, paper: str, artefact: str, row: str, column: str) -> float:
    """Look up one transcribed number.

    Args:
        df: A frame returned by :func:`load_references`.
        paper: Paper id, e.g. ``"lnl"``.
        artefact: Table id within the paper, e.g. ``"table1"``.
        row: Method name as stored, e.g. ``"Ours"``.
        column: Setting as stored, e.g. ``"TB1→test"``.

    Returns:
        The value in the paper's own units.

    Raises:
        KeyError: If no row matches, or more than one does.
    """
    hit = df[
        (df["paper"] == paper)
        & (df["artefact"] == artefact)
        & (df["row"] == row)
        & (df["column"] == column)
    ]
    if len(hit) != 1:
        raise KeyError(
            f"{len(hit)} reference rows for paper={paper!r} artefact={artefact!r} "
            f"row={row!r} column={column!r}"
        )
    return float(hit["value"].iloc[0])
