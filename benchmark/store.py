"""The result store: one immutable JSON record per finished run, the source of truth.

Records live in ``<root>/<run_id>.json``. A record is written to a temporary file and linked
into place, so a reader never sees half a record and an existing record is never replaced. Records
are written readable by everyone (mode 0644), so a store on a shared file system serves colleagues.

Every read validates the record (JSON, its ``run_id`` equal to the file name, the keys readers
need: ``spec`` with method, dataset, seed, epochs, hparams and dataset_params, ``status``,
``final`` as a dict; other keys are free). A damaged record is moved to ``<root>/_quarantine/``
with a :class:`DamagedRecordWarning` naming the file and the reason, and is then absent: its spec
runs again, and no reader (status, report, planner, mirror, probe) crashes on it.

Post-run outputs (e.g. ``python -m benchmark reeval``: predictions on re-coloured test sets, computed
from a finished run's kept weights) live beside the records, in
``<root>/_outputs/<step>/<run_id>.<name>.json`` (:meth:`ResultStore.put_output`). They may be
written again (a newer computation replaces the older), carry the ``created`` time of the record
they were computed from, and are ignored once that record is retrained. :meth:`ResultStore.query`
attaches them to each record as ``record[<step>][<name>]``, so reports read them like any stored value.
"""
from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    import pandas as pd

from .failpoints import failpoint

RESULTS_ENV = "BENCHMARK_RESULTS"


RECORD_MODE = 0o644
QUARANTINE = "_quarantine"
OUTPUTS = "_outputs"
SPEC_KEYS = {"method": str, "dataset": str, "seed": int, "epochs": int, "hparams": dict, "dataset_params": dict}


class RecordExists(FileExistsError):
    """A record with this run id is already stored; stored records are never overwritten."""


class DamagedRecordWarning(RuntimeWarning):
    """A stored record could not be read and was moved to the quarantine folder."""


def record_problem(record: Any, run_id: str | None = None) -> str | None:
    """Why ``record`` is not a usable record (for file ``<run_id>.json``), or None if it is."""
    if not isinstance(record, dict):
        return f"not a JSON object but {type(record).__name__}"
    rid = record.get("run_id")
    if not isinstance(rid, str) or not rid:
        return "no run_id"
    if run_id is not None and rid != run_id:
        return f"its run_id {rid!r} does not match the file name"
    spec = record.get("spec")
    if not isinstance(spec, dict):
        return "no spec"
    for key, kind in SPEC_KEYS.items():
        value = spec.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return f"spec.{key} missing or not {kind.__name__}"
    if not isinstance(record.get("status"), str):
        return "no status"
    if not isinstance(record.get("final"), dict):
        return "final is not a dict"
    return None


def default_results_dir() -> Path:
    return Path(os.environ.get(RESULTS_ENV, "results/runs")).resolve()


class ResultStore:
    """Finished-run records under ``root`` (default ``$BENCHMARK_RESULTS`` or ``results/runs``)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root).resolve() if root else default_results_dir()
        self._valid: dict[str, tuple[int, int, int]] = {}  # run id -> (inode, size, mtime) of a checked file

    def path(self, run_id: str) -> Path:
        return self.root / f"{run_id}.json"

    @property
    def quarantine_dir(self) -> Path:
        return self.root / QUARANTINE

    def has(self, run_id: str) -> bool:
        """True when a valid record is stored (a damaged one is quarantined and reads as absent)."""
        path = self.path(run_id)
        try:
            st = path.stat()
        except FileNotFoundError:
            return False
        if self._valid.get(run_id) == (st.st_ino, st.st_size, st.st_mtime_ns):
            return True
        return self._read(path) is not None

    def get(self, run_id: str) -> dict[str, Any]:
        """The record of ``run_id``.

        Raises:
            KeyError: nothing valid is stored under that id (a damaged file is quarantined first).
        """
        record = self._read(self.path(run_id))
        if record is None:
            raise KeyError(f"run {run_id} is not in the result store {self.root}")
        return record

    def _read(self, path: Path) -> dict[str, Any] | None:
        """The validated record at ``path``; None if absent or damaged (then quarantined)."""
        try:
            with open(path, "rb") as fh:
                st = os.fstat(fh.fileno())
                raw = fh.read()
        except FileNotFoundError:
            return None
        try:
            record = json.loads(raw.decode("utf-8"))
            problem = record_problem(record, path.stem)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            record, problem = None, ("empty file" if not raw.strip() else f"not valid JSON ({type(e).__name__}: {e})")
        if problem is None:
            self._valid[path.stem] = (st.st_ino, st.st_size, st.st_mtime_ns)
            return record
        self._quarantine(path, st, problem)
        return None

    def _quarantine(self, path: Path, st: os.stat_result, problem: str) -> None:
        """Move a damaged record aside (only the very file that was read: a record stored meanwhile
        under the same name stays) and warn."""
        self._valid.pop(path.stem, None)
        target = self.quarantine_dir / f"{path.name}.{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S%f')}"
        try:
            self.quarantine_dir.mkdir(parents=True, exist_ok=True)
            if os.stat(path).st_ino != st.st_ino:
                return
            os.rename(path, target)
        except FileNotFoundError:  # another reader moved it first
            return
        except OSError as e:  # e.g. a read-only store: report it, still treat it as absent
            warnings.warn(f"damaged record {path} ({problem}) could not be moved aside ({e}); "
                          "it is ignored", DamagedRecordWarning, stacklevel=3)
            return
        warnings.warn(f"damaged record {path} ({problem}) moved to {target}; its run counts as not done "
                      "and runs again", DamagedRecordWarning, stacklevel=3)

    def put(self, record: dict[str, Any]) -> Path:
        """Store ``record`` atomically under its ``run_id``; raises :class:`RecordExists` if taken
        and ValueError if the record lacks what readers need (see :func:`record_problem`)."""
        problem = record_problem(record)
        if problem:
            raise ValueError(f"refusing to store a damaged record: {problem}")
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.path(record["run_id"])
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".json")
        try:
            os.fchmod(fd, RECORD_MODE)  # mkstemp makes 0600; colleagues on a shared store must read it
            with os.fdopen(fd, "w") as fh:
                json.dump(record, fh, indent=1, sort_keys=True, allow_nan=True)
                fh.flush()
                os.fsync(fh.fileno())
            failpoint("record.tmp")
            for attempt in range(2):
                try:
                    os.link(tmp, final)  # fails if the record exists: never overwrite
                    break
                except FileExistsError:
                    # a damaged file there is quarantined by has(); then one more try
                    if attempt or self.has(record["run_id"]):
                        raise RecordExists(f"run {record['run_id']} is already stored at {final}") from None
        finally:
            os.unlink(tmp)
        return final

    def retire(self, run_id: str, reason: str) -> Path:
        """Move a stored record out of the way of a rerun (``run --rerun-stale``), keeping it under
        ``<root>/_stale/<run_id>.<created>.json`` with the reason added; returns its new path."""
        record = self.get(run_id)
        record["retired"] = {"reason": reason, "at": now_iso()}
        folder = self.root / "_stale"
        folder.mkdir(parents=True, exist_ok=True)
        stamp = re.sub(r"[^0-9A-Za-z]", "", str(record.get("created", ""))) or "undated"
        dest = folder / f"{run_id}.{stamp}.json"
        tmp = dest.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True, allow_nan=True))
        os.replace(tmp, dest)
        self.path(run_id).unlink()
        return dest

    def output_path(self, run_id: str, step: str, name: str) -> Path:
        """Where :meth:`put_output` keeps output ``name`` of post-run ``step`` for ``run_id``."""
        return self.root / OUTPUTS / step / f"{run_id}.{name}.json"

    def put_output(self, run_id: str, step: str, name: str, data: dict[str, Any]) -> Path:
        """Store a post-run output of a stored run (replacing an older one of the same name).

        The output records the ``created`` time of the run's record; :meth:`outputs` ignores it
        once that record is replaced (``run --rerun-stale``).

        Raises:
            KeyError: ``run_id`` is not stored.
        """
        record = self.get(run_id)
        path = self.output_path(run_id, step, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            os.fchmod(fd, RECORD_MODE)
            with os.fdopen(fd, "w") as fh:
                json.dump({**data, "run_id": run_id, "record_created": record.get("created")}, fh, indent=1,
                          sort_keys=True, allow_nan=True)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path

    def outputs(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Every readable post-run output: run id -> step -> name -> output (with ``record_created``).

        An unreadable output file is skipped with a warning (it is recomputed by its step)."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        folder = self.root / OUTPUTS
        if not folder.is_dir():
            return out
        for p in sorted(folder.glob("*/[!.]*.json")):
            run_id, _, name = p.name[:-len(".json")].partition(".")
            try:
                data = json.loads(p.read_text(encoding="utf-8"))
                if not isinstance(data, dict):
                    raise ValueError("not a JSON object")
            except (OSError, UnicodeDecodeError, ValueError) as e:
                warnings.warn(f"post-run output {p} is unreadable ({e}); it is ignored", RuntimeWarning, stacklevel=2)
                continue
            out.setdefault(run_id, {}).setdefault(p.parent.name, {})[name] = data
        return out

    def records(self) -> Iterator[dict[str, Any]]:
        """Every valid record, by file name (damaged ones are quarantined and skipped)."""
        if not self.root.is_dir():
            return
        for p in sorted(self.root.glob("[!.]*.json")):  # not the hidden temporary files of put()
            record = self._read(p)
            if record is not None:
                yield record

    def query(self, **filters) -> pd.DataFrame:
        """One row per run: spec columns, dataset params (``p.<name>``), hparams (``hp.<name>``),
        final test metrics (``test.<metric>``, any other split ``<split>.<metric>``), and the record.

        Keyword filters match columns exactly, e.g. ``query(method="lnl", dataset="colored_mnist")``.
        Each record carries its current post-run outputs (see :meth:`outputs`) as
        ``record[<step>][<name>]``; the stored file is unchanged.
        """
        import pandas as pd  # here, not at the top: commands that never query start faster

        outputs = self.outputs()
        rows = [flatten_record(_with_outputs(r, outputs.get(r["run_id"], {}))) for r in self.records()]
        df = pd.DataFrame(rows)
        for k, v in filters.items():
            if df.empty:
                break
            if k not in df.columns:
                raise KeyError(f"no column {k!r}; columns: {sorted(df.columns)}")
            df = df[df[k] == v]
        return df.reset_index(drop=True)


def _with_outputs(record: dict[str, Any], outputs: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """``record`` with the outputs computed from this very record (not from one it replaced)."""
    for step, by_name in outputs.items():
        current = {n: o for n, o in by_name.items() if o.get("record_created") == record.get("created")}
        if current:
            record = {**record, step: {**(record.get(step) or {}), **current}}
    return record


def flatten_record(r: dict[str, Any]) -> dict[str, Any]:
    spec = r["spec"]
    row = {"run_id": r["run_id"], "status": r.get("status", "done"), "method": spec["method"],
           "dataset": spec["dataset"], "seed": spec["seed"], "epochs": spec["epochs"],
           "max_train": spec.get("max_train"), "wall_time_s": r.get("wall_time_s"),
           "fingerprint": r.get("dataset_fingerprint"), "created": r.get("created")}
    row.update({f"p.{k}": _scalar(v) for k, v in spec["dataset_params"].items()})
    row.update({f"hp.{k}": _scalar(v) for k, v in spec["hparams"].items()})
    row.update({f"tag.{k}": _scalar(v) for k, v in (r.get("tags") or {}).items()})
    row["label_noise"] = spec.get("label_noise", 0.0)
    for split, metrics in (r.get("final") or {}).items():
        for k, v in metrics.items():
            if isinstance(v, (int, float)) or v is None:
                row[f"{split}.{k}"] = v
    row["record"] = r
    return row


def _scalar(v):
    return json.dumps(v) if isinstance(v, (list, dict)) else v


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def code_version() -> dict[str, Any]:
    """The git commit of the code that ran (and whether the tree had local changes)."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", None
    if not re.fullmatch(r"[0-9a-f]{40}", commit or ""):  # e.g. a copy of the tree without .git (a GPU machine)
        commit, dirty = os.environ.get("BENCHMARK_CODE_COMMIT", ""), None
    from importlib import metadata
    try:
        version = metadata.version("biasbench")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {"commit": commit or None, "dirty": dirty, "package": version}


def library_versions() -> dict[str, str]:
    import numpy
    import torch
    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__}
    try:
        import torchvision
        out["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    return out
