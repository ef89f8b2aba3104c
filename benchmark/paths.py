"""Where things live: the working folder and the data root (torch-free, for every command).

:mod:`benchmark.data` re-exports these names; they live here so that commands that only read
(``list``, ``status``, ``report``) can find the working folder without importing torch.
"""
from __future__ import annotations

import os
from pathlib import Path

DATA_ROOT_ENV = "BENCHMARK_DATA_ROOT"
HOME_ENV = "BENCHMARK_HOME"


class DataRootError(FileNotFoundError):
    """A dataset's files are missing; the message names the expected layout."""


def default_home() -> Path:
    """Working folder for caches, checkpoints and the embedded MLflow store."""
    return Path(os.environ.get(HOME_ENV, ".benchmark")).resolve()


def resolve_data_root(data_root: str | Path | None = None) -> Path:
    """The data root: the argument, else ``$BENCHMARK_DATA_ROOT``, else ``./data``, else ``../shared/data``."""
    if data_root is not None:
        return Path(data_root).expanduser().resolve()
    if os.environ.get(DATA_ROOT_ENV):
        return Path(os.environ[DATA_ROOT_ENV]).expanduser().resolve()
    for candidate in (Path("data"), Path("../shared/data")):
        if candidate.is_dir():
            return candidate.resolve()
    return Path("data").resolve()
