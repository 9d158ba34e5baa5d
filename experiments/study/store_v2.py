"""v2: a study's runs read back from the MLflow store and set against its plan.

:func:`read_store` reads every run tagged ``cl_ssvdo.study = <name>`` in the study's
experiment (study record and sweep runs excluded) and matches each finished one to a run of
``experiments.study.plan_v2.plan_v2`` by its key: phase, arm, horizon, base (pretraining seed),
training seed, nominal budget and inner share (from the run's ``config.strategy.adapter``
params) and, for selection runs, the learning rate. What it returns, in plan order:

- ``runs``: one line per **finished** run of the study, with ``used`` (the newest finished run
  of a planned key that is not void) and a ``note`` saying why a run is not used (superseded by
  a newer run of the same key, not in the plan, or void: tagged ``study.void`` with the reason,
  a run found wrong after it finished, which is kept and listed, never deleted); the per-run
  figures of :func:`run_figures`;
- ``matrices``: ``run_id -> R`` (``R[row, domain]``, row 0 = the base model) from the
  ``wer/<domain>`` metric history;
- ``plan``: every planned run with ``status`` (``finished``, ``not run``, or ``withdrawn``:
  selected by the study's ``withdrawn`` and not finished), its run id and, when it is not
  finished, why (the withdrawal's date, ``not in the store``, or the status its
  newest run has);
- ``utterances``: the per-utterance errors (``experiments.study.collect.COLUMNS``) of the used
  test runs, only the cells the claims and the per-voice figure read (:func:`needed_cells`).

What moved, per run (:data:`DIAGNOSTICS`; NaN where the run logged none: no adapter plugin,
e.g. ``naive``, or a run that is not a used test run for the angles):

- ``weight_change``: the mean over the run's trained experiences of the adapter plugin's
  ``<method>/weight_change/exp<NNN>``, ``||W_after - W_before|| / ||W_before||`` of that
  experience over all adapted layers stacked (``strategies.adapters.base``; every adapter
  plugin logs it, full fine-tuning of the targets as ``full/...``);
- ``weight_change_total``: ``<method>/weight_change_total/exp<NNN>`` of the last experience,
  ``||W_end - W_start|| / ||W_start||`` (the whole stream);
- ``inner_angle``, ``outer_angle``: the mean over adapted layers and experiences of the
  logged per-layer ``diag/inner_angle/<layer>`` (rotation angle of the inner transform) and
  ``diag/outer_angle_mean/<layer>`` (mean principal angle between the top-l left singular
  subspaces before and after), radians (``cl_ssvdo.ssvdo.diagnostics``); SSVD-O (and SSVD for
  the inner one) log them; read for the used test runs only (one history per layer).

Selected learning rates: ``experiments.study.plan_v2.select_lr`` over the finished selection
runs (metric ``awer``, param ``config.train.optimizer.lr``), as ``cl-ssvdo study --dry-run``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cl_ssvdo import metrics
from experiments.compare import to_number
from experiments.references import diagonal
from experiments.study.collect import (
    ARM_TAG_V2,
    COLUMNS,
    PHASE_TAG,
    RUN_COLUMNS,
    STUDY_TAG,
    VOID_TAG,
    _sqlite_missing,
    _wer_matrix,
    selection_row,
)
from experiments.study.plan_v2 import PlannedRun, edge_rates, plan_v2, select_lr, withdrawal

__all__ = [
    "DIAGNOSTICS",
    "FIGURES",
    "PHASES",
    "StoreRuns",
    "config_label",
    "mark_withdrawn",
    "needed_cells",
    "read_store",
    "run_figures",
    "study_domains",
]

PHASES = ("lr-selection", "test", "reference")
HORIZON_TAG, SPLIT_TAG = "study.horizon", "study.split"
_ADAPTER = ("config.strategy.adapter.schedule", "config.strategy.adapter.match")
FIGURES = ["awer", "new_domain_wer", "bwt", "forgetting", "learning", "im", "fwt", "base_wer"]
KEY = ["phase", "arm", "horizon", "base", "seed", "budget", "inner_share", "lr_key"]
DIAGNOSTICS = ["weight_change", "weight_change_total", "inner_angle", "outer_angle"]
_CHANGE = re.compile(r"^(?!diag/)[^/]+/(weight_change|weight_change_total)/exp(\d+)$")
_ANGLES = {"inner_angle": "diag/inner_angle/", "outer_angle": "diag/outer_angle_mean/"}


@dataclass
class StoreRuns:
    """What :func:`read_store` found (see the module docstring)."""

    runs: pd.DataFrame
    plan: pd.DataFrame
    matrices: dict[str, np.ndarray] = field(default_factory=dict)
    utterances: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=COLUMNS))
    selected: dict[str, float] = field(default_factory=dict)


def study_domains(study: Mapping[str, Any]) -> list[str]:
    """The stream order: the base domain (task 0, evaluated, never trained), then the experiences."""
    return [study["stream"]["base_domain"], *study["stream"]["experiences"]]


def config_label(arm: str, budget: Any = None, share: Any = None, horizon: str = "main") -> str:
    """The name of one arm configuration on the page and in the CSVs.

    >>> config_label("ssvdo", 23400, 0.25), config_label("naive", horizon="long")
    ('ssvdo b23400 s=0.25', 'naive long')
    """
    parts = [str(arm)]
    if _present(budget):
        parts.append(f"b{int(float(budget))}")
    if _present(share):
        parts.append(f"s={float(share):g}")
    if horizon != "main":
        parts.append(str(horizon))
    return " ".join(parts)


def _present(value: Any) -> bool:
    if value is None:
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _lr_key(lr: Any) -> float | None:
    return float(f"{float(lr):.6g}") if _present(lr) else None


def _share_key(share: Any) -> float | None:
    return round(float(share), 6) if _present(share) else None


def _budget_key(budget: Any) -> int | None:
    return int(float(budget)) if _present(budget) else None


def _adapter_setting(params: Mapping[str, str]) -> tuple[int | None, float | None]:
    """Nominal ``(budget, inner_share)`` of a run from its config params (``constant`` setting,
    or the first ``per_experience`` entry of a schedule)."""
    for prefix in _ADAPTER:
        budget = params.get(f"{prefix}.constant.budget")
        if budget is not None:
            return _budget_key(budget), _share_key(to_number(
                params.get(f"{prefix}.constant.inner_share")))  # fmt: skip
        per = params.get(f"{prefix}.per_experience")
        if per:
            try:
                first = json.loads(per)[0]
            except (ValueError, IndexError, KeyError, TypeError):
                continue
            return _budget_key(first.get("budget")), _share_key(first.get("inner_share"))
    return None, None


def planned_key(run: PlannedRun) -> tuple:
    return (run.phase, run.arm, run.horizon, int(run.pretrain_seed), int(run.seed),
            _budget_key(run.budget), _share_key(run.inner_share),
            _lr_key(run.lr) if run.phase == "lr-selection" else None)  # fmt: skip


def _identity(run: Any, study: Mapping[str, Any]) -> dict[str, Any]:
    """The run's key fields (see :data:`KEY`) and its plain params."""
    tags, params = run.data.tags, run.data.params
    phase, arm = tags.get(PHASE_TAG, ""), tags.get(ARM_TAG_V2, "")
    kind = "reference" if phase == "reference" else (study["arms"].get(arm) or {}).get("kind")
    budget, share = _adapter_setting(params)
    if kind in (None, "reference", "unbudgeted", "not_run"):
        budget = share = None
    elif kind == "schedule":
        share = None
    seed = to_number(params.get("seed", tags.get("cl_ssvdo.seed")))
    base = to_number(params.get("config.model.pretrain.seed"))
    lr = to_number(params.get("config.train.optimizer.lr"))
    return {
        "phase": phase,
        "arm": arm,
        "horizon": tags.get(HORIZON_TAG, "main"),
        "split": tags.get(SPLIT_TAG, "valid" if phase == "lr-selection" else "test"),
        "base": int(base) if _present(base) else int(study["pretrain_seeds"][0]),
        "seed": int(seed) if _present(seed) else -1,
        "budget": budget,
        "inner_share": share,
        "lr": lr,
        "lr_key": _lr_key(lr) if phase == "lr-selection" else None,
    }


def _run_line(run: Any, study: Mapping[str, Any]) -> dict[str, Any]:
    params, metrics_ = run.data.params, run.data.metrics
    ident = _identity(run, study)
    end = run.info.end_time or run.info.start_time
    kind = params.get("config.model.kind", "")
    model = (params.get("config.model.pretrained", "") if kind == "whisper"
             else params.get("config.model.preset", ""))  # fmt: skip
    return {
        "run_id": run.info.run_id,
        "run_name": run.info.run_name,
        **ident,
        "config": config_label(
            ident["arm"], ident["budget"], ident["inner_share"], ident["horizon"]
        ),  # fmt: skip
        "status": run.info.status,
        "start_time": run.info.start_time,
        "duration_s": (end - run.info.start_time) / 1000.0,
        "steps": to_number(params.get("config.train.max_steps")),
        "strategy": params.get("config.strategy.name", ""),
        "adapter": params.get("config.strategy.adapter.method", "none"),
        "adapter_budget": to_number(params.get("adapter.budget")),
        "adapter_inner_share": to_number(params.get("adapter.inner_share")),
        "trainable_params": metrics_.get("trainable_params_max", math.nan),
        "model_family": "whisper" if kind == "whisper" else "conformer",
        "model": model,
        "base_weights_sha": params.get("base.weights_sha", ""),
        "git_commit": params.get("git.commit", ""),
        "awer_logged": metrics_.get("awer", math.nan),
        "void": run.data.tags.get(VOID_TAG, ""),
        **weight_changes(metrics_),
    }


def weight_changes(logged: Mapping[str, float]) -> dict[str, float]:
    """``weight_change`` (mean over experiences) and ``weight_change_total`` (last experience)
    from a run's latest metrics (see the module docstring); NaN when it logged none.

    >>> weight_changes({"ssvdo/weight_change/exp001": 0.01, "ssvdo/weight_change/exp002": 0.03,
    ...                 "ssvdo/weight_change_total/exp001": 0.01,
    ...                 "ssvdo/weight_change_total/exp002": 0.035, "diag/weight_change/l1": 9.0})
    {'weight_change': 0.02, 'weight_change_total': 0.035}
    """
    per: dict[str, dict[int, float]] = {"weight_change": {}, "weight_change_total": {}}
    for key, value in logged.items():
        m = _CHANGE.match(key)
        if m and math.isfinite(float(value)):
            per[m.group(1)][int(m.group(2))] = float(value)
    change, total = per["weight_change"], per["weight_change_total"]
    return {
        "weight_change": float(np.mean(list(change.values()))) if change else math.nan,
        "weight_change_total": total[max(total)] if total else math.nan,
    }


def _angles(client: Any, run_id: str, logged: Mapping[str, float]) -> dict[str, float]:
    """``inner_angle`` and ``outer_angle`` of a run: the mean over its layers and experiences
    (the newest value of each step) of the logged per-layer angles; NaN when it logged none."""
    out = {}
    for column, prefix in _ANGLES.items():
        values = []
        for key in sorted(k for k in logged if k.startswith(prefix)):
            newest: dict[int, tuple[int, float]] = {}
            for point in client.get_metric_history(run_id, key):
                if point.step not in newest or point.timestamp >= newest[point.step][0]:
                    newest[point.step] = (point.timestamp, float(point.value))
            values += [v for _, v in newest.values() if math.isfinite(v)]
        out[column] = float(np.mean(values)) if values else math.nan
    return out


_RUN_LINE = ["run_id", "run_name", "phase", "arm", "horizon", "split", "base", "seed", "budget",
             "inner_share", "lr", "lr_key", "config", "status", "start_time", "duration_s", "steps",
             "strategy", "adapter", "adapter_budget", "adapter_inner_share", "trainable_params",
             "model_family", "model", "base_weights_sha", "git_commit", "awer_logged", "void",
             "weight_change", "weight_change_total"]  # fmt: skip


def needed_cells(domains: Sequence[str]) -> set[tuple[int, str]]:
    """The ``(row, domain)`` cells the claims and the per-voice figure read: row 0 of the base
    domain, each experience's new-domain cell ``(k + 1, domains[k])`` and the whole final row."""
    n = len(domains)
    cells = {(0, domains[0])} | {(k + 1, domains[k]) for k in range(1, n)}
    return cells | {(n, d) for d in domains}


@contextlib.contextmanager
def _quiet_downloads() -> Iterator[None]:
    """No MLflow progress bar per download (hundreds of runs)."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def _read_utterances(client: Any, run_id: str, cells: set[tuple[int, str]]) -> pd.DataFrame | None:
    """The ``cells`` of the run's ``utterances/after_exp_<row>.csv.gz`` artifacts (``None``
    when it has none, or not every one of ``cells``)."""
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp, _quiet_downloads():
        try:
            local = Path(client.download_artifacts(run_id, "utterances", tmp))
        except (MlflowException, OSError):
            return None
        files = sorted(local.glob("after_exp_*.csv.gz")) if local.is_dir() else []
        if not files:
            return None
        frame = pd.concat(
            [pd.read_csv(f, dtype={"id": str, "speaker": str}, keep_default_na=False)
             for f in files], ignore_index=True,
        )  # fmt: skip
    pairs = [(int(r), str(d)) for r, d in zip(frame["row"], frame["domain"], strict=True)]
    if not cells <= set(pairs):  # a cell the claims read is missing: the records are unusable
        return None
    return frame[np.asarray([p in cells for p in pairs], dtype=bool)]


def run_figures(
    R: np.ndarray | None,
    domains: Sequence[str],
    joint: np.ndarray | None = None,
    single: np.ndarray | None = None,
    n_base: int = 1,
) -> dict[str, float]:
    """Per-run figures of the page from the WER matrix ``R`` (``(len(domains) + 1, len(domains))``,
    percent). The first ``n_base`` domains are evaluated, never trained: learning, IM and FWT
    average over the trained experiences only. ``base_wer``: the base model on the base domain
    (``R[0, 0]``). All NaN when the matrix is missing or incomplete.

    >>> R = np.array([[30., 60., 60.], [30., 60., 60.], [32., 20., 55.], [35., 25., 18.]])
    >>> f = run_figures(R, ["adult", "child", "accent"])
    >>> f["awer"], f["new_domain_wer"], f["learning"], f["forgetting"], f["final_wer/adult"]
    (26.0, 19.0, 38.5, 5.0, 35.0)
    """
    out = {k: math.nan for k in FIGURES} | {f"final_wer/{d}": math.nan for d in domains}
    if R is None or np.isnan(R).any():
        return out
    n = len(domains)
    summary = metrics.summarize(R)
    out.update(
        base_wer=float(R[0, 0]),
        awer=float(R[n].mean()),
        new_domain_wer=float(np.mean([R[k + 1, k] for k in range(n_base, n)])),
        bwt=float(summary["bwt"]),
        forgetting=float(summary["forgetting_mean"]),
        learning=float(metrics.learning(R)[n_base:].mean()),
    )
    if joint is not None:
        out["im"] = float(metrics.intransigence(R, joint)[n_base:].mean())
    if single is not None:
        out["fwt"] = float(metrics.fwt(R, single)[n_base:].mean())
    for j, d in enumerate(domains):
        out[f"final_wer/{d}"] = float(R[n, j])
    return out


def _search(client: Any, study: Mapping[str, Any]) -> list[Any]:
    exp = client.get_experiment_by_name(study["experiment"])
    if exp is None:
        return []
    runs = client.search_runs(
        [exp.experiment_id], filter_string=f"tags.`{STUDY_TAG}` = '{study['name']}'",
        max_results=50000,
    )  # fmt: skip
    return [r for r in runs if r.data.tags.get("cl_ssvdo.kind") not in ("sweep", "study")]


def _plan_frame(plan: Sequence[PlannedRun]) -> pd.DataFrame:
    lines = []
    for r in plan:
        lines.append({
            "label": r.label, "phase": r.phase, "arm": r.arm, "horizon": r.horizon,
            "base": int(r.pretrain_seed), "seed": int(r.seed), "budget": _budget_key(r.budget),
            "inner_share": _share_key(r.inner_share), "lr": r.lr,
            "config": config_label(r.arm, r.budget, r.inner_share, r.horizon),
        })  # fmt: skip
    columns = ["label", "phase", "arm", "horizon", "base", "seed", "budget", "inner_share", "lr",
               "config"]  # fmt: skip
    return pd.DataFrame(lines, columns=columns)


def mark_withdrawn(plan: pd.DataFrame, study: Mapping[str, Any]) -> pd.DataFrame:
    """``plan`` (``status`` and ``reason`` per planned run) with every run that did not finish
    and that ``study["withdrawn"]`` selects marked ``withdrawn`` (reason: the withdrawal's
    date); a ``withdrawn`` run that no withdrawal selects any more goes back to ``not run``."""
    plan = plan.copy()
    for i, line in plan[plan["status"] != "finished"].iterrows():
        why = withdrawal(study, line["arm"], line["horizon"])
        if why:
            plan.loc[i, ["status", "reason"]] = ["withdrawn", why]
        elif line["status"] == "withdrawn":
            plan.loc[i, ["status", "reason"]] = ["not run", "not finished when the store was "
                                                 "last read"]  # fmt: skip
    return plan


def read_store(study: Mapping[str, Any], tracking_uri: str) -> StoreRuns:
    """Every run of ``study`` in the store at ``tracking_uri``, set against the plan.

    A SQLite store whose file does not exist counts as empty (and is not created).
    """
    domains = study_domains(study)
    found: list[Any] = []
    client = None
    if not _sqlite_missing(tracking_uri):
        from experiments.tracking import check_tracking, get_client

        check_tracking(tracking_uri)
        client = get_client(tracking_uri)
        found = _search(client, study)
    finished = [r for r in found if r.info.status == "FINISHED"]
    logged = {r.info.run_id: r.data.metrics for r in finished}
    lines = [_run_line(r, study) for r in finished]
    runs = pd.DataFrame(lines)
    rows = (selection_row(r) for r, x in zip(finished, lines, strict=True)
            if x["phase"] == "lr-selection")  # fmt: skip
    selection = [row for row in rows if row is not None]
    selected = select_lr(selection, study["lr_selection"]["tie_points"])
    plan = plan_v2(study, selected, edge_rates(selection, study["lr_selection"]))
    plan_frame = _plan_frame(plan)
    keys = [planned_key(r) for r in plan]
    by_key: dict[tuple, int] = {k: i for i, k in enumerate(keys)}

    # the newest finished run of each planned key that is not void is used; the others are
    # kept and noted
    used_ids: dict[int, str] = {}
    void: dict[int, str] = {}  # plan index -> why its newest void run is void
    if not runs.empty:
        runs = runs.sort_values("start_time", kind="stable", ignore_index=True)
        runs["plan_index"] = [by_key.get(tuple(None if _nan(v) else v for v in key), -1)
                              for key in runs[KEY].itertuples(index=False)]  # fmt: skip
        for i, idx in zip(runs.index, runs["plan_index"], strict=True):
            if idx >= 0 and runs.at[i, "void"]:
                void[idx] = runs.at[i, "void"]
            elif idx >= 0:
                used_ids[idx] = runs.at[i, "run_id"]
        used = set(used_ids.values())
        runs["used"] = runs["run_id"].isin(used)
        runs["note"] = [
            "" if u else (f"void: {why}" if why else "not in the plan" if idx < 0 else
                          f"superseded by the newer run {used_ids[idx]}")
            for u, idx, why in zip(runs["used"], runs["plan_index"], runs["void"], strict=True)
        ]  # fmt: skip
        order = runs["plan_index"].where(runs["plan_index"] >= 0, len(plan))
        runs = runs.assign(_o=order).sort_values(["_o", "start_time"], kind="stable")
        runs = runs.drop(columns=["_o"]).reset_index(drop=True)

    # planned runs without a finished run: why
    others: dict[tuple, Any] = {}
    for r in sorted((r for r in found if r.info.status != "FINISHED"),
                    key=lambda r: r.info.start_time):  # fmt: skip
        ident = _identity(r, study)
        others[tuple(ident[k] for k in KEY)] = r
    status, run_ids, why = [], [], []
    for i, key in enumerate(keys):
        if i in used_ids:
            status.append("finished")
            run_ids.append(used_ids[i])
            why.append("")
        else:
            status.append("not run")
            other = others.get(key)
            run_ids.append(other.info.run_id if other is not None else "")
            why.append(f"its run is {other.info.status}" if other is not None
                       else f"its finished run is void ({void[i]})" if i in void
                       else "not in the store")  # fmt: skip
    plan_frame = mark_withdrawn(plan_frame.assign(status=status, run_id=run_ids, reason=why),
                                study)  # fmt: skip

    matrices: dict[str, np.ndarray] = {}
    parts = []
    if not runs.empty:
        for run_id in runs["run_id"]:
            matrices[run_id] = _wer_matrix(client, run_id, domains)
        runs = _with_figures(runs, matrices, domains)
        cells = needed_cells(domains)
        test = runs[runs["used"] & (runs["phase"] == "test")]
        has = []
        for line in test.to_dict("records"):
            frame = _read_utterances(client, line["run_id"], cells)
            has.append(frame is not None and not frame.empty)
            if has[-1]:
                parts.append(frame.assign(**{k: line[k] for k in RUN_COLUMNS})[COLUMNS])
        runs["utterances"] = False
        runs.loc[test.index, "utterances"] = has
        for column in _ANGLES:
            runs[column] = math.nan
        for i, run_id in zip(test.index, test["run_id"], strict=True):
            for column, value in _angles(client, run_id, logged[run_id]).items():
                runs.at[i, column] = value
    else:
        runs = pd.DataFrame(columns=_RUN_LINE + ["plan_index", "used", "note", *FIGURES,
                                                 *(f"final_wer/{d}" for d in domains),
                                                 "utterances", *_ANGLES])  # fmt: skip
    utterances = (pd.concat(parts, ignore_index=True) if parts
                  else pd.DataFrame(columns=COLUMNS))  # fmt: skip
    for col in ("budget", "inner_share"):
        utterances[col] = pd.to_numeric(utterances[col], errors="coerce").astype(float)
    return StoreRuns(runs, plan_frame, matrices, utterances, selected)


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _with_figures(
    runs: pd.DataFrame, matrices: Mapping[str, np.ndarray | None], domains: Sequence[str]
) -> pd.DataFrame:
    """Adds :func:`run_figures` to every run; IM and FWT against the used joint and
    single-task reference runs of the same base."""
    refs: dict[tuple[str, int], np.ndarray] = {}
    for line in runs[runs["used"] & (runs["phase"] == "reference")].to_dict("records"):
        R = matrices.get(line["run_id"])
        if R is not None:
            refs[(line["arm"], int(line["base"]))] = diagonal(R)
    figures = []
    for line in runs.to_dict("records"):
        base = int(line["base"])
        joint = refs.get(("joint", base)) if line["phase"] == "test" else None
        single = refs.get(("single_task", base)) if line["phase"] == "test" else None
        figures.append(run_figures(matrices.get(line["run_id"]), domains, joint, single))
    return pd.concat([runs, pd.DataFrame(figures, index=runs.index)], axis=1)
