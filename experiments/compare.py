"""Comparisons across runs: one row per run (final metrics, trainable parameters), an optional
mean +- std over seeds, a learning-vs-forgetting scatter and a WER-vs-parameters plot.

:func:`compare_runs` reads only from the tracking store (``MlflowClient``: runs, metrics, params,
tags), so it works the same against a remote server. :func:`comparison_frame` builds the
table from plain rows; sweeps use it with their children's local results.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.plots import learning_forgetting_scatter, save, wer_vs_params
from experiments.results import SUMMARY_SCALARS
from experiments.tracking import check_tracking, find_experiment_ids, get_client

__all__ = [
    "CompareResult",
    "aggregate_seeds",
    "compare_runs",
    "comparison_frame",
    "frame_to_text",
    "row_from_mlflow",
    "to_number",
    "write_comparison",
]

METRIC_COLUMNS = SUMMARY_SCALARS
ID_COLUMNS = ("run", "strategy", "adapter", "budget", "seed", "trainable_params")


@dataclass
class CompareResult:
    frame: pd.DataFrame
    table_text: str
    files: list[Path] = field(default_factory=list)


def comparison_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """A table with the identifying columns first, then the metrics, then ``wer/<domain>``."""
    frame = pd.DataFrame.from_records(list(rows))
    if frame.empty:
        return pd.DataFrame(columns=[*ID_COLUMNS, *METRIC_COLUMNS])
    wer_cols = sorted(c for c in frame.columns if c.startswith("wer/"))
    ordered = [c for c in (*ID_COLUMNS, *METRIC_COLUMNS, *wer_cols) if c in frame.columns]
    rest = [c for c in frame.columns if c not in ordered]
    sort_keys = [c for c in ("strategy", "budget", "seed") if c in frame.columns]
    frame = frame[ordered + rest]
    return (
        frame.sort_values(sort_keys, na_position="first").reset_index(drop=True)
        if sort_keys
        else frame
    )


def aggregate_seeds(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per (strategy, adapter, budget): ``<metric>`` and ``<metric>_std``."""
    if frame.empty:
        return frame
    keys = [c for c in ("strategy", "adapter", "budget") if c in frame.columns]
    numeric = [
        c
        for c in frame.columns
        if c not in (*keys, "run", "run_id", "seed") and pd.api.types.is_numeric_dtype(frame[c])
    ]
    grouped = frame.groupby(keys, dropna=False)[numeric]
    mean, std = grouped.mean(), grouped.std(ddof=1)
    out = mean.join(std.add_suffix("_std"))
    out.insert(0, "seeds", frame.groupby(keys, dropna=False).size())
    return out.reset_index()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.2f}"
    return str(value)


# Printed first when a table must fit a terminal width (the rest stays in compare.csv).
PRIORITY = ("run", "awer", "bwt", "trainable_params", "forgetting_mean", "learning_mean")
MAX_RUN_NAME = 30


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "~"


def frame_to_text(frame: pd.DataFrame, markdown: bool = False, max_width: int | None = None) -> str:
    """A fixed-width (or Markdown) rendering without extra dependencies.

    With ``max_width`` (text only) the table fits that many characters: run names are cut to
    30 characters (``~`` marks a cut), the columns of :data:`PRIORITY` come first and the
    columns that do not fit are named in a last line (they are in the CSV).
    """
    if frame.empty:
        return "(no runs)"
    cols = list(frame.columns)
    cells = [[_fmt(v) for v in row] for row in frame.itertuples(index=False)]
    if markdown:
        lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in cells]
        return "\n".join(lines)
    omitted: list[str] = []
    if max_width:
        order = [c for c in PRIORITY if c in cols] + [c for c in cols if c not in PRIORITY]
        if "run" in cols:
            i = cols.index("run")
            for row in cells:
                row[i] = _shorten(row[i], MAX_RUN_NAME)
        kept, used = [], -2
        for c in order:
            i = cols.index(c)
            width = max(len(c), *(len(r[i]) for r in cells))
            if used + 2 + width <= max_width:
                kept.append(i)
                used += 2 + width
            else:
                omitted.append(c)
        cols, cells = [cols[i] for i in kept], [[r[i] for i in kept] for r in cells]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    align = [str.ljust if c == "run" else str.rjust for c in cols]
    lines = ["  ".join(a(c, w) for a, c, w in zip(align, cols, widths, strict=True))]
    lines += [
        "  ".join(a(v, w) for a, v, w in zip(align, row, widths, strict=True)) for row in cells
    ]
    if omitted:
        note = f"({len(omitted)} more columns in the CSV: {', '.join(omitted)})"
        lines.append(textwrap.fill(note, max_width))
    return "\n".join(lines)


def _points(frame: pd.DataFrame) -> list[dict[str, Any]]:
    points = []
    for row in frame.to_dict("records"):
        budget = row.get("budget")
        group = str(row.get("strategy"))
        points.append(
            {
                "label": str(row.get("run")),
                "group": group,
                "learning": row.get("learning_mean", math.nan),
                "forgetting": row.get("forgetting_mean", math.nan),
                "params": row.get("trainable_params", 1) or 1,
                "awer": row.get("awer", math.nan),
                "budget": budget,
            }
        )
    return [
        p
        for p in points
        if all(
            isinstance(p[k], int | float) and math.isfinite(p[k])
            for k in ("learning", "forgetting")
        )
    ]


def write_comparison(frame: pd.DataFrame, out_dir: str | Path, title: str = "runs") -> list[Path]:
    """``comparison.csv``, ``comparison.md``, ``learning_vs_forgetting.png``,
    ``wer_vs_params.png`` (and ``comparison_by_seed.csv`` when several seeds) in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "comparison.csv", out / "comparison.md"]
    frame.to_csv(files[0], index=False)
    text = f"# Comparison: {title}\n\n" + frame_to_text(frame, markdown=True) + "\n"
    if "seed" in frame.columns and frame["seed"].nunique() > 1:
        agg = aggregate_seeds(frame)
        agg.to_csv(out / "comparison_by_seed.csv", index=False)
        files.append(out / "comparison_by_seed.csv")
        text += "\n## Mean and std over seeds\n\n" + frame_to_text(agg, markdown=True) + "\n"
    files[1].write_text(text)
    points = _points(frame)
    files.append(
        save(
            learning_forgetting_scatter(points, title=f"Learning vs forgetting: {title}"),
            out / "learning_vs_forgetting.png",
        )
    )
    files.append(
        save(
            wer_vs_params(points, metric="awer", title=f"Final AWER vs parameters: {title}"),
            out / "wer_vs_params.png",
        )
    )
    return files


def to_number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _seed(value: Any) -> int:
    number = to_number(value)
    return -1 if math.isnan(number) else int(number)


def row_from_mlflow(run) -> dict[str, Any]:
    """One comparison row from an ``mlflow.entities.Run`` (latest metric values)."""
    metrics, params, tags = run.data.metrics, run.data.params, run.data.tags
    row: dict[str, Any] = {
        "run": run.info.run_name,
        "run_id": run.info.run_id,
        "strategy": tags.get("cl_ssvdo.strategy", params.get("config.strategy.name", "?")),
        "adapter": tags.get("cl_ssvdo.adapter", "none"),
        "budget": to_number(tags.get("cl_ssvdo.budget")),
        "seed": _seed(params.get("seed", tags.get("cl_ssvdo.seed"))),
        "trainable_params": metrics.get("trainable_params_max", math.nan),
    }
    for key in METRIC_COLUMNS:
        row[key] = metrics.get(key, math.nan)
    for key, value in metrics.items():
        if key.startswith("wer/"):
            row[key] = value
    return row


def compare_runs(
    tracking_uri: str,
    *,
    experiments: Sequence[str] | None = None,
    parent_run_id: str | None = None,
    run_ids: Sequence[str] | None = None,
    out_dir: str | Path | None = None,
    finished_only: bool = True,
    max_width: int | None = 100,
) -> CompareResult:
    """Table (+ plots when ``out_dir``) of the runs in the store: the given ``run_ids``, or the
    children of ``parent_run_id``, or every continual run in ``experiments`` (sweep parents
    excluded). ``table_text`` fits ``max_width`` characters (None: every column)."""
    check_tracking(tracking_uri)
    client = get_client(tracking_uri)
    if run_ids:
        runs = [client.get_run(r) for r in run_ids]
    else:
        ids = find_experiment_ids(client, list(experiments) if experiments else None)
        filters = [f"tags.`mlflow.parentRunId` = '{parent_run_id}'"] if parent_run_id else []
        if finished_only:
            filters.append("attributes.status = 'FINISHED'")
        runs = client.search_runs(ids, filter_string=" and ".join(filters), max_results=50000)
        runs = [r for r in runs if r.data.tags.get("cl_ssvdo.kind") != "sweep"]
    frame = comparison_frame([row_from_mlflow(r) for r in runs])
    files = (
        write_comparison(frame, out_dir, title=parent_run_id or ", ".join(experiments or ["all"]))
        if out_dir
        else []
    )
    text = frame_to_text(frame, max_width=max_width)
    return CompareResult(frame=frame, table_text=text, files=files)
