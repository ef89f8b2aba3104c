"""Tables from the result store: pure functions of the records, rendered to strings."""
from __future__ import annotations


import pandas as pd


def mean_std(values: pd.Series) -> str:
    v = values.dropna()
    if v.empty:
        return "—"
    if len(v) == 1:
        return f"{v.iloc[0]:.4f} (n=1)"
    return f"{v.mean():.4f} ± {v.std(ddof=1):.4f} (n={len(v)})"


def varying_params(df: pd.DataFrame) -> list[str]:
    """Dataset-parameter and budget columns whose value differs between rows."""
    cols = [c for c in df.columns if c.startswith("p.") and c != "p.seed"] + ["epochs", "max_train"]
    return [c for c in cols if c in df.columns and df[c].astype(str).nunique() > 1]


def method_by_setting_table(df: pd.DataFrame, metric: str = "test.acc", dataset: str | None = None) -> str:
    """Markdown: one table per dataset, rows = methods, columns = settings (e.g. σ²), cells = mean ± std
    over seeds of ``metric`` at the last epoch. Runs differing only by seed are pooled."""
    if df.empty:
        return "No stored runs yet: try `python -m benchmark run --method vanilla --dataset colored_mnist --quick`."
    if dataset is not None:
        df = df[df["dataset"] == dataset]
    if metric not in df.columns:
        raise ValueError(f"no metric column {metric!r}; available: "
                         f"{sorted(c for c in df.columns if '.' in c and not c.startswith(('p.', 'hp.')))}")
    out = []
    for ds, sub in df.groupby("dataset", sort=True):
        cols = varying_params(sub)
        key = sub[cols].astype(str).agg(", ".join, axis=1) if cols else pd.Series("all", index=sub.index)
        label = "; ".join(c.removeprefix("p.") for c in cols) or "setting"
        sub = sub.assign(_setting=key)
        table = sub.groupby(["method", "_setting"])[metric].apply(mean_std).unstack("_setting").fillna("—")
        table.index.name = "method"
        table.columns.name = None
        out.append(f"### {ds} — {metric} (last epoch; columns: {label})\n\n"
                   + table.to_markdown(tablefmt="github"))
    return "\n\n".join(out)


