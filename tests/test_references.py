"""Checks on the transcribed paper tables under results/papers and their loader."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from benchmark.references import (
    CSV_COLUMNS,
    DEFAULT_ROOT,
    DERIVED_COLUMNS,
    load_references,
    reference_value,
)

PAPERS = ("lnl", "blind_eye", "pgd")

REQUIRED_ARTEFACTS = {
    "lnl": {"table1", "table2"},
    "blind_eye": {"section6_2", "table1"},
    "pgd": {"table1", "table2", "table3", "table5", "table6", "table7", "table8", "table10",
            "table12", "table13"},
}

UNIT_RANGES = {
    "percent": (0.0, 100.0),
    "fraction": (0.0, 1.0),
    "score": (0.0, math.inf),
    "seconds": (0.0, math.inf),
    "count": (0.0, math.inf),
}


@pytest.fixture(scope="module")
def refs() -> pd.DataFrame:
    return load_references()


def _csv_files():
    return sorted(DEFAULT_ROOT.glob("*/*.csv"))


def test_default_root_is_the_repo_results_papers():
    assert DEFAULT_ROOT == Path(__file__).resolve().parents[1] / "results" / "papers"
    assert {p.name for p in DEFAULT_ROOT.iterdir() if p.is_dir()} >= set(PAPERS)


@pytest.mark.parametrize("csv_path", _csv_files(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_csv_loads_with_exact_header(csv_path: Path):
    with open(csv_path, encoding="utf-8") as fh:
        header = fh.readline().rstrip("\n").split(",")
    assert header == CSV_COLUMNS
    df = pd.read_csv(csv_path, keep_default_na=False)
    assert len(df) > 0
    assert (df["paper"] == csv_path.parent.name).all()
    assert (df["artefact"] == csv_path.stem).all()
    assert (df["row"].astype(str).str.len() > 0).all()
    assert (df["column"].astype(str).str.len() > 0).all()
    assert (df["metric"].astype(str).str.len() > 0).all()
    assert (df["page"].astype(str).str.len() > 0).all()


def test_loaded_frame_has_all_columns(refs: pd.DataFrame):
    assert list(refs.columns) == CSV_COLUMNS + DERIVED_COLUMNS
    assert set(refs["paper"]) == set(PAPERS)
    assert len(refs) == sum(len(pd.read_csv(p)) for p in _csv_files())


@pytest.mark.parametrize("paper", PAPERS)
def test_meta_json_matches_csvs(paper: str):
    meta = json.loads((DEFAULT_ROOT / paper / "meta.json").read_text(encoding="utf-8"))
    assert meta["paper_id"] == paper
    assert meta["title"] and meta["citation"]
    assert meta["units"] in ("percent", "fraction")
    assert isinstance(meta["default_tolerance"], (int, float)) and meta["default_tolerance"] > 0
    on_disk = {p.stem for p in (DEFAULT_ROOT / paper).glob("*.csv")}
    assert set(meta["artefacts"]) == on_disk
    for name, art in meta["artefacts"].items():
        assert art["title"] and art["metric"], name
        assert art["tolerance"] is None or art["tolerance"] > 0, name
        assert art.get("units", meta["units"]) in UNIT_RANGES, name
    assert (DEFAULT_ROOT / paper / "README.md").is_file()


def test_values_finite_and_in_range(refs: pd.DataFrame):
    assert refs["value"].map(math.isfinite).all()
    assert set(refs["units"]) <= set(UNIT_RANGES)
    for units, (lo, hi) in UNIT_RANGES.items():
        sub = refs[refs["units"] == units]
        bad = sub[(sub["value"] < lo) | (sub["value"] > hi)]
        assert bad.empty, bad[["paper", "artefact", "row", "column", "value"]]
    std = refs["std"].dropna()
    assert std.map(math.isfinite).all()
    assert (std >= 0).all()


def test_tolerances(refs: pd.DataFrame):
    targets = refs[refs["reproduction_target"]]
    assert (targets["tolerance"] > 0).all()
    assert (targets["effective_tolerance"] >= targets["tolerance"]).all()
    with_std = targets.dropna(subset=["std"])
    assert (with_std["effective_tolerance"] >= 2 * with_std["std"] - 1e-12).all()
    # Percent tables use percentage points, fraction tables use fractions.
    assert (refs.loc[refs["paper"] == "lnl", "tolerance"] == 0.02).all()
    pct = targets[targets["units"] == "percent"]
    assert (pct["tolerance"] >= 1.0).all()
    frac = targets[targets["units"] == "fraction"]
    assert (frac["tolerance"] < 1.0).all()


@pytest.mark.parametrize("paper", PAPERS)
def test_required_artefacts_exist(refs: pd.DataFrame, paper: str):
    have = set(refs.loc[refs["paper"] == paper, "artefact"])
    assert REQUIRED_ARTEFACTS[paper] <= have, REQUIRED_ARTEFACTS[paper] - have


def test_no_duplicate_keys(refs: pd.DataFrame):
    dup = refs[refs.duplicated(["paper", "artefact", "row", "column"], keep=False)]
    assert dup.empty, dup[["paper", "artefact", "row", "column"]]


def test_table_shapes(refs: pd.DataFrame):
    counts = refs.groupby(["paper", "artefact"]).size().to_dict()
    assert counts[("lnl", "table1")] == 7 * 4
    assert counts[("lnl", "table2")] == 2 * 3 * 4
    assert counts[("blind_eye", "table1")] == 4 * 2 + 12 * 3
    assert counts[("blind_eye", "table1_unlearned")] == 12
    assert counts[("blind_eye", "section6_2")] == 4
    assert counts[("pgd", "table1")] == 3 * 8 * 9
    assert counts[("pgd", "table2")] == 2 * 5 * 12
    assert counts[("pgd", "table3")] == 4 * 3
    assert counts[("pgd", "table5")] == counts[("pgd", "table6")] == 2 * 6 * 8
    assert counts[("pgd", "table7")] == 6 * 8
    assert counts[("pgd", "table8")] == 4 * 3
    assert counts[("pgd", "table10")] == 4 * 7
    assert counts[("pgd", "table12")] == 5
    assert counts[("pgd", "table13")] == 5 * 8


# (paper, artefact, row, column, value, std) as printed in the papers.
SPOT_VALUES = [
    # LNL Table 1: the numbers of the "Ours" row, trained on TB1. The sub-column holding
    # .9029 is the left one, which we read as the opposite-bias set TB2 (see the README).
    ("lnl", "table1", "Ours", "TB1→TB2", 0.9029, None),
    ("lnl", "table1", "Ours", "TB1→test", 0.9638, None),
    ("lnl", "table1", "Baseline", "TB2→TB1", 0.6645, None),
    ("lnl", "table2", "BlindEye", "Learn Age, Unlearn Gender/EB1→EB2", 0.6680, None),
    ("lnl", "table2", "Ours", "Learn Gender, Unlearn Age/EB2→test", 0.7450, None),
    ("blind_eye", "section6_2", "Baseline", "EB1→gender-balanced test", 70.0, None),
    ("blind_eye", "section6_2", "Blind", "EB2→gender-balanced test", 82.0, None),
    ("blind_eye", "section6_1", "Baseline", "age accuracy/all", 78.9, None),
    ("blind_eye", "table1", "Blind", "primary=Pose/spurious=Ancestral Origin", 0.39, None),
    ("blind_eye", "table1", "Baseline", "primary=Age/primary task", 0.79, None),
    ("blind_eye", "table1_unlearned", "Blind", "primary=Pose/spurious=Ancestral Origin", 78.0, None),
    ("pgd", "table1", "Ours", "Colored MNIST/bias ratio 99.5%/Minor", 96.50, 0.33),
    ("pgd", "table1", "Vanilla", "Cartoon/bias ratio 95%/Minor", 78.26, 2.93),
    ("pgd", "table2", "Ours", "Colored MNIST/bias ratio 99%, noise 5%/without de-noising/Major", 80.60, 0.00),
    ("pgd", "table2", "LfF", "Watermarked MNIST/bias ratio 99%, noise 10%/with de-noising/Minor", 53.97, 3.45),
    ("pgd", "table3", "Ours", "CelebA", 86.01, 0.49),
    ("pgd", "table5", "LfF", "Colored MNIST/difficulty 0.0005/bias ratio 99.5%/Major", 98.63, 0.48),
    ("pgd", "table6", "Ours", "Watermarked MNIST/difficulty 16/bias ratio 99%/Minor", 90.46, 0.81),
    ("pgd", "table7", "RUBi", "Cartoon/bias ratio 99.5%/Minor", 22.51, 7.67),
    ("pgd", "table8", "Ours", "CelebA/Minor", 83.83, 1.74),
    ("pgd", "table10", "Ours", "BAR/Diving", 45.91, 0.51),
    ("pgd", "table12", "Ours", "Colored MNIST/random color test", 95.44, None),
    ("pgd", "table13", "Vanilla", "Colored MNIST/bias ratio 80%/Minor", 95.92, None),
]


@pytest.mark.parametrize("paper,artefact,row,column,value,std", SPOT_VALUES,
                         ids=[f"{p}-{a}-{r}-{c}" for p, a, r, c, _, _ in SPOT_VALUES])
def test_spot_values(refs, paper, artefact, row, column, value, std):
    assert reference_value(refs, paper, artefact, row, column) == pytest.approx(value, abs=1e-9)
    got_std = refs[(refs["paper"] == paper) & (refs["artefact"] == artefact)
                   & (refs["row"] == row) & (refs["column"] == column)]["std"].iloc[0]
    if std is None:
        assert math.isnan(got_std)
    else:
        assert got_std == pytest.approx(std, abs=1e-9)


def test_spot_values_cover_many_tables():
    assert len({(p, a) for p, a, *_ in SPOT_VALUES}) >= 8


def _v(refs, *key):
    return reference_value(refs, *key)


def test_text_claims_reproduce_from_tables(refs: pd.DataFrame):
    # PGD Sec. 6.2: Ours - Vanilla = 69.92 and LfF - Vanilla = 31.78 (CM 99.5% minority).
    col = "Colored MNIST/bias ratio 99.5%/Minor"
    assert _v(refs, "pgd", "table1", "Ours", col) - _v(refs, "pgd", "table1", "Vanilla", col) \
        == pytest.approx(69.92, abs=1e-6)
    assert _v(refs, "pgd", "table1", "LfF", col) - _v(refs, "pgd", "table1", "Vanilla", col) \
        == pytest.approx(31.78, abs=1e-6)
    # PGD Sec. 6.2: with de-noising, 5% noise CM average = 92.94 (Ours) and 85.11 (LfF).
    base = "Colored MNIST/bias ratio 99%, noise 5%/with de-noising/"
    for method, avg in (("Ours", 92.94), ("LfF", 85.11)):
        mean = (_v(refs, "pgd", "table2", method, base + "Major")
                + _v(refs, "pgd", "table2", method, base + "Minor")) / 2
        assert mean == pytest.approx(avg, abs=0.006)
    # PGD Sec. 6.2: BAR gain over Vanilla 5.06, over second best 2.53.
    assert _v(refs, "pgd", "table3", "Ours", "BAR") - _v(refs, "pgd", "table3", "Vanilla", "BAR") \
        == pytest.approx(5.06, abs=1e-6)
    assert _v(refs, "pgd", "table3", "Ours", "BAR") - _v(refs, "pgd", "table3", "REPAIR", "BAR") \
        == pytest.approx(2.53, abs=1e-6)
    # Table 2's 0%-noise, no-de-noising cells repeat Table 1 at bias ratio 99%.
    for ds in ("Colored MNIST", "Watermarked MNIST"):
        for method in ("Vanilla", "LfF", "ReBias", "REPAIR", "Ours"):
            for t in ("Major", "Minor"):
                assert _v(refs, "pgd", "table2", method,
                          f"{ds}/bias ratio 99%, noise 0%/without de-noising/{t}") \
                    == _v(refs, "pgd", "table1", method, f"{ds}/bias ratio 99%/{t}")
    # Table 8: Avg. is the mean of Major and Minor.
    for method in ("Vanilla", "LfF", "REPAIR", "Ours"):
        mean = (_v(refs, "pgd", "table8", method, "CelebA/Major")
                + _v(refs, "pgd", "table8", method, "CelebA/Minor")) / 2
        assert mean == pytest.approx(_v(refs, "pgd", "table8", method, "CelebA/Avg."), abs=0.006)
    # Blind Eye Sec. 6.2: +16 (EB1) and +20 (EB2) points.
    for col, gain in (("EB1→gender-balanced test", 16), ("EB2→gender-balanced test", 20)):
        assert _v(refs, "blind_eye", "section6_2", "Blind", col) \
            - _v(refs, "blind_eye", "section6_2", "Baseline", col) == pytest.approx(gain)
    # Blind Eye Table 1: % unlearned = (baseline - blind) / (baseline - chance), to rounding.
    ul = refs[(refs["paper"] == "blind_eye") & (refs["artefact"] == "table1_unlearned")]
    for col, pct in zip(ul["column"], ul["value"]):
        b = _v(refs, "blind_eye", "table1", "Baseline", col)
        x = _v(refs, "blind_eye", "table1", "Blind", col)
        c = _v(refs, "blind_eye", "table1", "Random Chance", col)
        assert 100 * (b - x) / (b - c) == pytest.approx(pct, abs=1.0), col


def test_lnl_best_is_ours_in_every_table1_column(refs: pd.DataFrame):
    t1 = refs[(refs["paper"] == "lnl") & (refs["artefact"] == "table1")]
    for _, grp in t1.groupby("column"):
        assert grp.loc[grp["value"].idxmax(), "row"] == "Ours"


def test_reference_value_missing_key_raises(refs: pd.DataFrame):
    with pytest.raises(KeyError):
        reference_value(refs, "lnl", "table1", "Ours", "no such column")


def test_loader_tolerance_rules(tmp_path: Path):
    d = tmp_path / "toy"
    d.mkdir()
    header = ",".join(CSV_COLUMNS)
    (d / "a.csv").write_text(header + "\ntoy,a,M,c1,50.0,3.0,acc (%),,p. 1,\ntoy,a,M,c2,60.0,,acc (%),,p. 1,\n",
                             encoding="utf-8")
    (d / "b.csv").write_text(header + "\ntoy,b,M,c1,0.5,,acc,,p. 2,\n", encoding="utf-8")
    (d / "c.csv").write_text(header + "\ntoy,c,M,c1,120.0,,time (s),,p. 3,\n", encoding="utf-8")
    (d / "meta.json").write_text(json.dumps({
        "paper_id": "toy", "title": "t", "citation": "c", "default_tolerance": 2.0, "units": "percent",
        "artefacts": {
            "a": {"title": "a", "metric": "m", "tolerance": None},
            "b": {"title": "b", "metric": "m", "tolerance": 0.02, "units": "fraction"},
            "c": {"title": "c", "metric": "m", "tolerance": None, "units": "seconds",
                  "reproduction_target": False},
        }}), encoding="utf-8")
    df = load_references(tmp_path)
    assert list(df.columns) == CSV_COLUMNS + DERIVED_COLUMNS
    a1 = df[(df.artefact == "a") & (df.column == "c1")].iloc[0]
    a2 = df[(df.artefact == "a") & (df.column == "c2")].iloc[0]
    b = df[df.artefact == "b"].iloc[0]
    c = df[df.artefact == "c"].iloc[0]
    assert a1.tolerance == 2.0 and a1.effective_tolerance == 6.0 and a1.units == "percent"
    assert a2.tolerance == 2.0 and a2.effective_tolerance == 2.0 and math.isnan(a2["std"])
    assert b.tolerance == 0.02 and b.units == "fraction"
    assert math.isnan(c.tolerance) and not c.reproduction_target and c.units == "seconds"
    assert reference_value(df, "toy", "b", "M", "c1") == 0.5


def test_loader_rejects_missing_root(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        load_references(tmp_path / "nope")
