"""Summaries of a results index: per-finding prevalence and score distribution, and trends by month.

Computed with pandas from `ResultsIndex.query` rows, so every query filter applies to the statistics too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cxrxai.labels import FINDINGS


def finding_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per finding: images, positives (decision present), prevalence, mean / median / 90th-centile score."""
    grouped = rows.groupby("finding")
    summary = pd.DataFrame(
        {
            "images": grouped.size(),
            "positives": grouped["present"].sum().astype(int),
            "prevalence": grouped["present"].mean(),
            "mean_probability": grouped["probability"].mean(),
            "median_probability": grouped["probability"].median(),
            "p90_probability": grouped["probability"].quantile(0.9),
        }
    )
    order = [name for name in FINDINGS if name in summary.index]
    return summary.loc[order].reset_index()


def prevalence_by_month(rows: pd.DataFrame) -> pd.DataFrame:
    """Prevalence of each finding (columns) per study month (rows, YYYY-MM); images without a study
    date are left out."""
    dated = rows.dropna(subset=["study_date"]).copy()
    dated["month"] = pd.to_datetime(dated["study_date"]).dt.strftime("%Y-%m")
    table = dated.pivot_table(index="month", columns="finding", values="present", aggfunc="mean")
    return table[[name for name in FINDINGS if name in table.columns]]


def write_plots(rows: pd.DataFrame, folder: Path) -> list[Path]:
    """prevalence_by_month.png and score_distributions.png in `folder`."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    monthly = prevalence_by_month(rows)
    figure, axis = plt.subplots(figsize=(10, 5))
    for name in monthly.columns:
        axis.plot(monthly.index, monthly[name], marker="o", label=name)
    axis.set_ylabel("prevalence (decision present)")
    axis.set_xlabel("study month")
    axis.set_ylim(0, 1)
    axis.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    written.append(folder / "prevalence_by_month.png")
    figure.savefig(written[-1], dpi=80)
    plt.close(figure)
    figure, axes = plt.subplots(3, 5, figsize=(15, 8), sharex=True)
    for axis, name in zip(axes.ravel(), FINDINGS, strict=False):
        scores = rows.loc[rows["finding"] == name, "probability"]
        axis.hist(scores, bins=np.linspace(0, 1, 21), color="tab:blue")
        axis.set_title(f"{name} (n = {len(scores)})", fontsize=8)
    axes.ravel()[-1].axis("off")
    figure.suptitle("Score distributions")
    figure.tight_layout()
    written.append(folder / "score_distributions.png")
    figure.savefig(written[-1], dpi=80)
    plt.close(figure)
    return written
