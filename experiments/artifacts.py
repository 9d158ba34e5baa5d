"""Per-run artifacts: matrices as CSV + JSON + annotated PNG, long-format tables, budget table.

Matrices are ``(N+1) x N``: row 0 is the base model before any adaptation, row i the model
after training experience i; column j the evaluation domain j (stream order). The JSON form is
``{"rows": [...], "columns": [...], "values": [[...]], "name": ...}`` with ``null`` for NaN.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.plots import matrix_heatmap, save

__all__ = [
    "budget_frame",
    "long_table",
    "matrix_from_json",
    "row_labels",
    "write_matrix",
]


def row_labels(domains: Sequence[str], n_rows: int | None = None) -> list[str]:
    """``["base", "after adult", "after child", ...]`` (``n_rows`` defaults to N+1)."""
    labels = ["base"] + [f"after {d}" for d in domains]
    return labels[: n_rows if n_rows is not None else len(labels)]


def _clean(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def write_matrix(
    matrix: Sequence[Sequence[float]],
    domains: Sequence[str],
    folder: str | Path,
    stem: str,
    title: str,
    *,
    value_label: str = "WER (%)",
    center_zero: bool = False,
    rows: Sequence[str] | None = None,
    png: bool = True,
) -> list[Path]:
    """Write ``<stem>.csv``, ``<stem>.json`` and (``png``) ``<stem>.png`` under ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    values = [[_clean(v) for v in row] for row in matrix]
    labels = list(rows) if rows is not None else row_labels(domains, len(values))
    frame = pd.DataFrame(
        [[math.nan if v is None else v for v in row] for row in values],
        index=pd.Index(labels, name="trained_up_to"),
        columns=list(domains),
    )
    csv = folder / f"{stem}.csv"
    frame.to_csv(csv, float_format="%.4f")
    js = folder / f"{stem}.json"
    js.write_text(
        json.dumps(
            {"name": stem, "rows": labels, "columns": list(domains), "values": values}, indent=2
        )
    )
    if not png:
        return [csv, js]
    fig = matrix_heatmap(
        frame.to_numpy(dtype=float),
        labels,
        list(domains),
        title,
        value_label=value_label,
        center_zero=center_zero,
    )
    png = save(fig, folder / f"{stem}.png")
    return [csv, js, png]


def matrix_from_json(path: str | Path) -> tuple[list[list[float]], list[str], list[str]]:
    """Read a matrix JSON written by :func:`write_matrix`: ``(values, rows, columns)``; null -> NaN."""
    data = json.loads(Path(path).read_text())
    values = [[math.nan if v is None else float(v) for v in row] for row in data["values"]]
    return values, data["rows"], data["columns"]


def long_table(
    matrix: Sequence[Sequence[float]], domains: Sequence[str], value: str = "wer"
) -> pd.DataFrame:
    """Long format for ``log_table``: columns ``train_exp`` (0 = base), ``train_domain``
    ("base" or the domain trained last), ``eval_domain`` and ``value`` (NaN cells dropped)."""
    records = []
    for i, row in enumerate(matrix):
        for j, cell in enumerate(row):
            cell = _clean(cell)
            if cell is None:
                continue
            records.append(
                {
                    "train_exp": i,
                    "train_domain": "base"
                    if i == 0
                    else domains[i - 1]
                    if i - 1 < len(domains)
                    else f"exp{i}",
                    "eval_domain": domains[j],
                    value: cell,
                }
            )
    return pd.DataFrame.from_records(
        records, columns=["train_exp", "train_domain", "eval_domain", value]
    )


def budget_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Per-layer budget table: one row per (experience, layer), columns as given (at least
    ``experience``, ``layer``, ``trainable``); sorted by experience then layer."""
    frame = pd.DataFrame.from_records(list(rows))
    if frame.empty:
        return pd.DataFrame(columns=["experience", "layer", "trainable"])
    keys = [k for k in ("experience", "layer") if k in frame.columns]
    return frame.sort_values(keys).reset_index(drop=True) if keys else frame
