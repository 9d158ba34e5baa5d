"""A run's results: the metric maths (``cl_ssvdo.metrics``, never reimplemented here), the
files written to the run folder, and the text summary printed at the end of a run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cl_ssvdo import metrics
from experiments.artifacts import budget_frame, long_table, row_labels, write_matrix
from experiments.run_dir import RunDir

__all__ = [
    "RunResult",
    "format_matrix",
    "format_result",
    "partial_summary",
    "step_metrics",
    "write_final_artifacts",
    "write_matrices",
]

SUMMARY_SCALARS = (
    "awer",
    "bwt",
    "forgetting_mean",
    "forgetting_max",
    "learning_mean",
    "im_mean",
    "fwt_mean",
)


@dataclass
class RunResult:
    """What a finished run produced (also readable back from its folder)."""

    run_dir: Path
    name: str
    seed: int
    domains: list[str]
    wer: list[list[float]]
    cer: list[list[float]]
    summary: dict[str, Any]
    trainable: dict[int, int] = field(default_factory=dict)
    run_id: str | None = None
    tracking_uri: str | None = None
    synced: bool = False

    @classmethod
    def from_run_dir(cls, path: str | Path) -> RunResult:
        folder = RunDir(path)
        state = folder.state()
        mlflow_state = state.get("mlflow", {})
        return cls(
            run_dir=folder.path,
            name=state.get("run_name", folder.path.name),
            seed=int(state.get("seed", 0)),
            domains=list(state["domains"]),
            wer=[[_nan(v) for v in row] for row in state["wer"]],
            cer=[[_nan(v) for v in row] for row in state["cer"]],
            summary=folder.read_json("summary.json", {}),
            trainable={int(k): int(v) for k, v in state.get("trainable", {}).items()},
            run_id=mlflow_state.get("run_id"),
            tracking_uri=mlflow_state.get("tracking_uri"),
            synced=bool(mlflow_state.get("synced")),
        )


def _nan(value: Any) -> float:
    return math.nan if value is None else float(value)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def partial_summary(
    wer: Sequence[Sequence[float]],
    joint: np.ndarray | None = None,
    single: np.ndarray | None = None,
) -> dict[str, Any]:
    """``cl_ssvdo.metrics.summarize`` of the rows computed so far (needs >= 2 rows)."""
    return metrics.summarize(np.asarray(wer, dtype=float), joint=joint, single=single)


def step_metrics(
    summary: Mapping[str, Any], row: Sequence[float], domains: Sequence[str], step: int
) -> dict[str, float]:
    """Metrics logged at ``step`` (experiences trained so far): WER per domain are logged by the
    logger; here the continual metrics after this experience, whose latest values are the
    run's final ones in MLflow."""
    out: dict[str, float] = {"wer_new_domain": float(row[step - 1])}
    for key in SUMMARY_SCALARS:
        if _finite(summary.get(key)):
            out[key] = float(summary[key])
    for key in ("learning", "im", "fwt"):
        values = summary.get(key)
        if values and _finite(values[-1]):
            out[key] = float(values[-1])
    return out


def write_matrices(
    folder: RunDir,
    domains: Sequence[str],
    wer: Sequence[Sequence[float]],
    cer: Sequence[Sequence[float]],
    png: bool = True,
) -> list[Path]:
    """WER, CER and forgetting matrices (CSV, JSON and, with ``png``, annotated heatmaps) and
    the long table. Called after every experience (``png=False``: cheap), so a killed run
    still has its partial matrices on disk, and with the plots at the end."""
    out = folder.artifacts
    rows = row_labels(domains, len(wer))
    files = write_matrix(
        wer, domains, out, "wer_matrix", "WER (%) after each experience", rows=rows, png=png
    )
    files += write_matrix(
        cer,
        domains,
        out,
        "cer_matrix",
        "CER (%) after each experience",
        value_label="CER (%)",
        rows=rows,
        png=png,
    )
    if len(wer) >= 2:
        forgetting = metrics.forgetting_matrix(np.asarray(wer, dtype=float))
        files += write_matrix(
            forgetting,
            domains,
            out,
            "forgetting_matrix",
            "Forgetting (WER points above the best earlier WER)",
            value_label="forgetting (WER points)",
            center_zero=True,
            rows=rows,
            png=png,
        )
    table = long_table(wer, domains, "wer")
    table["cer"] = long_table(cer, domains, "cer")["cer"].to_numpy()
    path = folder.tables / "wer_matrix_long.csv"
    table.to_csv(path, index=False)
    files.append(path)
    return files


def write_final_artifacts(
    folder: RunDir,
    config: Mapping[str, Any],
    summary: Mapping[str, Any],
    budget_rows: Sequence[Mapping[str, Any]],
) -> list[Path]:
    """The config, the summary metrics and the per-layer budget table."""
    out = folder.artifacts
    files = []
    config_file = out / "config.yaml"
    config_file.write_text(yaml.safe_dump(dict(config), sort_keys=False))
    files.append(config_file)
    summary_file = out / "summary.json"
    summary_file.write_text(json.dumps(dict(summary), indent=2, default=_json_nan))
    folder.write_json("summary.json", json.loads(summary_file.read_text()))
    files.append(summary_file)
    frame = budget_frame(budget_rows)
    frame.to_csv(out / "budget_table.csv", index=False)
    (out / "budget_table.json").write_text(frame.to_json(orient="records", indent=2))
    files += [out / "budget_table.csv", out / "budget_table.json"]
    return files


def _json_nan(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(type(obj).__name__)


def format_matrix(matrix: Sequence[Sequence[float]], domains: Sequence[str], title: str) -> str:
    """A plain-text matrix (rows: base, after <domain>...; columns: domains)."""
    labels = row_labels(domains, len(matrix))
    width = max(12, *(len(label) + 2 for label in labels))
    lines = [title, " " * width + "".join(f"{d:>10}" for d in domains)]
    for label, row in zip(labels, matrix, strict=True):
        cells = "".join(f"{v:>10.1f}" if _finite(v) else f"{'-':>10}" for v in row)
        lines.append(f"{label:<{width}}{cells}")
    return "\n".join(lines)


def format_result(result: RunResult) -> str:
    """The short summary printed at the end of a run."""
    s = result.summary
    lines = [
        f"== {result.name} (seed {result.seed}) -> {result.run_dir}",
        format_matrix(result.wer, result.domains, "WER (%)"),
    ]
    parts = []
    for key, label in (
        ("awer", "AWER"),
        ("bwt", "BWT"),
        ("forgetting_mean", "forgetting mean"),
        ("forgetting_max", "max"),
        ("learning_mean", "learning mean"),
        ("im_mean", "IM"),
        ("fwt_mean", "FWT"),
    ):
        if _finite(s.get(key)):
            parts.append(f"{label} {s[key]:.2f}")
    lines.append("  " + ", ".join(parts))
    if result.trainable:
        counts = ", ".join(f"exp{k}: {v:,}" for k, v in sorted(result.trainable.items()))
        lines.append(f"  trainable parameters: {counts}")
    where = (
        f"MLflow run {result.run_id} ({result.tracking_uri})"
        if result.synced
        else f"not in MLflow yet: cl-ssvdo sync {result.run_dir}"
    )
    lines.append(f"  {where}")
    return "\n".join(lines)
