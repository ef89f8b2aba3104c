"""Helpers of the fault-injection tests: tiny real specs, an in-process CLI runner that captures
what a user sees, a hash of everything stored."""
from __future__ import annotations

import contextlib
import hashlib
import io
import warnings
from pathlib import Path

from benchmark import make_spec

TINY = dict(epochs=1, max_train=96, max_eval=96)


def tiny_spec(seed=0, method="vanilla", **kw):
    return make_spec(method, "colored_mnist", dataset_params={"sigma2": 0.02}, seed=seed, **{**TINY, **kw})


def store_hash(root: Path) -> str:
    """Names and bytes of every file under ``root`` (the store, its claims, failures, quarantine)."""
    h = hashlib.sha256()
    for p in sorted(Path(root).rglob("*")) if Path(root).exists() else []:
        h.update(str(p.relative_to(root)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def cli(argv: list[str]) -> tuple[int, str, str]:
    """Run ``python -m benchmark ARGV`` in this process: (exit status, stdout, stderr)."""
    from benchmark.cli import main
    out, err = io.StringIO(), io.StringIO()

    def show(message, category, filename, lineno, file=None, line=None):  # as Python prints them, not pytest
        err.write(warnings.formatwarning(message, category, filename, lineno, line))

    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.showwarning = show
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse's --help
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def assert_one_error(rc: int, err: str, *needles: str) -> str:
    """Non-zero exit, no traceback, exactly one ``error:`` line, containing every needle."""
    assert rc not in (0, None), err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    for n in needles:
        assert n in err, (n, err)
    return lines[0]
