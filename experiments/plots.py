"""Figures for runs and comparisons (matplotlib, Agg backend; no display needed).

- :func:`matrix_heatmap`: an annotated heatmap of a WER or forgetting matrix
  (rows = "base", "after <domain>", ...; columns = evaluation domains; NaN cells left blank).
- :func:`learning_forgetting_scatter`: one point per run, marker area proportional to the
  trainable parameters.
- :func:`wer_vs_params`: a metric against trainable parameters, one line per method.
- :func:`layer_diagnostics`: what an adapter moved, per layer over experiences (rotation angles,
  relative weight change; rows of the run's budget table).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = [
    "layer_diagnostics",
    "learning_forgetting_scatter",
    "matrix_heatmap",
    "save",
    "wer_vs_params",
]


def save(fig: Figure, path: str | Path) -> Path:
    """Save ``fig`` as PNG (150 dpi) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return path


def matrix_heatmap(
    matrix: Sequence[Sequence[float]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    title: str,
    *,
    cmap: str = "viridis_r",
    value_label: str = "WER (%)",
    fmt: str = "{:.1f}",
    center_zero: bool = False,
) -> Figure:
    """Annotated heatmap of ``matrix`` [rows, cols]; NaN cells are drawn blank.

    ``center_zero`` uses a diverging map symmetric around 0 (for forgetting / BWT deltas).

    Example
    -------
    >>> fig = matrix_heatmap([[50.0, 90.0], [20.0, 60.0]], ["base", "after a"], ["a", "b"], "WER")
    >>> len(fig.axes[0].texts)
    4
    """
    data = np.asarray(matrix, dtype=float)
    if data.shape != (len(row_labels), len(col_labels)):
        raise ValueError(
            f"matrix shape {data.shape} does not match labels ({len(row_labels)}, {len(col_labels)})"
        )
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(col_labels), 1.0 + 0.6 * len(row_labels)))
    finite = data[np.isfinite(data)]
    kwargs = {}
    if center_zero and finite.size:
        bound = max(float(np.abs(finite).max()), 1e-9)
        kwargs = {"vmin": -bound, "vmax": bound}
        cmap = "RdBu_r" if cmap == "viridis_r" else cmap
    image = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, aspect="auto", **kwargs)
    ax.set_xticks(range(len(col_labels)), labels=list(col_labels))
    ax.set_yticks(range(len(row_labels)), labels=list(row_labels))
    ax.set_xlabel("evaluated on")
    ax.set_ylabel("trained up to")
    ax.set_title(title)
    norm = image.norm
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            value = data[i, j]
            if not math.isfinite(value):
                continue
            shade = norm(value) if finite.size else 0.5
            rgba = image.cmap(shade)
            dark = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2] < 0.5
            ax.text(
                j,
                i,
                fmt.format(value),
                ha="center",
                va="center",
                color="white" if dark else "black",
                fontsize=9,
            )
    fig.colorbar(image, ax=ax, label=value_label, fraction=0.046, pad=0.04)
    return fig


def _sizes(params: Sequence[float], smallest: float = 40.0, largest: float = 600.0) -> np.ndarray:
    """Marker areas proportional to parameters (the largest run gets ``largest``), floored at
    ``smallest`` so tiny runs stay visible; near-equal budgets get near-equal markers."""
    values = np.asarray([max(float(p), 1.0) for p in params])
    if values.size == 0:
        return values
    return np.clip(largest * values / values.max(), smallest, largest)


# Up to 20 distinguishable colours: tab20's dark shades first, then its light ones.
_PALETTE = [plt.cm.tab20(i) for i in (*range(0, 20, 2), *range(1, 20, 2))]
_MAX_LABELLED = 10  # above this many points, per-point labels collide: the legend names groups


def _colours(groups: Sequence[str]) -> dict[str, tuple[float, ...]]:
    return {g: _PALETTE[i % len(_PALETTE)] for i, g in enumerate(groups)}


def _legend_outside(ax) -> None:
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def learning_forgetting_scatter(
    points: Sequence[Mapping[str, float | str]], title: str = "Learning vs forgetting"
) -> Figure:
    """One point per run: x = mean learning (WER points gained on new domains, higher is
    better), y = mean forgetting (WER points lost on earlier domains, lower is better),
    marker area proportional to trainable parameters. Each point: ``label``, ``learning``,
    ``forgetting``, ``params`` (optional ``group`` colours points by method). Points are
    labelled on the plot only when there are at most ten; the legend always names the groups."""
    fig, ax = plt.subplots(figsize=(8.0, 4.8))
    groups = list(dict.fromkeys(str(p.get("group", p["label"])) for p in points))
    colours = _colours(groups)
    labelled = len(points) <= _MAX_LABELLED
    sizes = _sizes([float(p.get("params", 1.0) or 1.0) for p in points])
    seen: set[str] = set()
    for point, size in zip(points, sizes, strict=True):
        group = str(point.get("group", point["label"]))
        ax.scatter(
            float(point["learning"]),
            float(point["forgetting"]),
            s=size,
            color=colours[group],
            alpha=0.7,
            edgecolors="black",
            linewidths=0.5,
            label=group if group not in seen else None,
        )
        seen.add(group)
        if not labelled:
            continue
        params = float(point.get("params", 0) or 0)
        ax.annotate(
            f"{point['label']}\n{params:,.0f} p",
            (float(point["learning"]), float(point["forgetting"])),
            textcoords="offset points",
            xytext=(6, 4),
            fontsize=7,
        )
    ax.set_xlabel("learning (WER points gained on the new domain, mean)")
    ax.set_ylabel("forgetting (WER points lost on earlier domains, mean)")
    ax.axhline(0.0, color="grey", linewidth=0.5)
    ax.margins(0.15)  # room for the largest markers and their labels
    ax.set_title(title + "  (marker size: trainable parameters)")
    if groups:
        _legend_outside(ax)
        for handle in ax.get_legend().legend_handles:
            handle.set_sizes([40.0])  # legend markers at one size; sizes encode parameters
    ax.grid(alpha=0.3)
    return fig


def wer_vs_params(
    points: Sequence[Mapping[str, float | str]],
    metric: str = "final_awer",
    title: str = "WER vs trainable parameters",
    ylabel: str = "final AWER (%)",
) -> Figure:
    """``metric`` against trainable parameters (log x), one line per ``group`` (method);
    points need ``group``, ``params`` and ``metric``."""
    fig, ax = plt.subplots(figsize=(8.0, 4.5))
    by_group: dict[str, list[tuple[float, float]]] = {}
    for point in points:
        value = point.get(metric)
        if value is None or not math.isfinite(float(value)):
            continue
        by_group.setdefault(str(point.get("group", point.get("label"))), []).append(
            (max(float(point.get("params", 1.0) or 1.0), 1.0), float(value))
        )
    colours = _colours(list(by_group))
    for group, xy in by_group.items():
        xy.sort()
        ax.plot(
            [x for x, _ in xy], [y for _, y in xy], marker="o", label=group, color=colours[group]
        )
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    if by_group:
        _legend_outside(ax)
    return fig


# Figures of :mod:`cl_ssvdo.ssvdo.diagnostics` drawn by :func:`layer_diagnostics`; angles are
# recorded in radians and drawn in degrees.
_DIAGNOSTIC_PANELS = (
    ("inner_angle", "inner rotation angle (deg)", True),
    ("outer_angle_max", "largest outer principal angle (deg)", True),
    ("weight_change", "||dW||_F / ||W0||_F of the experience", False),
)


def layer_diagnostics(rows: Sequence[Mapping[str, object]], title: str = "What moved") -> Figure:
    """One panel per figure present in ``rows`` (inner angle, largest outer angle, relative
    weight change), x = experience, one line per layer. ``rows``: the run's budget table
    (``experience``, ``layer`` and the figures; rows without a figure are skipped).

    Example
    -------
    >>> rows = [{"experience": e, "layer": "ffn.0", "inner_angle": 0.1 * e,
    ...          "weight_change": 0.01 * e} for e in (1, 2, 3)]
    >>> [ax.get_ylabel() for ax in layer_diagnostics(rows).axes]
    ['inner rotation angle (deg)', '||dW||_F / ||W0||_F of the experience']
    """
    panels = [p for p in _DIAGNOSTIC_PANELS if any(p[0] in row for row in rows)]
    if not panels:
        raise ValueError(
            f"layer_diagnostics: no row has any of {[p[0] for p in _DIAGNOSTIC_PANELS]}"
        )
    layers = list(dict.fromkeys(str(row["layer"]) for row in rows))
    colours = {name: plt.cm.viridis(i / max(len(layers) - 1, 1)) for i, name in enumerate(layers)}
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 2.5, 3.6), squeeze=False)
    for ax, (key, label, degrees) in zip(axes[0], panels, strict=True):
        for name in layers:
            xy = sorted(
                (int(row["experience"]), float(row[key]))
                for row in rows
                if str(row["layer"]) == name and row.get(key) is not None
            )
            if not xy:
                continue
            scale = 180.0 / math.pi if degrees else 1.0
            ax.plot(
                [x for x, _ in xy],
                [y * scale for _, y in xy],
                marker="o",
                markersize=3,
                color=colours[name],
                label=name,
            )
        ax.set_xlabel("experience")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(title)
    fig.tight_layout()
    return fig
