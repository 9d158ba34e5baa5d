"""``docs/results.md`` from the tracking store: the study's tables, figures and claim verdicts.

Data flow: :func:`collect_runs` reads every finished run of one study from MLflow (one row per
run; the WER matrix is rebuilt from the ``wer/<domain>`` step metrics) ->
``experiments.claims.aggregate`` (mean and std over seeds) and
``experiments.claims.evaluate_claims`` (four verdicts by the rules in that module's docstring)
-> :func:`write_results` (Markdown, PNGs, small CSVs). The CSVs hold everything the page
needs, so :func:`load_runs_csv` rebuilds it without the store. Metric maths stays in
``cl_ssvdo.metrics``, the verdict rules in ``experiments.claims``; figures come from
``experiments.plots``.

Per-run columns beyond ``compare.row_from_mlflow``'s:

- ``new_domain_wer``: mean over experiences ``i`` of ``R[i, i - 1]``, the WER on each domain
  right after training on it (``references.diagonal``): how well a method adapts;
- ``first_forgetting``: ``F[E, 0]`` of ``metrics.forgetting_matrix``: WER points lost on the
  first domain (adult) at the end, against the best WER it ever had;
- ``base_wer/<domain>``: row 0 (the base model before any adaptation);
- ``wer_row<i>/<domain>``: the whole matrix ``R[i, domain]``, written long as
  ``wer_matrices.csv`` (:func:`wer_matrices`);
- ``model`` (study model key), ``method`` (``ssvdo@<inner share>`` for SSVD-O, else the
  strategy name; ``|lr=<lr>`` appended for the runs of the learning-rate check, tagged
  ``cl_ssvdo.arm = lr``), ``inner_share``, ``lr``, ``max_steps``, ``duration_s``,
  ``git_commit``.

The learning-rate check (section "Learning-rate check", ``lr_check.csv``) comes from
``experiments.claims.lr_checks``; the main tables, figures and claims leave its runs out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cl_ssvdo import metrics
from experiments.claims import (
    ARM_TAG,
    CLAIM_TESTS,
    CLAIMS,
    LR_ARM,
    ClaimVerdict,
    Comparison,
    DocSettings,
    LrCheck,
    aggregate,
    budget_text,
    display_name,
    evaluate_claims,
    loss_notes,
    lr_checks,
    main_arms,
    method_label,
    models_with,
    pareto_front,
    plus_minus,
    split_lr,
)
from experiments.compare import row_from_mlflow, to_number
from experiments.plots import learning_forgetting_scatter, save, wer_vs_params
from experiments.references import diagonal
from experiments.tracking import check_tracking, get_client

__all__ = [
    "collect_runs",
    "load_runs_csv",
    "wer_matrices",
    "render",
    "study_record",
    "study_records",
    "write_not_run_page",
    "write_results",
]

RUNS_CSV, SUMMARY_CSV, CLAIMS_CSV, META_JSON = "runs.csv", "summary.csv", "claims.csv", "meta.json"
MATRICES_CSV, MATRIX_PREFIX = "wer_matrices.csv", "wer_row"
LR_CHECK_CSV = "lr_check.csv"


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
    return {
        "status": runs[0].info.status,
        "wall_seconds": float(sum(finite)) if finite else math.nan,
        "invocations": len(runs),
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


# -- figures ---------------------------------------------------------------------------------------
def _points(agg: pd.DataFrame, model: str) -> list[dict[str, Any]]:
    """The figures' points of ``model`` (main arms only: not the learning-rate check)."""
    out = []
    for row in main_arms(agg[agg["model"] == model]).to_dict("records"):
        budget = row.get("budget", math.nan)
        label = display_name(row["method"]) + ("" if math.isnan(budget) else f" {budget / 1000:g}k")
        out.append(
            {
                "label": label,
                "group": display_name(row["method"]),
                "learning": float(row.get("learning_mean", math.nan)),
                "forgetting": float(row.get("forgetting_mean", math.nan)),
                "params": float(row.get("trainable_params", 1.0) or 1.0),
                "new_domain_wer": float(row.get("new_domain_wer", math.nan)),
            }
        )
    return out


def _figures(agg: pd.DataFrame, models: Sequence[str], images: Path) -> dict[str, dict[str, Path]]:
    files: dict[str, dict[str, Path]] = {}
    for model in models:
        points = _points(agg, model)
        if not points:
            continue
        wer_fig = wer_vs_params(
            points,
            metric="new_domain_wer",
            title=f"New-domain WER vs trainable parameters ({model})",
            ylabel="new-domain WER (%), mean over seeds",
        )
        front_points = [p for p in points if math.isfinite(p["learning"])]
        scatter = learning_forgetting_scatter(
            front_points, title=f"Learning vs forgetting ({model})"
        )
        front = pareto_front(front_points)
        if len(front) >= 2:
            scatter.axes[0].plot(
                [p["learning"] for p in front],
                [p["forgetting"] for p in front],
                linestyle="--",
                color="grey",
                linewidth=1.0,
                zorder=0,
            )
        files[model] = {
            "wer": save(wer_fig, images / f"wer_vs_params_{model}.png"),
            "front": save(scatter, images / f"learning_forgetting_{model}.png"),
        }
    return files


# -- Markdown --------------------------------------------------------------------------------------
def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
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


def _results_table(agg: pd.DataFrame, model: str, first_domain: str) -> str:
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
    return _md_table(header, rows)


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
    return _md_table(header, rows)


LR_CHECK_TEXT = """The shipped configs start from different learning rates (column *lr* of the tables above).
Here the methods of the check also ran at each other's rates, at the model's tightest budget
(SSVD-O at the reference share, the baselines matched to it), so they can be compared at equal
learning rates; *(shipped)* marks the main runs at a method's own rate. The comparisons follow
the rules of the claims (*a* = SSVD-O; lower WER is better). These runs are left out of the
tables, figures and verdicts above.
"""


def _lr_section(checks: Sequence[LrCheck], agg: pd.DataFrame, first_domain: str) -> list[str]:
    out = ["## Learning-rate check", "", LR_CHECK_TEXT]
    for check in checks:
        out += [f"### {check.model} @ {budget_text(check.budget)}", ""]
        out += [_lr_table(check, agg, first_domain), ""]
        if check.comparisons:
            out += [_comparisons_table(check.comparisons), ""]
        for sentence in check.sentences:
            out += [sentence, ""]
    return out


def _short_sha(value: Any) -> str:
    text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    return f"`{text[:12]}`" if text else "unrecorded"


def _base_table(frame: pd.DataFrame, models: Sequence[str], domains: Sequence[str]) -> str:
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
    return _md_table(["model", "base weights", "pretrain seed", "stream", "runs", *domains], rows)


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


def _comparisons_table(comps: Sequence[Comparison]) -> str:
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
    return _md_table(
        ["where", "claimed better (a)", "other (b)", "a better by", "threshold", "outcome"], rows
    )


def _finished_of_planned(frame: pd.DataFrame, settings: DocSettings) -> str:
    """``63 of 69 planned (small 63 of 63, medium 0 of 6)``, or the count when nothing is planned."""
    if not settings.planned_runs:
        return str(len(frame))
    done = frame["model"].value_counts()
    per_model = ", ".join(
        f"{m} {int(done.get(m, 0))} of {n}" for m, n in settings.planned_runs.items()
    )
    return f"{len(frame)} of {sum(settings.planned_runs.values())} planned ({per_model})"


def _hours(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "unknown"
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def _wall_time(meta: Mapping[str, Any]) -> str:
    """``2.10 h (2 invocations, finished)``: the study's wall time over all its invocations."""
    notes = []
    invocations = int(meta.get("invocations") or 1)
    if invocations > 1:
        notes.append(f"{invocations} invocations")
    if meta.get("status"):
        notes.append(str(meta["status"]).lower())
    wall = _hours(float(meta.get("wall_seconds", math.nan)))
    return wall + (f" ({', '.join(notes)})" if notes else "")


RULES_TEXT = """\
- Each claim is tested by the comparisons listed under it; in each, *a* is the side the claim
  says is better. *a better by* is the difference of the means over seeds (WER points, or
  percent for claim 4); the *threshold* is the larger of the pooled standard deviation over
  seeds, `sqrt((sd_a^2 + sd_b^2) / 2)`, and a minimum margin ({margin} WER points;
  {margin_rel} % for claim 4).
- A comparison is *for* the claim when *a* is better by more than the threshold, *against* it
  when *b* is, and a *tie* otherwise; with fewer than two seeds on a side it is a tie.
- A claim is **confirmed** when every comparison is for it, **refuted** when at least one is
  against it, **inconclusive** otherwise (ties, or runs missing; claim 1 also needs each of the
  four baselines it names compared at least once).
- The standard deviations are over training seeds only (same data, same base model): they do
  not include the sampling noise of the test sets.
"""

DEFINITIONS_TEXT = """\
- `R[i][j]`: WER (%) on domain j after training on experience i (row 0: the base model).
- **new-domain WER**: mean over experiences of the WER on the domain just trained, right after
  training on it (the diagonal `R[i][i]`): how well a method adapts.
- **{first} forgetting**: WER points lost on the first domain at the end of the stream against
  the best WER it had before (`cl_ssvdo.metrics.forgetting_matrix`, last row).
- **AWER**: mean WER over all domains after the last experience; **BWT**: mean over earlier
  domains of (WER right after training on it - final WER), negative = forgetting.
- **learning** / **forgetting** (figures, claim 3): `learning_mean` and `forgetting_mean` of
  `cl_ssvdo.metrics.summarize`.
- Budgets are total trainable parameters per experience. SSVD-O gets `{{budget, inner_share}}`
  (`s` = share of the budget spent on the inner transform, the rest on the outer one);
  SSVD, LoRA, DoRA and PiSSA get the largest setting whose count does not exceed SSVD-O's at
  the reference share (so a baseline may get fewer parameters: see *trainable params*).
  Full fine-tuning and the CL references (Naive, Replay, EWC, weight averaging) have no budget.
"""


def render(
    frame: pd.DataFrame,
    settings: DocSettings,
    *,
    meta: Mapping[str, Any],
    image_paths: Mapping[str, Mapping[str, Path]] | None = None,
    doc_path: Path | None = None,
    tables_dir: Path | None = None,
) -> tuple[str, list[ClaimVerdict], pd.DataFrame]:
    """The Markdown page, the verdicts and the aggregated table for ``frame`` (per-run rows)."""
    agg = aggregate(frame, settings.models)
    verdicts = evaluate_claims(frame, settings)
    checks = lr_checks(frame, settings)
    models = models_with(frame, settings.models)
    found = frame["domains"].dropna() if "domains" in frame else pd.Series(dtype=str)
    domains = [d for d in str(found.iloc[0]).split(",") if d] if not found.empty else []
    first = domains[0] if domains else "first domain"
    rel = (lambda p: Path(p).relative_to(doc_path.parent).as_posix()) if doc_path else str
    out = [
        "# Results: the paper's claims on the embedded stream",
        "",
        f"> Generated by `experiments/results_doc.py` from the MLflow store (experiment "
        f"`{settings.experiment}`, study `{settings.study}`). Do not edit by hand.",
        ">",
        f"> Produced by: `{meta.get('command') or settings.command}`.",
        ">",
        f"> Regenerate this page without training: `{settings.command} --only-regenerate`; "
        f"rerun every training from scratch with the same seeds: `{settings.command} --fresh` "
        "(the base models are reused when present).",
        "",
    ]
    if settings.description:
        out += [settings.description.strip(), ""]
    for warning in mixed_bases(frame):
        out += [f"> **Warning: mixed bases.** {warning[0].upper()}{warning[1:]}.", ""]
    out += ["## Verdicts", ""]
    for v in verdicts:
        out += [f"{v.number}. *{v.claim}* — **{v.verdict}**", ""]
    out += ["## Set-up", ""]
    steps = sorted({int(s) for s in frame["max_steps"].dropna()}) if "max_steps" in frame else []
    commits = sorted(
        {str(c)[:10] for c in frame.get("git_commit", pd.Series(dtype=str)).dropna() if str(c)}
    )
    out += [
        f"- Stream: {' -> '.join(domains)} (one experience per domain, every domain's test set "
        "evaluated after each experience).",
        f"- Models: {', '.join(f'{m} (preset `{settings.presets.get(m, m)}`)' for m in models)}.",
        f"- Seeds: {', '.join(str(s) for s in sorted(frame['seed'].unique()))}; "
        f"optimiser steps per experience: {', '.join(str(s) for s in steps) or '-'}; "
        "learning rates are the shipped configs' starting points (column *lr*), tuned for no method"
        + ("; the learning-rate check below swaps some of them." if checks else "."),
        f"- Finished runs: {_finished_of_planned(frame, settings)}; compute time (sum of run durations, base pretraining "
        f"excluded): {_hours(float(frame['duration_s'].sum()))}; study wall time: "
        f"{_wall_time(meta)}.",
        f"- Code: git commit {', '.join(commits) or 'unknown'}.",
        "",
        "### Base models (WER %, before any adaptation)",
        "",
        "One row per base: *base weights* and *stream* are the sha256 fingerprints (first 12 "
        "hex digits) of its weights and of the stream it was trained on "
        "(`cl_ssvdo.asr.fingerprint`, MLflow params `base.weights_sha`, `base.stream_sha`).",
        "",
        _base_table(frame, models, domains),
        "",
        "## Results (mean ± std over seeds)",
        "",
    ]
    for model in models:
        out += [f"### {model}", "", _results_table(agg, model, first), ""]
        if image_paths and model in image_paths:
            files = image_paths[model]
            out += [
                f"![New-domain WER vs trainable parameters, {model}]({rel(files['wer'])})",
                "",
                f"![Learning vs forgetting, {model}]({rel(files['front'])})",
                "",
            ]
        front = pareto_front(_points(agg, model))
        if front:
            out += [
                "Learning-vs-forgetting front (not dominated: no other configuration learns "
                "more and forgets less): " + ", ".join(p["label"] for p in front) + ".",
                "",
            ]
    out += ["## The claims", ""]
    for v in verdicts:
        out += [f"### Claim {v.number}", "", f"*{v.claim}* Test: {v.test}.", "", v.sentence, ""]
        if v.comparisons:
            out += [_comparisons_table(v.comparisons), ""]
    if checks:
        out += _lr_section(checks, agg, first)
    notes = loss_notes(frame, settings, verdicts)
    out += ["## Where SSVD-O loses", ""]
    out += notes or ["No significant loss of SSVD-O (reference share) by the rules below."]
    out += [
        "",
        "## How verdicts are decided",
        "",
        RULES_TEXT.format(margin=settings.min_margin, margin_rel=settings.min_margin_relative),
        "## Definitions",
        "",
        DEFINITIONS_TEXT.format(first=first),
    ]
    if tables_dir is not None:
        out += [
            "## Data",
            "",
            f"Per-run rows: `{rel(tables_dir / RUNS_CSV)}`; means and standard deviations: "
            f"`{rel(tables_dir / SUMMARY_CSV)}`; every comparison: `{rel(tables_dir / CLAIMS_CSV)}`"
            + (
                f"; the learning-rate check's: `{rel(tables_dir / LR_CHECK_CSV)}`."
                if checks
                else "."
            ),
            "",
        ]
    return "\n".join(out).rstrip() + "\n", verdicts, agg


def write_results(
    frame: pd.DataFrame,
    settings: DocSettings,
    *,
    doc: str | Path,
    images: str | Path,
    tables: str | Path,
    meta: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write the page, its PNGs and CSVs (``runs.csv``, ``summary.csv``, ``claims.csv``,
    ``meta.json``, ``wer_matrices.csv`` (every run's full matrix), and ``lr_check.csv`` when the study has a learning-rate check); returns the
    files written."""
    if frame.empty:
        raise ValueError("write_results: no runs (use write_not_run_page)")
    doc, images, tables = Path(doc), Path(images), Path(tables)
    meta = dict(meta or {})
    image_paths = _figures(aggregate(frame, settings.models), settings.models, images)
    text, verdicts, agg = render(
        frame, settings, meta=meta, image_paths=image_paths, doc_path=doc, tables_dir=tables
    )
    tables.mkdir(parents=True, exist_ok=True)
    doc.parent.mkdir(parents=True, exist_ok=True)
    files = [doc, tables / RUNS_CSV, tables / SUMMARY_CSV, tables / CLAIMS_CSV, tables / META_JSON]
    doc.write_text(text)
    frame.drop(columns=["start_time"], errors="ignore").to_csv(files[1], index=False)
    agg.to_csv(files[2], index=False)
    pd.DataFrame(
        [
            {"claim": v.number, "verdict": v.verdict, **asdict(c)}
            for v in verdicts
            for c in v.comparisons
        ],
        columns=["claim", "verdict", *Comparison.__dataclass_fields__],
    ).to_csv(files[3], index=False)
    meta_out = {
        "study": settings.study,
        "experiment": settings.experiment,
        "command": meta.get("command") or settings.command,
        "wall_seconds": meta.get("wall_seconds"),
        "invocations": meta.get("invocations"),
        "status": meta.get("status"),
        "verdicts": {v.number: v.verdict for v in verdicts},
    }
    files[4].write_text(json.dumps(meta_out, indent=2, default=_json_safe) + "\n")
    matrices = wer_matrices(frame)
    if not matrices.empty:
        matrices.to_csv(tables / MATRICES_CSV, index=False)
        files.append(tables / MATRICES_CSV)
    checks, lr_file = lr_checks(frame, settings), tables / LR_CHECK_CSV
    if checks:
        pd.DataFrame(
            [asdict(c) for check in checks for c in check.comparisons],
            columns=list(Comparison.__dataclass_fields__),
        ).to_csv(lr_file, index=False)
        files.append(lr_file)
    elif lr_file.exists():  # an earlier version of the study had one
        lr_file.unlink()
    for paths in image_paths.values():
        files += list(paths.values())
    return files


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(type(value).__name__)


def write_not_run_page(
    doc: str | Path, settings: DocSettings, quick_command: str | None = None
) -> Path:
    """The page written while no run of the study exists: what to run, nothing invented."""
    doc = Path(doc)
    doc.parent.mkdir(parents=True, exist_ok=True)
    planned = ", ".join(f"{m}: {n} runs" for m, n in settings.planned_runs.items())
    lines = [
        "# Results: the paper's claims on the embedded stream",
        "",
        f"> Generated by `experiments/results_doc.py` for study `{settings.study}`. Do not edit by hand.",
        "",
        f"**Not yet run:** no finished run of study `{settings.study}` was found in the tracking "
        f"store (MLflow experiment `{settings.experiment}`). Run",
        "",
        "```bash",
        settings.command,
        "```",
        "",
        f"(`{settings.command} --dry-run` lists every run without training.)",
        "",
    ]
    if settings.estimate:
        lines += [f"Expected time: {settings.estimate}.", ""]
    if quick_command:
        lines += [f"A reduced version: `{quick_command}`.", ""]
    lines += [
        "This page is then regenerated from the store with the tables (new-domain WER, "
        "forgetting of the first domain, AWER, BWT, trainable parameters; mean ± std over seeds), "
        "the WER-vs-parameters and learning-vs-forgetting figures, and a confirmed / refuted / "
        "inconclusive verdict for each claim:",
        "",
    ]
    lines += [f"{n}. {text} Test: {CLAIM_TESTS[n]}." for n, text in CLAIMS.items()]
    lines += [
        "",
        f"Planned: {planned or '-'}; seeds {', '.join(str(s) for s in settings.seeds)}; budgets "
        + "; ".join(f"{m}: {', '.join(f'{b:,}' for b in bs)}" for m, bs in settings.budgets.items())
        + f"; SSVD-O inner shares {', '.join(f'{s:g}' for s in settings.inner_shares)} "
        f"(baselines matched at {settings.reference_share:g}).",
        "",
        "## How verdicts will be decided",
        "",
        RULES_TEXT.format(margin=settings.min_margin, margin_rel=settings.min_margin_relative),
    ]
    doc.write_text("\n".join(lines).rstrip() + "\n")
    return doc
