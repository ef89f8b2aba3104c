"""Named points where a fault-injection test can stop a process, to kill it there.

A test sets ``$BENCHMARK_FAILPOINT`` to a point's name (``name@N``: its N-th passage in a
process) and ``$BENCHMARK_FAILPOINT_FILE`` to a path. The first process to reach that point creates
the file (exclusively, so it fires once per file), writes its pid into it and sleeps; the test then
SIGKILLs that process, or its scheduler, at exactly that point. Without the variables a failpoint
is one environment lookup.

Points: ``data.generated`` (a dataset generated, its cache not yet written), ``save.tmp`` (another
torch file, a dataset cache or kept model, written to its temporary file, not yet renamed),
``epoch.mid`` (half-way through an epoch after the first), ``checkpoint.tmp`` (a checkpoint written
to its temporary file, not yet renamed), ``record.tmp`` (a record written to its temporary file,
not yet linked), ``record.stored`` (a record stored, its checkpoint not yet removed),
``mirror.mid`` (an MLflow run created, not yet finished).
"""
from __future__ import annotations

import os
import time

ENV, FILE_ENV = "BENCHMARK_FAILPOINT", "BENCHMARK_FAILPOINT_FILE"
POINTS = ("data.generated", "save.tmp", "epoch.mid", "checkpoint.tmp", "record.tmp", "record.stored", "mirror.mid")
_passed: dict[str, int] = {}


def failpoint(name: str) -> None:
    """Stop here (write the pid, sleep up to 10 minutes) if a test armed ``name``."""
    armed = os.environ.get(ENV)
    if not armed or armed.split("@")[0] != name or not os.environ.get(FILE_ENV):
        return
    _passed[name] = _passed.get(name, 0) + 1
    if "@" in armed and _passed[name] != int(armed.split("@")[1]):
        return
    try:
        fd = os.open(os.environ[FILE_ENV], os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:  # fired already: a rerun or retry goes through
        return
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    time.sleep(600)
