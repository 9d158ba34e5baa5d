"""v2: the results page's figures (matplotlib, Agg backend), drawn from its CSVs.

- :func:`front_figure`: learning vs forgetting, one point per arm configuration (mean over
  runs) with its 95 % CI bars (``summary.csv``); the front (no other configuration learns
  more and forgets less) joined by a dashed line;
- :func:`matrices_figure`: the mean WER matrix of each configuration (``wer_matrices.csv``);
- :func:`voices_figure`: final WER per test voice (rows) and configuration (columns), pooled
  over the configuration's runs (``voices.csv``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from experiments.plots import save  # noqa: E402
from experiments.study.table import pareto_front  # noqa: E402

__all__ = ["front_figure", "matrices_figure", "voices_figure"]

_MAX_ANNOTATED = 400  # cells; above, the heatmap is not annotated (the numbers are in the CSV)


def _err(mean: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``[2, n]`` error-bar lengths; 0 where the CI is unknown (fewer than two runs)."""
    below = np.nan_to_num(mean - low, nan=0.0)
    above = np.nan_to_num(high - mean, nan=0.0)
    return np.vstack([np.clip(below, 0, None), np.clip(above, 0, None)])


def front_figure(summary: pd.DataFrame, path: str | Path, title: str) -> Path | None:
    """Learning (x, higher is better) vs forgetting (y, lower is better) per configuration."""
    ok = summary[np.isfinite(summary["learning"]) & np.isfinite(summary["forgetting"])]
    if ok.empty:
        return None
    fig, ax = plt.subplots(figsize=(8.5, 5.5))
    cmap = plt.get_cmap("tab20")
    for i, row in enumerate(ok.to_dict("records")):
        x, y = np.array([row["learning"]]), np.array([row["forgetting"]])
        ax.errorbar(
            x, y,
            xerr=_err(x, np.array([row["learning_low"]]), np.array([row["learning_high"]])),
            yerr=_err(y, np.array([row["forgetting_low"]]), np.array([row["forgetting_high"]])),
            fmt="o", capsize=3, color=cmap(i % 20), label=f"{row['config']} (n={int(row['runs'])})",
        )  # fmt: skip
    points = [{"learning": r["learning"], "forgetting": r["forgetting"]}
              for r in ok.to_dict("records")]  # fmt: skip
    front = pareto_front(points)
    if len(front) >= 2:
        ax.plot([p["learning"] for p in front], [p["forgetting"] for p in front], "--",
                color="grey", linewidth=1.0, zorder=0)  # fmt: skip
    ax.set_xlabel("learning: WER points gained on the domain just trained (higher is better)")
    ax.set_ylabel("forgetting: WER points lost on earlier domains (lower is better)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return save(fig, path)


def _annotate(ax, data: np.ndarray, image) -> None:
    if data.size > _MAX_ANNOTATED:
        return
    finite = data[np.isfinite(data)]
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            value = data[i, j]
            if not math.isfinite(value):
                continue
            rgba = image.cmap(image.norm(value) if finite.size else 0.5)
            dark = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2] < 0.5
            ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")  # fmt: skip


def matrices_figure(
    matrices: pd.DataFrame, configs: Sequence[str], domains: Sequence[str], path: str | Path
) -> Path | None:
    """One panel per configuration: the mean over its runs of ``R[row, domain]``."""
    panels = []
    for config in configs:
        part = matrices[matrices["config"] == config]
        if part.empty:
            continue
        mean = part.groupby(["row", "domain"])["wer"].mean()
        n_rows = len(domains) + 1
        R = np.full((n_rows, len(domains)), np.nan)
        for (row, domain), value in mean.items():
            if domain in domains and 0 <= int(row) < n_rows:
                R[int(row), list(domains).index(domain)] = value
        panels.append((config, part["run_id"].nunique(), R))
    if not panels:
        return None
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    finite = np.concatenate([R[np.isfinite(R)] for _, _, R in panels])
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    labels = ["base"] + [f"after {d}" for d in domains]
    for ax, (config, n, R) in zip(axes.flat, panels, strict=False):
        image = ax.imshow(np.ma.masked_invalid(R), cmap="viridis_r", aspect="auto",
                          vmin=vmin, vmax=vmax)  # fmt: skip
        ax.set_xticks(range(len(domains)), labels=list(domains), rotation=45, ha="right",
                      fontsize=7)  # fmt: skip
        ax.set_yticks(range(len(labels)), labels=labels, fontsize=7)
        ax.set_title(f"{config} (n={n})", fontsize=9)
        _annotate(ax, R, image)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle("Mean WER (%) after each experience (rows) on each domain (columns)")
    fig.tight_layout()
    return save(fig, path)


def voices_figure(
    voices: pd.DataFrame, configs: Sequence[str], domains: Sequence[str], path: str | Path
) -> Path | None:
    """Final WER per test voice (``domain/speaker``, in stream order) and configuration."""
    if voices.empty:
        return None
    table = voices.pivot_table(index="voice", columns="config", values="wer", aggfunc="mean")
    order = [c for c in configs if c in table.columns]
    rank = {d: i for i, d in enumerate(domains)}
    keys = voices.drop_duplicates("voice").set_index("voice")
    rows = sorted(table.index, key=lambda v: (rank.get(keys.at[v, "domain"], len(rank)),
                                              str(keys.at[v, "speaker"])))  # fmt: skip
    table = table.loc[rows, order]
    data = table.to_numpy(float)
    fig, ax = plt.subplots(
        figsize=(2.5 + 0.9 * len(order), 1.5 + 0.28 * len(table.index))
    )  # fmt: skip
    image = ax.imshow(np.ma.masked_invalid(data), cmap="viridis_r", aspect="auto")
    ax.set_xticks(range(len(order)), labels=order, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(table.index)), labels=list(table.index), fontsize=7)
    ax.set_xlabel("arm configuration")
    ax.set_ylabel("test voice (domain/speaker)")
    ax.set_title("Final WER (%) per test voice, pooled over each configuration's runs")
    _annotate(ax, data, image)
    fig.colorbar(image, ax=ax, label="WER (%)", fraction=0.046, pad=0.04)
    return save(fig, path)
