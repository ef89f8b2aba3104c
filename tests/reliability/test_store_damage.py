"""A damaged record never takes the store down: it is quarantined with a warning naming the file
and the reason, reads as absent (so its spec runs again), and every reader keeps working."""
from __future__ import annotations

import json
import os
import stat
import warnings

import pytest

from benchmark.engine import run
from benchmark.store import DamagedRecordWarning, ResultStore

from .helpers import cli, tiny_spec


def _damage(path, kind: str) -> None:
    good = path.read_bytes()
    rec = json.loads(good)
    if kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "random bytes":
        path.write_bytes(os.urandom(300) + b"\xff\xfe")
    elif kind == "{}":
        path.write_text("{}")
    elif kind == "a list":
        path.write_text("[1, 2]")
    elif kind == "no spec":
        path.write_text(json.dumps({k: v for k, v in rec.items() if k != "spec"}))
    elif kind == "spec without hparams":
        rec["spec"].pop("hparams")
        path.write_text(json.dumps(rec))
    elif kind == "final not a dict":
        rec["final"] = [0.5]
        path.write_text(json.dumps(rec))
    elif kind == "run id of another file":
        rec["run_id"] = "0123456789abcdef"
        path.write_text(json.dumps(rec))
    else:
        raise AssertionError(kind)


KINDS = ["truncated", "empty", "random bytes", "{}", "a list", "no spec", "spec without hparams",
         "final not a dict", "run id of another file"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_damaged_record_is_quarantined_and_reads_as_absent(stored, kind):
    victim, other = sorted(r["run_id"] for r in stored.records())
    _damage(stored.path(victim), kind)
    reader = ResultStore(stored.root)  # a fresh reader, as another command would be
    with pytest.warns(DamagedRecordWarning) as caught:
        ids = [r["run_id"] for r in reader.records()]
    assert ids == [other]
    msg = str(caught[0].message)
    assert str(stored.path(victim)) in msg and "_quarantine" in msg
    assert not stored.path(victim).exists()
    (moved,) = (stored.root / "_quarantine").iterdir()
    assert moved.name.startswith(f"{victim}.json.")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once quarantined, readers are quiet
        assert not reader.has(victim) and reader.has(other)
        with pytest.raises(KeyError, match=victim):
            reader.get(victim)
        assert list(reader.query()["run_id"]) == [other]


def test_every_reader_survives_a_damaged_record_and_the_spec_runs_again(stored, bench_home, data_root, tmp_path):
    spec = tiny_spec(0)
    assert stored.has(spec.run_id)
    first = stored.get(spec.run_id)
    stored.path(spec.run_id).write_bytes(b"\x00garbage")
    # readers: status, the planner's rates (every suite run), probe, mirror — no crash, no traceback
    rc, out, err = cli(["status", "--results-dir", str(stored.root)])
    assert rc == 0 and "Traceback" not in err and "damaged record" in err and spec.run_id in err, err
    from benchmark.costs import rates
    rates(ResultStore(stored.root).records(), bench_home)  # the planner's cost model reads every record
    rc, out, err = cli(["probe", "--run-id", spec.run_id, "--results-dir", str(stored.root)])
    assert rc == 2 and "Traceback" not in err and "error:" in err, err
    # the spec is absent, so it runs again and gets a fresh, valid record (mode 0644)
    result = run(spec, store=ResultStore(stored.root), home=bench_home, data_root=data_root, progress=False,
                 keep_model=False)
    assert not result.cached
    again = ResultStore(stored.root).get(spec.run_id)
    assert again["final"] == first["final"]
    assert stat.S_IMODE(os.stat(stored.path(spec.run_id)).st_mode) == 0o644


def test_report_names_nothing_it_cannot_read(stored, tmp_path):
    victim = sorted(r["run_id"] for r in stored.records())[0]
    stored.path(victim).write_text("")
    rc, out, err = cli(["report", "--results-dir", str(stored.root), "--out", str(tmp_path / "rep")])
    assert rc == 0, err
    assert "Traceback" not in err and "damaged record" in err and str(stored.path(victim)) in err


def test_records_are_readable_by_colleagues_and_damage_is_refused_on_write(tmp_path, stored):
    rec = next(stored.records())
    fresh = ResultStore(tmp_path / "fresh")
    path = fresh.put(rec)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    with pytest.raises(ValueError, match="damaged"):
        fresh.put({**rec, "run_id": "feedfacefeedface", "final": None})
    assert not fresh.path("feedfacefeedface").exists()


def test_readers_never_see_a_record_being_written(stored, tmp_path):
    """`report`/`status` while runs are writing: 60 records land while another reader lists the store."""
    import threading
    rec = next(stored.records())
    writer_store = ResultStore(stored.root)
    done = threading.Event()

    def write():
        for i in range(60):
            writer_store.put({**rec, "run_id": f"{i:016x}"})
        done.set()

    t = threading.Thread(target=write)
    reader = ResultStore(stored.root)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a quarantine would warn: there must be none
        t.start()
        seen = 0
        while not done.is_set():
            seen = max(seen, len(reader.query()))
        t.join()
        assert len(reader.query()) == 62 and seen <= 62
    assert not (stored.root / "_quarantine").exists()


def test_a_damaged_claim_is_taken_over_not_obeyed(tmp_path):
    from benchmark.claims import ClaimBoard
    board = ClaimBoard(tmp_path / "runs")
    board.dir.mkdir(parents=True)
    board.path("abc").write_bytes(os.urandom(64))
    (board.failures_dir).mkdir()
    board.failure_path("abc").write_text("{}")
    claim = board.acquire("abc")
    assert claim is not None
    claim.release()
    assert board.failures() == [] and board.claims() == []


def test_leftovers_of_killed_writes_are_tidied(stored, tmp_path):
    """What SIGKILL leaves (a stale claim, checkpoint and failure record of a stored run; temporary
    files of interrupted writes) goes at the next suite run; a fresh temporary file stays."""
    import subprocess
    import sys
    import time

    from benchmark.claims import ClaimBoard
    from benchmark.executors import tidy_finished
    run_id = next(stored.records())["run_id"]
    home = tmp_path / "home"
    (home / "checkpoints").mkdir(parents=True)
    (home / "cache" / "colored_mnist").mkdir(parents=True)
    board = ClaimBoard(stored.root)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    board.dir.mkdir()
    board.path(run_id).write_text(json.dumps({"run_id": run_id, "host": board.host, "pid": dead.pid,
                                              "token": "t", "heartbeat": time.time()}))
    board.record_failure(run_id, {}, {}, "worker process died", "")
    (home / "checkpoints" / f"{run_id}.pt").write_bytes(b"x")
    old = [stored.root / ".tmp-abc.json", home / "checkpoints" / f".{run_id}.pt.x.tmp",
           home / "cache" / "colored_mnist" / ".k.pt.y.tmp"]
    fresh = stored.root / ".tmp-new.json"
    for f in [*old, fresh]:
        f.write_text("partial")
    for f in old:
        os.utime(f, (time.time() - 7200, time.time() - 7200))
    assert tidy_finished(stored.root, home) == 6
    assert board.claims() == [] and board.failures() == [] and not (home / "checkpoints" / f"{run_id}.pt").exists()
    assert not any(f.exists() for f in old) and fresh.exists() and stored.has(run_id)
