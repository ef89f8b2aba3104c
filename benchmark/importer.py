"""Merge records made elsewhere (e.g. on a GPU machine without MLflow) into the result store.

``python -m benchmark import DIR [DIR...]`` reads every ``*.json`` record directly under each
folder (or inside a ``.tar.gz`` archive such as ``scripts/gpu-window.sh`` writes) and checks it
before it touches the store:

* schema: a JSON object with ``run_id``, ``spec`` (spec schema :data:`benchmark.spec.SPEC_SCHEMA`),
  ``final``, ``history`` and ``wall_time_s``;
* identity: ``run_id`` is the hash of ``spec`` (``RunSpec.from_dict(spec).run_id``), so a record
  cannot claim a run it did not do;
* agreement: a record whose run id is already stored must carry the same ``spec`` and ``final``
  (then it is skipped as already there); one that differs is refused, and the stored one stays.

Valid new records are written with :meth:`benchmark.store.ResultStore.put` (atomic, never
overwriting) and then mirrored to MLflow. Post-run outputs that come with them
(``_outputs/<step>/<run_id>.<name>.json``: re-evaluations, probes) are stored beside the records when
they were computed from the very record the store holds (same ``created`` time); others are skipped.
Nothing here imports torch.
"""
from __future__ import annotations

import json
import re
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .spec import SPEC_SCHEMA, RunSpec
from .store import OUTPUTS, RecordExists, ResultStore

REQUIRED = {"run_id": str, "spec": dict, "final": dict, "history": list, "wall_time_s": (int, float)}
COMPARED = ("spec", "final")  # what must agree between two records of one run id


@dataclass
class ImportResult:
    """What an import did: records added, already stored (identical), refused (one line each)."""

    added: list[dict[str, Any]] = field(default_factory=list)
    identical: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    mirrored: int = 0
    outputs: int = 0  # post-run outputs stored
    outputs_skipped: list[str] = field(default_factory=list)  # one line each: not of a record stored here


def check_record(record: Any) -> str | None:
    """None if ``record`` is a well-formed record whose run id is the hash of its spec, else why not."""
    if not isinstance(record, dict):
        return "not a JSON object"
    for key, kind in REQUIRED.items():
        if not isinstance(record.get(key), kind) or isinstance(record.get(key), bool):
            return f"field {key!r} is missing or not a {getattr(kind, '__name__', 'number')}"
    if not re.fullmatch(r"[0-9a-f]{16}", record["run_id"]):
        return f"run_id {record['run_id']!r} is not 16 hex digits"
    if record["spec"].get("schema") != SPEC_SCHEMA:
        return f"spec schema {record['spec'].get('schema')!r}, this code reads schema {SPEC_SCHEMA}"
    try:
        expected = RunSpec.from_dict(record["spec"]).run_id
    except TypeError as e:
        return f"spec does not fit this code's RunSpec ({e})"
    if expected != record["run_id"]:
        return f"run_id {record['run_id']} is not the hash of its spec ({expected})"
    return None


def _differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return [k for k in COMPARED if json.dumps(a.get(k), sort_keys=True) != json.dumps(b.get(k), sort_keys=True)]


def _source_files(source: Path, scratch: Path) -> tuple[list[Path], list[Path]]:
    """(records, post-run outputs) of a folder (records directly under it), or inside a ``.tar.gz``
    archive (unpacked into ``scratch``; members with absolute paths or ``..`` are not extracted)."""
    if source.is_dir():
        return (sorted(p for p in source.glob("*.json") if not p.name.startswith(".")),
                sorted(source.glob(f"{OUTPUTS}/*/[!.]*.json")))
    if source.is_file() and source.name.endswith((".tar.gz", ".tgz", ".tar")):
        dest = scratch / f"{len(list(scratch.iterdir()))}"
        with tarfile.open(source) as tar:
            tar.extractall(dest, filter="data")
        return (sorted(p for p in dest.rglob("*.json")
                       if not p.name.startswith(".") and not any(part.startswith("_") for part in p.relative_to(dest).parts)),
                sorted(dest.rglob(f"{OUTPUTS}/*/[!.]*.json")))
    raise FileNotFoundError(f"{source} is neither a folder of records nor a .tar.gz archive of them")


def _import_output(path: Path, store: ResultStore, result: ImportResult) -> None:
    run_id, _, name = path.name[:-len(".json")].partition(".")
    step = path.parent.name
    try:
        data = json.loads(path.read_text())
        created = data["record_created"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        result.outputs_skipped.append(f"{path}: not a readable output ({type(e).__name__})")
        return
    if not store.has(run_id) or store.get(run_id).get("created") != created:
        result.outputs_skipped.append(f"{path}: not computed from a record stored here")
        return
    store.put_output(run_id, step, name, {k: v for k, v in data.items() if k not in ("run_id", "record_created")})
    result.outputs += 1


def import_records(sources: Iterable[str | Path], store: ResultStore, mirror=None) -> ImportResult:
    """Check and merge the records under ``sources`` into ``store``; mirror the added ones with
    ``mirror.log_record`` (None: no mirroring). Raises FileNotFoundError for a missing source
    before anything is written."""
    result = ImportResult()
    sources = [Path(s) for s in sources]
    for s in sources:
        if not s.exists():
            raise FileNotFoundError(f"{s} does not exist")
    with tempfile.TemporaryDirectory(prefix="benchmark-import-") as scratch:
        found = [_source_files(s, Path(scratch)) for s in sources]
        for f in (f for records, _ in found for f in records):
            try:
                record = json.loads(f.read_text())
            except (OSError, ValueError) as e:
                result.refused.append(f"{f}: not readable JSON ({e})")
                continue
            problem = check_record(record)
            if problem:
                result.refused.append(f"{f}: {problem}")
                continue
            rid = record["run_id"]
            if store.has(rid):
                diff = _differences(store.get(rid), record)
                if diff:
                    result.refused.append(f"{f}: conflicts with the stored record {store.path(rid)} "
                                          f"(same run id {rid}, different {' and '.join(diff)}); kept the stored one")
                else:
                    result.identical.append(rid)
                continue
            try:
                store.put(record)
            except RecordExists:  # written by someone else meanwhile: compare on the next import
                result.identical.append(rid)
                continue
            result.added.append(record)
        for f in (f for _, outputs in found for f in outputs):
            _import_output(f, store, result)
    if mirror is not None:
        result.mirrored = sum(mirror.log_record(r) is not None for r in result.added)
    return result


def describe(record: dict[str, Any]) -> str:
    """One line per record: run id, method, dataset, seed, epochs, test accuracy, device."""
    spec = record["spec"]
    text = f"{record['run_id']}  {spec['method']} on {spec['dataset']} seed={spec['seed']} epochs={spec['epochs']}"
    acc = (record.get("final") or {}).get("test", {}).get("acc")
    if isinstance(acc, (int, float)):
        text += f"  test acc {acc:.4f}"
    return text + f"  [{record.get('device', '?')}]"
