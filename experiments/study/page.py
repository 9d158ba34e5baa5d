"""``docs/results.md`` (v1): the study's page, figures and CSVs from its per-run table.

Data flow: ``experiments.study.collect.collect_runs`` (the store) or ``load_runs_csv`` (the
CSVs this module wrote) -> ``experiments.study.table.aggregate`` (mean and std over seeds) and
``experiments.study.claims.evaluate_claims`` (four verdicts) -> :func:`write_results`
(Markdown, PNGs, small CSVs); :func:`regenerate` does all of it for a planned study, and
writes the "not yet run" page (:func:`write_not_run_page`) when there are no runs. Metric maths
stays in ``cl_ssvdo.metrics``, verdict rules in ``experiments.study.verdicts``; figures come
from ``experiments.plots``.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.plots import learning_forgetting_scatter, save, wer_vs_params
from experiments.study import collect
from experiments.study.claims import CLAIM_TESTS, CLAIMS, ClaimVerdict, evaluate_claims
from experiments.study.collect import (
    CLAIMS_CSV,
    LR_CHECK_CSV,
    MATRICES_CSV,
    META_JSON,
    RUNS_CSV,
    SUMMARY_CSV,
    wer_matrices,
)
from experiments.study.losses import loss_notes
from experiments.study.lr_check import lr_checks
from experiments.study.page_tables import (
    base_table,
    comparisons_table,
    finished_of_planned,
    hours,
    lr_section,
    mixed_bases,
    results_table,
    wall_time,
)
from experiments.study.table import (
    DocSettings,
    aggregate,
    display_name,
    main_arms,
    models_with,
    pareto_front,
)
from experiments.study.verdicts import Comparison
from experiments.tracking import TrackingUnreachableError, resolve_tracking_uri

__all__ = ["regenerate", "render", "write_not_run_page", "write_results"]


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
        f"> Generated by `experiments/study/page.py` (study v1; new studies follow the v2 protocol "
        f"of docs/protocol.md) from the MLflow store (experiment "
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
        f"- Finished runs: {finished_of_planned(frame, settings)}; compute time (sum of run durations, base pretraining "
        f"excluded): {hours(float(frame['duration_s'].sum()))}; study wall time: "
        f"{wall_time(meta)}.",
        f"- Code: git commit {', '.join(commits) or 'unknown'}.",
        "",
        "### Base models (WER %, before any adaptation)",
        "",
        "One row per base: *base weights* and *stream* are the sha256 fingerprints (first 12 "
        "hex digits) of its weights and of the stream it was trained on "
        "(`cl_ssvdo.asr.fingerprint`, MLflow params `base.weights_sha`, `base.stream_sha`).",
        "",
        base_table(frame, models, domains),
        "",
        "## Results (mean ± std over seeds)",
        "",
    ]
    for model in models:
        out += [f"### {model}", "", results_table(agg, model, first), ""]
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
            out += [comparisons_table(v.comparisons), ""]
    if checks:
        out += lr_section(checks, agg, first)
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
        f"> Generated by `experiments/study/page.py` (study v1) for study `{settings.study}`. "
        "Do not edit by hand.",
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


def regenerate(
    plan: Any,
    settings: DocSettings,
    *,
    tracking_uri: str | None = None,
    quick_command: str | None = None,
) -> list[Path]:
    """Rebuild the page of ``plan`` (``experiments.study.plan.StudyPlan``) from the store (or, when the store has no run of this study, from the
    CSVs of an earlier regeneration); with neither, the "not yet run" page.

    Raises ``FileExistsError`` rather than replace another study's results with that page.
    """
    out = plan.study["output"]
    uri = resolve_tracking_uri(tracking_uri or plan.tracking_uri, plan.workdir)
    try:
        frame = collect.collect_runs(uri, settings.experiment, settings.study, settings)
        meta = collect.study_record(uri, settings.experiment, settings.study)
    except TrackingUnreachableError as exc:
        warnings.warn(f"{exc}; using the CSVs next to the page", RuntimeWarning, stacklevel=2)
        frame, meta = pd.DataFrame(), {}
    if frame.empty:
        frame, meta = collect.load_runs_csv(out["tables"], settings.study)
        if frame.empty and meta.get("study") not in (None, settings.study):
            raise FileExistsError(
                f"{out['doc']} holds results of study {meta['study']!r} and no run of study "
                f"{settings.study!r} was found: not replacing them with a 'not yet run' page"
            )
    if frame.empty:
        return [write_not_run_page(out["doc"], settings, quick_command)]
    return write_results(
        frame, settings, doc=out["doc"], images=out["images"], tables=out["tables"], meta=meta
    )
