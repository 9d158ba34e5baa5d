"""The Markdown tables of the v1 results page (``experiments.study.page``): results per model,
the learning-rate check, base models, comparisons, and the run counts and times.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from experiments.study.lr_check import LrCheck
from experiments.study.table import (
    DocSettings,
    budget_text,
    display_name,
    main_arms,
    plus_minus,
    split_lr,
)
from experiments.study.verdicts import Comparison

__all__ = [
    "base_table",
    "comparisons_table",
    "finished_of_planned",
    "hours",
    "lr_section",
    "md_table",
    "mixed_bases",
    "results_table",
    "wall_time",
]


def md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _params_cell(row: Mapping[str, Any]) -> str:
    mean, std = row.get("trainable_params", math.nan), row.get("trainable_params_std", math.nan)
    if not math.isfinite(mean):
        return "-"
    if math.isfinite(std) and std > 0.5:
        return f"{mean:,.0f} ± {std:,.0f}"
    return f"{mean:,.0f}"


def _mean_std_cells(row: Mapping[str, Any], columns: Sequence[str]) -> list[str]:
    return [plus_minus(row.get(c, math.nan), row.get(f"{c}_std", math.nan)) for c in columns]


_TABLE_METRICS = ("new_domain_wer", "first_forgetting", "awer", "bwt")


def results_table(agg: pd.DataFrame, model: str, first_domain: str) -> str:
    """The main table of ``model`` (the learning-rate check has its own)."""
    rows = []
    for row in main_arms(agg[agg["model"] == model]).to_dict("records"):
        cells = [
            display_name(row["method"]),
            budget_text(row.get("budget", math.nan)),
            _params_cell(row),
            *_mean_std_cells(row, _TABLE_METRICS),
        ]
        lr = row.get("lr", math.nan)
        cells += [f"{lr:g}" if math.isfinite(lr) else "-", str(int(row.get("seeds", 0)))]
        rows.append(cells)
    header = [
        "method",
        "budget",
        "trainable params",
        "new-domain WER",
        f"{first_domain} forgetting",
        "AWER",
        "BWT",
        "lr",
        "seeds",
    ]
    return md_table(header, rows)


def _lr_table(check: LrCheck, agg: pd.DataFrame, first_domain: str) -> str:
    """One row per (method, learning rate) of the check: the metrics' mean ± std over seeds."""
    rows = []
    sub = agg[(agg["model"] == check.model) & (agg["budget"] == check.budget)]
    for label, lr, shipped in check.cells:
        for row in sub[sub["method"] == label].to_dict("records"):
            rows.append(
                [
                    display_name(split_lr(label)[0]),
                    f"{lr:g}" + (" (shipped)" if shipped else ""),
                    *_mean_std_cells(row, (*_TABLE_METRICS, "learning_mean", "forgetting_mean")),
                    str(int(row.get("seeds", 0))),
                ]
            )
    header = ["method", "lr", "new-domain WER", f"{first_domain} forgetting", "AWER", "BWT",
              "learning", "forgetting", "seeds"]  # fmt: skip
    return md_table(header, rows)


LR_CHECK_TEXT = """The shipped configs start from different learning rates (column *lr* of the tables above).
Here the methods of the check also ran at each other's rates, at the model's tightest budget
(SSVD-O at the reference share, the baselines matched to it), so they can be compared at equal
learning rates; *(shipped)* marks the main runs at a method's own rate. The comparisons follow
the rules of the claims (*a* = SSVD-O; lower WER is better). These runs are left out of the
tables, figures and verdicts above.
"""


def lr_section(checks: Sequence[LrCheck], agg: pd.DataFrame, first_domain: str) -> list[str]:
    out = ["## Learning-rate check", "", LR_CHECK_TEXT]
    for check in checks:
        out += [f"### {check.model} @ {budget_text(check.budget)}", ""]
        out += [_lr_table(check, agg, first_domain), ""]
        if check.comparisons:
            out += [comparisons_table(check.comparisons), ""]
        for sentence in check.sentences:
            out += [sentence, ""]
    return out


def _short_sha(value: Any) -> str:
    text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    return f"`{text[:12]}`" if text else "unrecorded"


def base_table(frame: pd.DataFrame, models: Sequence[str], domains: Sequence[str]) -> str:
    """One row per model and base (weights fingerprint): pretraining seed, stream, runs, WER."""
    rows = []
    for model in models:
        sub = frame[frame["model"] == model]
        if sub.empty:
            continue
        shas = sub.get("base_weights_sha", pd.Series("", index=sub.index)).fillna("")
        for sha, part in sub.groupby(shas, sort=True):
            seeds = part.get("pretrain_seed", pd.Series(dtype=float)).dropna().unique()
            streams = part.get("base_stream_sha", pd.Series(dtype=str)).dropna().unique()
            cells = [
                model,
                _short_sha(sha),
                ", ".join(f"{int(s)}" for s in sorted(seeds)) or "-",
                ", ".join(_short_sha(s) for s in sorted(streams)) or "unrecorded",
                str(len(part)),
            ]
            for d in domains:
                col = part.get(f"base_wer/{d}", pd.Series(dtype=float)).dropna()
                cells.append(f"{col.mean():.1f}" if not col.empty else "-")
            rows.append(cells)
    return md_table(["model", "base weights", "pretrain seed", "stream", "runs", *domains], rows)


def mixed_bases(frame: pd.DataFrame) -> list[str]:
    """Sentences naming each model whose runs used more base weights than pretraining seeds
    (the same configuration gave different bases, or a base was replaced mid-study), or whose
    runs' bases were trained on different streams. Empty when every run's base is accounted
    for."""
    if frame.empty or "base_weights_sha" not in frame:
        return []
    out = []
    for model, sub in frame.groupby("model", sort=True):
        shas = {str(s) for s in sub["base_weights_sha"].fillna("") if str(s)}
        seeds = sub.get("pretrain_seed", pd.Series(dtype=float)).dropna().unique()
        streams = {str(s) for s in sub.get("base_stream_sha", pd.Series(dtype=str)).dropna()
                   if str(s)}  # fmt: skip
        if len(shas) > max(len(seeds), 1):
            out.append(
                f"model {model}: its runs used {len(shas)} different base models "
                f"({', '.join(_short_sha(s) for s in sorted(shas))}) for {max(len(seeds), 1)} "
                "pretraining seed(s): results over different bases are mixed below"
            )
        if len(streams) > 1:
            out.append(
                f"model {model}: its bases were trained on {len(streams)} different streams "
                f"({', '.join(_short_sha(s) for s in sorted(streams))})"
            )
    return out


def comparisons_table(comps: Sequence[Comparison]) -> str:
    rows = [
        [
            c.label,
            f"{c.name_a} {plus_minus(c.mean_a, c.std_a, 2)}",
            f"{c.name_b} {plus_minus(c.mean_b, c.std_b, 2)}",
            f"{c.advantage:+.2f}" if math.isfinite(c.advantage) else "-",
            f"{c.threshold:.2f}" if math.isfinite(c.threshold) else "n/a",
            c.outcome,
        ]
        for c in comps
    ]
    return md_table(
        ["where", "claimed better (a)", "other (b)", "a better by", "threshold", "outcome"], rows
    )


def finished_of_planned(frame: pd.DataFrame, settings: DocSettings) -> str:
    """``63 of 69 planned (small 63 of 63, medium 0 of 6)``, or the count when nothing is planned."""
    if not settings.planned_runs:
        return str(len(frame))
    done = frame["model"].value_counts()
    per_model = ", ".join(
        f"{m} {int(done.get(m, 0))} of {n}" for m, n in settings.planned_runs.items()
    )
    return f"{len(frame)} of {sum(settings.planned_runs.values())} planned ({per_model})"


def hours(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "unknown"
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def wall_time(meta: Mapping[str, Any]) -> str:
    """``2.10 h (2 invocations, finished)``: the study's wall time over all its invocations."""
    notes = []
    invocations = int(meta.get("invocations") or 1)
    if invocations > 1:
        notes.append(f"{invocations} invocations")
    if meta.get("status"):
        notes.append(str(meta["status"]).lower())
    wall = hours(float(meta.get("wall_seconds", math.nan)))
    return wall + (f" ({', '.join(notes)})" if notes else "")
