"""``cl-ssvdo report RUN_DIR``: a run (or sweep) folder as Markdown: matrices, continual
metrics, trainable parameters per experience, the budget per experience and where the run is
tracked. Reads only the folder, so it works offline; ``--sync`` also pushes it to the store.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from cl_ssvdo import metrics
from experiments.compare import frame_to_text
from experiments.results import SUMMARY_SCALARS, RunResult, format_matrix
from experiments.run_dir import RunDir

__all__ = ["report_run_dir"]


def _metric_lines(summary: dict) -> list[str]:
    lines = ["| metric | value |", "|---|---|"]
    for key in SUMMARY_SCALARS:
        value = summary.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            lines.append(f"| {key} | {value:.2f} |")
    for key in ("learning", "im", "fwt"):
        if summary.get(key):
            lines.append(
                f"| {key} per experience | {', '.join(f'{v:.2f}' for v in summary[key])} |"
            )
    return lines


def _report_sweep(folder: RunDir) -> str:
    state = folder.state()
    lines = [f"# Sweep {state.get('run_name')} ({state.get('status')})", ""]
    csv = folder.artifacts / "comparison.csv"
    if csv.is_file():
        lines += [frame_to_text(pd.read_csv(csv), markdown=True), ""]
    for label, child in (state.get("child_dirs") or {}).items():
        lines.append(f"- {label}: {child}")
    lines.append(_tracking_line(state))
    return "\n".join(lines)


def _tracking_line(state: dict) -> str:
    tracked = state.get("mlflow") or {}
    if tracked.get("synced"):
        return f"\nMLflow: run {tracked.get('run_id')} in {tracked.get('tracking_uri')}"
    return "\nMLflow: not synced (cl-ssvdo sync FOLDER)"


def report_run_dir(path: str | Path) -> str:
    """Markdown report of a run folder (partial runs included) or a sweep folder."""
    folder = RunDir(path)
    state = folder.state()
    if not state:
        raise FileNotFoundError(f"{path}: not a run folder (no state.json)")
    if state.get("kind") == "sweep":
        return _report_sweep(folder)
    if not state.get("wer"):
        return f"# {state.get('run_name', folder.path.name)}: no evaluation yet ({state.get('status')})"
    result = RunResult.from_run_dir(folder.path)
    lines = [
        f"# {result.name} ({state.get('status')}, strategy {state.get('strategy')}, mode {state.get('mode')})",
        f"base model {state.get('base_model')}; {len(result.wer) - 1}/{len(result.domains)} experiences done",
        "",
        "```",
        format_matrix(result.wer, result.domains, "WER (%)"),
        "",
        format_matrix(result.cer, result.domains, "CER (%)"),
    ]
    if len(result.wer) >= 2:
        forgetting = metrics.forgetting_matrix(np.asarray(result.wer))
        lines += ["", format_matrix(forgetting.tolist(), result.domains, "Forgetting (WER points)")]
    lines += ["```", ""]
    summary = result.summary or (
        metrics.summarize(np.asarray(result.wer)) if len(result.wer) >= 2 else {}
    )
    lines += _metric_lines(summary)
    if result.trainable:
        lines += [
            "",
            "Trainable parameters: "
            + ", ".join(f"exp{k} {v:,}" for k, v in sorted(result.trainable.items())),
        ]
    budget = folder.artifacts / "budget_table.json"
    if budget.is_file():
        rows = pd.DataFrame(json.loads(budget.read_text()))
        if not rows.empty and "trainable" in rows:
            per_exp = rows.groupby("experience")["trainable"].sum()
            lines.append(
                "Budget per experience (sum over layers): "
                + ", ".join(f"exp{int(k)} {int(v):,}" for k, v in per_exp.items())
            )
    lines.append(_tracking_line(state))
    return "\n".join(lines)
