"""Reading a study's results back: per-run rows from the MLflow store (v1), the CSVs written
next to the page, and the per-utterance files of a run folder (v2).

:func:`collect_runs` reads every finished run of one study from MLflow (one row per run; the
WER matrix is rebuilt from the ``wer/<domain>`` step metrics). Per-run columns beyond
``compare.row_from_mlflow``'s:

- ``new_domain_wer``: mean over experiences ``i`` of ``R[i, i - 1]``, the WER on each domain
  right after training on it (``references.diagonal``): how well a method adapts;
- ``first_forgetting``: ``F[E, 0]`` of ``metrics.forgetting_matrix``: WER points lost on the
  first domain (adult) at the end, against the best WER it ever had;
- ``base_wer/<domain>``: row 0 (the base model before any adaptation);
- ``wer_row<i>/<domain>``: the whole matrix ``R[i, domain]``, written long as
  ``wer_matrices.csv`` (:func:`wer_matrices`);
- ``model`` (study model key), ``method`` (``experiments.study.table.method_label``),
  ``inner_share``, ``lr``, ``max_steps``, ``duration_s``, ``git_commit``.

:func:`load_runs_csv` reads the table back from the CSVs ``experiments.study.page`` wrote, so the
page rebuilds without the store. :func:`read_run_utterances` gathers a run folder's
per-utterance errors (the input of ``experiments.study.claims_v2``) and :func:`read_selection`
the learning-rate selection runs of a v2 study.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cl_ssvdo import metrics
from experiments.compare import row_from_mlflow, to_number
from experiments.references import diagonal
from experiments.study.table import ARM_TAG, LR_ARM, DocSettings, method_label
from experiments.tracking import check_tracking, get_client

__all__ = [
    "COLUMNS",
    "DOMAINS",
    "RUN_COLUMNS",
    "collect_runs",
    "load_runs_csv",
    "read_run_utterances",
    "read_selection",
    "selection_row",
    "study_record",
    "study_records",
    "wer_matrices",
]

RUNS_CSV, SUMMARY_CSV, CLAIMS_CSV, META_JSON = "runs.csv", "summary.csv", "claims.csv", "meta.json"
MATRICES_CSV, MATRIX_PREFIX = "wer_matrices.csv", "wer_row"
LR_CHECK_CSV = "lr_check.csv"
# v2's per-utterance table: the run's keys, then one utterance after evaluation row ``row``
RUN_COLUMNS = ["arm", "budget", "inner_share", "base", "seed", "horizon"]
UTT_COLUMNS = ["row", "domain", "id", "speaker", "errors", "words"]
COLUMNS = RUN_COLUMNS + UTT_COLUMNS
DOMAINS = ["adult", "child", "accent_scottish"]
STUDY_TAG, PHASE_TAG, ARM_TAG_V2 = "cl_ssvdo.study", "study.phase", "study.arm"
# a finished run found wrong after the fact: never used, listed with this tag's value (why)
VOID_TAG = "study.void"


# -- reading the store -----------------------------------------------------------------------------
def _sqlite_missing(uri: str) -> bool:
    """True for a SQLite URI whose file does not exist (reading must not create a store)."""
    if not uri.startswith("sqlite:///"):
        return False
    path = uri[len("sqlite:///") :]
    return path not in ("", ":memory:") and not Path(path).is_file()


def _wer_matrix(client, run_id: str, domains: Sequence[str]) -> np.ndarray | None:
    """``R`` of shape ``(len(domains) + 1, len(domains))`` from the ``wer/<domain>`` history."""
    n = len(domains)
    matrix = np.full((n + 1, n), np.nan)
    for j, domain in enumerate(domains):
        for point in client.get_metric_history(run_id, f"wer/{domain}"):
            if 0 <= point.step <= n:
                matrix[point.step, j] = point.value
    return None if np.isnan(matrix).any() else matrix


def _matrix_columns(matrix: np.ndarray | None, domains: Sequence[str]) -> dict[str, float]:
    out: dict[str, float] = {"new_domain_wer": math.nan, "first_forgetting": math.nan}
    if matrix is None:
        return out
    out["new_domain_wer"] = float(diagonal(matrix).mean())
    if len(domains) >= 2:
        out["first_forgetting"] = float(metrics.forgetting_matrix(matrix)[-1, 0])
    for j, domain in enumerate(domains):
        out[f"base_wer/{domain}"] = float(matrix[0, j])
    for i in range(matrix.shape[0]):  # the whole matrix (wer_matrices.csv), not the last row only
        for j, domain in enumerate(domains):
            out[f"{MATRIX_PREFIX}{i}/{domain}"] = float(matrix[i, j])
    return out


def wer_matrices(frame: pd.DataFrame) -> pd.DataFrame:
    """Long table of every run's full WER matrix: ``run, run_id, method, model, budget, seed,
    row, domain, wer`` (row 0 = the base model, row i = after experience i), from the
    ``wer_row<i>/<domain>`` columns of the run table.

    >>> t = wer_matrices(pd.DataFrame([{"run": "r", "wer_row0/a": 30.0, "wer_row1/a": 20.0}]))
    >>> t[["row", "domain", "wer"]].values.tolist()
    [[0, 'a', 30.0], [1, 'a', 20.0]]
    """
    keys = [c for c in ("run", "run_id", "method", "model", "budget", "seed") if c in frame]
    columns = [c for c in frame.columns if str(c).startswith(MATRIX_PREFIX)]
    lines = []
    for record in frame.to_dict("records"):
        for col in columns:
            value = record[col]
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            row, domain = col[len(MATRIX_PREFIX) :].split("/", 1)
            lines.append({**{k: record[k] for k in keys}, "row": int(row), "domain": domain,
                          "wer": float(value)})  # fmt: skip
    out = pd.DataFrame(lines, columns=[*keys, "row", "domain", "wer"])
    return out.sort_values([*keys[:1], "row"], kind="stable", ignore_index=True)


def _run_row(client, run) -> dict[str, Any]:
    params, tags = run.data.params, run.data.tags
    row = row_from_mlflow(run)
    domains = [d for d in params.get("stream.domains", "").split(",") if d]
    share = to_number(params.get("config.strategy.adapter.schedule.constant.inner_share"))
    row["model"] = tags.get("cl_ssvdo.model_size") or params.get("config.model.preset", "?")
    row["inner_share"] = share if row["adapter"] == "ssvdo" else math.nan
    row["lr"] = to_number(params.get("config.train.optimizer.lr"))
    lr_arm = row["lr"] if tags.get(ARM_TAG) == LR_ARM else None
    row["method"] = method_label(row["strategy"], row["adapter"], row["inner_share"], lr_arm)
    row["max_steps"] = to_number(params.get("config.train.max_steps"))
    row["git_commit"] = params.get("git.commit", "")
    # Which base model: the fingerprint of its weights and of the stream it was trained on.
    row["base_weights_sha"] = params.get("base.weights_sha") or tags.get("base.weights_sha", "")
    row["base_stream_sha"] = params.get("base.stream_sha") or tags.get("base.stream_sha", "")
    row["pretrain_seed"] = to_number(params.get("config.model.pretrain.seed"))
    row["domains"] = ",".join(domains)
    end = run.info.end_time or run.info.start_time
    row["duration_s"] = (end - run.info.start_time) / 1000.0
    row["start_time"] = run.info.start_time
    row.update(_matrix_columns(_wer_matrix(client, run.info.run_id, domains), domains))
    return row


def _keep_planned(frame: pd.DataFrame, settings: DocSettings | None) -> pd.DataFrame:
    """Rows of the planned models, budgets, seeds and methods; the newest run per cell."""
    if frame.empty:
        return frame
    frame = frame.sort_values("start_time", kind="stable")
    cell = ["model", "method", "budget", "seed"]
    if "pretrain_seed" in frame:  # a study over pretraining seeds: one run per base as well
        cell.append("pretrain_seed")
    frame = frame.drop_duplicates(cell, keep="last")
    if settings is not None:
        keep = frame["model"].isin(settings.models) & frame["seed"].isin(settings.seeds)
        budgets = [
            np.isnan(b) or int(b) in settings.budgets.get(m, [])
            for m, b in zip(frame["model"], frame["budget"], strict=True)
        ]
        keep &= np.asarray(budgets, dtype=bool)
        if settings.methods is not None:
            planned = [
                meth in settings.methods.get(m, [])
                for m, meth in zip(frame["model"], frame["method"], strict=True)
            ]
            keep &= np.asarray(planned, dtype=bool)
        frame = frame[keep]
    return frame.reset_index(drop=True)


def collect_runs(
    tracking_uri: str, experiment: str, study: str, settings: DocSettings | None = None
) -> pd.DataFrame:
    """Every finished run tagged ``cl_ssvdo.study = study`` in ``experiment`` (sweep parents and
    the study record excluded), one row each; an empty frame when there are none."""
    if _sqlite_missing(tracking_uri):
        return pd.DataFrame()
    check_tracking(tracking_uri)
    client = get_client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return pd.DataFrame()
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`cl_ssvdo.study` = '{study}' and attributes.status = 'FINISHED'",
        max_results=50000,
    )
    rows = [
        _run_row(client, run)
        for run in runs
        if run.data.tags.get("cl_ssvdo.kind") not in ("sweep", "study")
    ]
    return _keep_planned(pd.DataFrame.from_records(rows), settings)


def study_records(tracking_uri: str, experiment: str, study: str) -> list[Any]:
    """The active study record runs (``cl_ssvdo.kind = study``) of ``study``, newest first:
    one per invocation of the study with a different config (a resumed one reuses its run)."""
    if _sqlite_missing(tracking_uri):
        return []
    client = get_client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`cl_ssvdo.study` = '{study}' and tags.`cl_ssvdo.kind` = 'study'",
        order_by=["attributes.start_time DESC"],
        max_results=1000,
    )


def study_record(tracking_uri: str, experiment: str, study: str) -> dict[str, Any]:
    """The study's wall time summed over its record runs (``invocations`` of them), and the
    newest one's status and command; ``{}`` when there is none."""
    runs = study_records(tracking_uri, experiment, study)
    if not runs:
        return {}
    walls = [r.data.metrics.get("study_wall_seconds", math.nan) for r in runs]
    finite = [w for w in walls if math.isfinite(w)]
    # v2 records count their invocations (a resumed study keeps one record run)
    counted = [r.data.metrics.get("study_invocations") for r in runs]
    return {
        "status": runs[0].info.status,
        "wall_seconds": float(sum(finite)) if finite else math.nan,
        "invocations": int(sum(c for c in counted if c is not None)) or len(runs),
        "command": runs[0].data.params.get("study.command", ""),
        "started_ms": min(r.info.start_time for r in runs),
    }


def load_runs_csv(folder: str | Path, study: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The per-run table and meta written by :func:`write_results` for ``study`` (empty frame
    and meta when the folder holds none, or another study's)."""
    folder = Path(folder)
    meta_file, runs_file = folder / META_JSON, folder / RUNS_CSV
    if not meta_file.is_file() or not runs_file.is_file():
        return pd.DataFrame(), {}
    meta = json.loads(meta_file.read_text())
    if meta.get("study") != study:
        return pd.DataFrame(), meta
    return pd.read_csv(runs_file), meta


# -- v2: per-utterance files and the learning-rate selection ------------------------------------
def read_run_utterances(run_dir: str | Path, **run: Any) -> pd.DataFrame:
    """Every ``artifacts/utterances/after_exp_<row>.csv.gz`` of a run folder, with the run's
    keys (``arm=..., budget=..., inner_share=..., base=..., seed=..., horizon=...``) added."""
    folder = Path(run_dir) / "artifacts" / "utterances"
    files = sorted(folder.glob("after_exp_*.csv.gz"))
    if not files:
        raise FileNotFoundError(f"{folder}: no after_exp_<row>.csv.gz (per-utterance errors)")
    frame = pd.concat(
        [pd.read_csv(f, dtype={"id": str, "speaker": str}, keep_default_na=False) for f in files],
        ignore_index=True,
    )
    for key in RUN_COLUMNS:
        frame[key] = run.get(key, "main" if key == "horizon" else np.nan)
    return frame[COLUMNS]


def _check(frame: pd.DataFrame) -> None:
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"per-utterance table: missing columns {missing} (need {COLUMNS})")


def read_selection(tracking_uri: str, study: Mapping[str, Any]) -> list[tuple[str, float, float]]:
    """``(arm, lr, valid AWER)`` of the study's finished selection runs in the store.

    A selection run carries the tags ``cl_ssvdo.study``, ``study.phase = lr-selection`` and
    ``study.arm``, the param ``config.train.optimizer.lr`` and the final metric ``awer``; a run
    tagged :data:`VOID_TAG` is left out.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(study["experiment"])
    if exp is None:
        return []
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`{STUDY_TAG}` = '{study['name']}' and "
        f"tags.`{PHASE_TAG}` = 'lr-selection' and attributes.status = 'FINISHED'",
        max_results=10000,
    )
    return [row for row in map(selection_row, runs) if row is not None]


def selection_row(run: Any) -> tuple[str, float, float] | None:
    """``(arm, lr, valid AWER)`` of one finished selection run (an MLflow ``Run``), or ``None``
    when it is void or lacks its arm, rate or AWER: the one reading of a selection run, for the
    runner (:func:`read_selection`) and the page (``experiments.study.store_v2.read_store``)."""
    lr = run.data.params.get("config.train.optimizer.lr")
    awer = run.data.metrics.get("awer")
    arm = run.data.tags.get(ARM_TAG_V2)
    if lr is None or awer is None or not arm or run.data.tags.get(VOID_TAG):
        return None
    return arm, float(lr), float(awer)
