"""Table-driven bad input over the CLI's options: each gives one ``error:`` line naming the
problem, a non-zero exit, no traceback, and leaves everything stored byte-for-byte unchanged."""
from __future__ import annotations

import pytest
import torch

from .helpers import assert_one_error, cli, store_hash

RUN = ["run", "--method", "vanilla", "--dataset", "colored_mnist", "--epochs", "1", "--max-train", "64",
       "--no-mlflow", "--no-progress"]
SUITE = ["run", "--suite", "lnl.figure4", "--profile", "quick", "--no-mlflow", "--no-progress"]

# (id, argv ({tmp} = a scratch folder, {store} = the store), words the error line must contain)
CASES = [
    ("unknown method", ["run", "--method", "vanila", "--dataset", "colored_mnist"], ["unknown method 'vanila'", "vanilla"]),
    ("unknown dataset", ["run", "--method", "vanilla", "--dataset", "colored_mnst"], ["unknown dataset", "colored_mnist"]),
    ("unknown suite", ["run", "--suite", "lnl.figur4", "--no-mlflow"], ["unknown suite", "lnl.figure4"]),
    ("unknown suite in status", ["status", "--suite", "nope"], ["unknown suite"]),
    ("unknown hyperparameter", RUN + ["--set", "nope=1"], ["unknown parameter", "nope"]),
    ("--set without =", RUN + ["--set", "lr"], ["NAME=VALUE"]),
    ("hyperparameter of the wrong type", RUN + ["--set", "lr=fast"], ["lr", "fast"]),
    ("batch size out of range", RUN + ["--set", "batch_size=0"], ["batch_size=0", "out of range"]),
    ("negative seed", RUN + ["--seed", "-1"], ["seed must be >= 0"]),
    ("zero epochs", RUN[:5] + ["--epochs", "0", "--no-mlflow"], ["epochs must be >= 1"]),
    ("epochs not a number", RUN[:5] + ["--epochs", "abc"], ["invalid int value: 'abc'"]),
    ("max-train zero", RUN[:5] + ["--max-train", "0", "--no-mlflow"], ["max_train must be >= 1"]),
    ("label noise out of range", RUN + ["--label-noise", "1.5"], ["label_noise=1.5"]),
    ("dataset parameter of the wrong type", RUN + ["--sigma2", "abc"], ["sigma2", "abc"]),
    ("dataset parameter without a value", RUN + ["--sigma2"], ["--sigma2", "expected one argument"]),
    ("unknown dataset option", RUN + ["--bogus", "3"], ["unrecognised arguments", "--bogus"]),
    ("device that is no device", RUN + ["--device", "banana"], ["--device 'banana'"]),
    ("CUDA device that is not there", RUN + ["--device", "cuda:9"], ["--device cuda:9"]),
    pytest.param(("CUDA without a GPU", RUN + ["--device", "cuda"], ["no CUDA device"]),
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")),
    ("pretrained file on a backbone that loads none", RUN + ["--pretrained", "/nonexistent/w.pt"],
     ["--pretrained /nonexistent/w.pt", "lnl_convnet"]),
    ("pretrained imagenet on a backbone that loads none", RUN + ["--pretrained", "imagenet"], ["lnl_convnet"]),
    ("pretrained file that does not exist", RUN + ["--backbone", "resnet18", "--pretrained", "/nonexistent/w.pt"],
     ["/nonexistent/w.pt", "no such file"]),
    ("pretrained run that does not exist", RUN + ["--pretrained", "run:doesnotexist"], ["run:doesnotexist", "no kept weights"]),
    ("unknown backbone", RUN + ["--backbone", "resnet9000"], ["unknown backbone"]),
    ("results folder under a file", RUN + ["--results-dir", "{tmp}/afile/runs"], ["not writable", "--results-dir"]),
    ("home under a file", RUN + ["--home", "{tmp}/afile/home"], ["not writable", "--home"]),
    ("data root without the files", RUN + ["--sigma2", "0.0317", "--data-root", "{tmp}/empty"],
     ["missing data file", "--data-root"]),
    ("suite on an empty data root", SUITE + ["--data-root", "{tmp}/empty", "--home", "{tmp}/home"], ["data for 'colored_mnist' is missing"]),
    ("suite on an empty data root, one setting cached", SUITE + ["--data-root", "{tmp}/empty"],
     ["data for 'colored_mnist' is missing"]),
    ("suite with run options", SUITE + ["--method", "vanilla"], ["--method/--dataset do not go with"]),
    ("suite with zero workers", SUITE + ["--workers", "0"], ["workers must be >= 1"]),
    ("suite slice that matches nothing", SUITE + ["--match", "method=lnl"], ["matches --match method=lnl", "--dry-run -v"]),
    ("run with nothing to run", ["run"], ["needs --method and --dataset"]),
    ("probe of an unknown run", ["probe", "--run-id", "feedbeef"], ["feedbeef"]),
    ("re-evaluation of an unknown run", ["reeval", "--run-id", "feedbeef"], ["feedbeef", "matches 0 stored runs"]),
    ("unknown re-evaluation", ["reeval", "--name", "nope"], ["--name nope", "random_colour"]),
    ("re-evaluation from a missing specs folder", ["reeval", "--specs-dir", "{tmp}/nospecs"], ["nospecs"]),
    ("report of an unknown spec", ["report", "--spec", "nope.table9", "--out", "{tmp}/rep"], ["nope.table9"]),
    ("report from a missing specs folder", ["report", "--specs-dir", "{tmp}/nospecs", "--out", "{tmp}/rep"], ["nospecs"]),
    ("README block from some specs", ["report", "--update-readme", "--spec", "lnl.table1", "--out", "{tmp}/rep"],
     ["--update-readme", "drop --spec"]),
    ("unknown option of list", ["list", "--bogus"], ["unrecognized arguments: --bogus"]),
    ("unknown command", ["frobnicate"], ["invalid choice: 'frobnicate'"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.values[0][0] if hasattr(c, "values") else c[0] for c in CASES])
def test_bad_input_is_one_line_and_touches_nothing(case, stored, tmp_path):
    _, argv, needles = case
    (tmp_path / "afile").write_text("a file, not a folder")
    (tmp_path / "empty").mkdir()
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if argv[0] in ("run", "status", "probe", "report", "reeval") and "--results-dir" not in argv:
        argv += ["--results-dir", str(stored.root)]
    before = store_hash(stored.root)
    rc, out, err = cli(argv)
    assert_one_error(rc, err, *needles)
    assert store_hash(stored.root) == before
    assert not (tmp_path / "rep").exists() or not any((tmp_path / "rep").iterdir())


def test_debug_shows_the_traceback(stored):
    from benchmark.registry import RegistryError
    with pytest.raises(RegistryError):
        cli(["run", "--method", "vanila", "--dataset", "colored_mnist", "--debug"])


def test_a_truncated_mnist_file_is_named(stored, tmp_path, data_root):
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for p in (data_root / "MNIST" / "raw").glob("*.gz"):
        data = p.read_bytes()
        (raw / p.name).write_bytes(data[: len(data) // 3] if p.name.startswith("train-images") else data)
    before = store_hash(stored.root)
    rc, out, err = cli(RUN + ["--sigma2", "0.0293", "--data-root", str(tmp_path / "data"),
                              "--results-dir", str(stored.root)])
    assert_one_error(rc, err, str(raw / "train-images-idx3-ubyte.gz"), "damaged")
    assert store_hash(stored.root) == before


def test_a_datasets_own_seed_is_data_seed_and_the_training_seed_stays_seed(stored):
    from benchmark.cli import dataset_option
    assert dataset_option("seed") == "--data-seed" and dataset_option("sigma2") == "--sigma2"
    rc, out, err = cli(["list", "-v"])
    assert rc == 0 and "--data-seed=0" in out
    # --data-seed reaches the dataset's own seed (its parser names the field), --seed the training seed
    rc, out, err = cli(RUN + ["--seed", "5", "--data-seed", "x", "--results-dir", str(stored.root)])
    assert_one_error(rc, err, ".seed: cannot use 'x'")


def test_a_closed_stdout_ends_quietly():
    """`list | head`: the reader goes away; no BrokenPipeError traceback."""
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-m", "benchmark", "list", "-v"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert err == "" and proc.returncode == 0, err
