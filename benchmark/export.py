"""The result store as one Parquet file: ``python -m benchmark export --parquet runs.parquet``.

One row per stored record with the columns of :meth:`benchmark.store.ResultStore.query`: ``run_id``,
``method``, ``dataset``, ``seed``, ``epochs``, ``max_train``, dataset parameters ``p.<name>``,
hyperparameters ``hp.<name>``, tags ``tag.<name>`` (``tag.suite``, ``tag.profile``) and final
metrics ``<split>.<metric>`` (``test.acc``, ``test.conflicting_acc``, ...), plus ``record``: the
whole JSON record (per-epoch history, code version, device) as a string. Parquet keeps the column
types, and any Arrow reader loads it: ``pandas.read_parquet``, polars, DuckDB, or Hugging Face
``datasets.load_dataset("parquet", data_files=...)`` (benchopt stores its results the same way).
It is written with pyarrow, which MLflow already installs.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .store import ResultStore


def export_parquet(store: ResultStore, path: str | Path) -> int:
    """Write every stored record of ``store`` to the Parquet file ``path`` (atomically: a reader
    never sees half a file); returns the number of rows. A column whose values mix types (e.g. a
    hyperparameter that is a number in one method and a string in another) is written as JSON text."""
    import pandas as pd

    df = store.query()
    if "record" in df.columns:
        df["record"] = df["record"].map(lambda r: json.dumps(r, sort_keys=True))
    for col in df.columns:
        if df[col].dtype == object:
            kinds = {type(v) for v in df[col] if v is not None and not (isinstance(v, float) and pd.isna(v))}
            if len(kinds) > 1 or kinds - {str, bool, int, float}:
                df[col] = df[col].map(lambda v: None if v is None or (isinstance(v, float) and pd.isna(v))
                                      else json.dumps(v))
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        df.to_parquet(tmp, index=False, engine="pyarrow")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return len(df)
