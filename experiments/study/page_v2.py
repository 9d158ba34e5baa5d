"""v2: a study's results page (docs/protocol.md), its CSVs and figures, from the MLflow store.

:func:`regenerate_v2` reads the store (``experiments.study.store_v2.read_store``: every run
of the study set against ``plan_v2``), states the claims on the per-utterance records
(``experiments.study.claims_v2``; a planned test whose runs did not finish counts as unclear,
:func:`claims_frame`), writes the CSVs, draws the figures (``experiments.study.plots_v2``) and
renders the page **from the CSVs it wrote** (:func:`render_v2`), so every number on the page
recomputes from them. Its section *Where SSVD-O loses* (:func:`losses`) sets each loss of
SSVD-O beside what the runs logged (learning, forgetting, weight change, angles), in words that
only restate those numbers. Then it logs the page, CSVs and figures to the study's record run in
MLflow (``cl_ssvdo.kind = study``) when there is one.

:func:`rerender_v2` renders the page again from its CSVs alone, for a study whose store is gone:
it applies the config's withdrawals to ``plan.csv`` and recomputes nothing else.

This module holds the entry points (:func:`page_paths`, :func:`regenerate_v2`,
:func:`rerender_v2`, :func:`render_v2`), the file names and the guard against replacing
another study's page; the rest is split by stage (``claims_frame``, ``losses``, ``run_ci`` and
``summarise`` stay importable from here)::

    frames_v2     store -> the CSVs' frames: claims_frame, selection, matrices, voices
    levels_v2     runs.csv -> summary.csv: per-configuration mean and 95 % CI (run_ci, summarise)
    sections_v2   CSVs -> the page's Markdown sections (verdicts ... not run, definitions)
    losses_v2     CSVs -> the section *Where SSVD-O loses* (losses)

Files, under ``out_dir`` (the docs folder), ``<stem>`` being the study name without a leading
``study_`` (``study_v2`` -> ``results_v2``)::

    results_<stem>.md         the page
    results_<stem>/
        runs.csv              one line per finished run: params, per-run figures, weight
                              change and angles (store_v2.DIAGNOSTICS), used / note
        plan.csv              every planned run: finished, not run or withdrawn, and why
        selection.csv         the learning-rate selection: every grid rate of every arm
        summary.csv           per arm configuration: mean and 95 % CI of each figure
        claims.csv            every test and reported difference of every claim, with the
                              two sides it compares (claims_v2.SIDE_COLUMNS)
        wer_matrices.csv      every finished run's full WER matrix, long (run, row, domain, wer)
        voices.csv            final WER per test voice and configuration
        meta.json             the study config, command, wall time, selected rates
        front.png, wer_matrices.png, voices.png

Nothing is dropped silently: planned runs that did not finish are listed (with the status of
their run when one exists), as are finished runs outside the plan or superseded by a newer run
of the same configuration, arms of kind ``not_run`` and what the runner reports as not run.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.study.frames_v2 import (
    claims_frame,
    matrices_frame,
    scored_set_sizes,
    selection_frame,
    voices_frame,
)
from experiments.study.levels_v2 import run_ci, summarise
from experiments.study.losses_v2 import BaseSummaries, losses, losses_section
from experiments.study.sections_v2 import (
    DEFINITIONS,
    claims_section,
    compute_section,
    not_run_section,
    protocol_section,
    references_section,
    results_section,
    selection_section,
    verdicts_section,
)
from experiments.study.store_v2 import mark_withdrawn, read_store, study_domains

__all__ = [
    "claims_frame",
    "losses",
    "page_paths",
    "regenerate_v2",
    "render_v2",
    "rerender_v2",
    "run_ci",
    "summarise",
]

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = ROOT / "docs" / "protocol.md"
RUNS, PLAN, SELECTION, SUMMARY = "runs.csv", "plan.csv", "selection.csv", "summary.csv"
CLAIMS, MATRICES, VOICES, META = "claims.csv", "wer_matrices.csv", "voices.csv", "meta.json"
FRONT_PNG, MATRICES_PNG, VOICES_PNG = "front.png", "wer_matrices.png", "voices.png"
GENERATOR = "experiments/study/page_v2.py"


# -- paths ---------------------------------------------------------------------------------------
def page_paths(study: Mapping[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """``(page, tables folder)`` of ``study`` under ``out_dir``.

    >>> [p.as_posix() for p in page_paths({"name": "study_v2"}, "site")]
    ['site/results_v2.md', 'site/results_v2']
    """
    name = str(study["name"])
    stem = name[len("study_") :] if name.startswith("study_") and len(name) > 6 else name
    out = Path(out_dir)
    return out / f"results_{stem}.md", out / f"results_{stem}"


# -- reading the CSVs back ----------------------------------------------------------------------------
def _read(tables: Path, name: str, text: Sequence[str] = ()) -> pd.DataFrame:
    frame = pd.read_csv(tables / name, dtype={c: str for c in ("run_id", "id", "speaker")})
    for col in ("run_id", "note", "reason", "status", "name", "statement", "lr_used", *text):
        if col in frame:
            frame[col] = frame[col].fillna("").astype(str)
    return frame


# -- rendering ----------------------------------------------------------------------------------------
def render_v2(tables: str | Path, page: str | Path) -> str:
    """The page's Markdown from the CSVs and ``meta.json`` in ``tables`` (``page``: where it
    goes, for its relative links)."""
    tables, page = Path(tables), Path(page)
    meta = json.loads((tables / META).read_text())
    study, domains = meta["study"], meta["domains"]
    runs = _read(tables, RUNS)
    plan = _read(tables, PLAN)
    sel = _read(tables, SELECTION)
    claims = _read(tables, CLAIMS, text=("verdict", "kind", "claimed", "outcome", "figure",
                                         "a_arm", "b_arm", "horizon"))  # fmt: skip
    # a claims.csv written before it named each line's horizon compared main-horizon runs only
    claims["horizon"] = claims["horizon"].replace("", "main") if "horizon" in claims else "main"
    matrices = _read(tables, MATRICES)
    summary = summarise(runs, plan, domains, meta["n_boot"])

    def rel(path: Path) -> str:
        return Path(os.path.relpath(path, page.parent)).as_posix()

    figures = {k: rel(tables / f) for k, f in (("front", FRONT_PNG), ("matrices", MATRICES_PNG),
                                               ("voices", VOICES_PNG)) if (tables / f).is_file()}  # fmt: skip
    n_tests = int(((plan["phase"] == "test") & (plan["status"] == "finished")).sum())
    out = [
        f"# Results of study `{study['name']}` (protocol v2)",
        "",
        f"> Generated by `{GENERATOR}` from the MLflow store (experiment "
        f"`{study['experiment']}`, study `{study['name']}`); every number below recomputes from "
        f"the CSVs in `{rel(tables)}/`. Do not edit by hand.",
        ">",
        f"> Produced by: `{meta.get('command') or '-'}`.",
        "",
    ]
    if meta.get("rerendered"):
        out[-1:] = [">", f"> Re-rendered from these CSVs alone by `{meta['rerendered']}`, after "
                    "the store was last read: nothing on the page was read from the store "
                    "again (*Protocol*, *Not run*).", ""]  # fmt: skip
    if study.get("description"):
        out += [str(study["description"]).strip(), ""]
    out += verdicts_section(claims, plan, n_tests)
    out += protocol_section(study, meta, rel(PROTOCOL))
    out += compute_section(plan, runs, meta)
    out += selection_section(sel, study, meta)
    out += results_section(summary, domains, figures, n_tests)
    out += references_section(matrices, plan, domains)
    out += claims_section(claims, meta["alpha"])
    summaries = BaseSummaries(runs, plan, domains, meta["n_boot"], summary)
    out += losses_section(claims, summaries, study, n_tests)
    out += not_run_section(plan, runs, study, meta)
    out += ["## Definitions", "", DEFINITIONS, "## Data", ""]
    out += [f"- `{rel(tables / name)}`: {what}" for name, what in (
        (RUNS, "one line per finished run (params, per-run figures, weight change and angles; "
               "`used`, `note`)"),
        (PLAN, "every planned run, finished or not, and why"),
        (SELECTION, "the learning-rate selection runs"),
        (SUMMARY, "per configuration: mean, 95 % CI and run count of each figure"),
        (CLAIMS, "every test and reported difference of every claim"),
        (MATRICES, "every finished run's full WER matrix, long"),
        (VOICES, "final WER per test voice and configuration"),
    )]  # fmt: skip
    return "\n".join(out).rstrip() + "\n"


def rerender_v2(study: Mapping[str, Any], out_dir: str | Path | None = None, *,
                command: str) -> list[Path]:  # fmt: skip
    """Render the page of ``study`` again from its CSVs alone, without the store; returns the
    files written (the page first).

    For a study whose store is gone: ``plan.csv`` takes the config's withdrawals
    (``experiments.study.store_v2.mark_withdrawn``, as when the plan is read from the store;
    the reason is stated once, under *Protocol*), and ``meta.json`` takes ``study`` as the
    config and ``command`` as the re-render's. Nothing that needs the store
    is recomputed: the runs, claims, levels, matrices and figures are the CSVs' own. Raises
    ``FileNotFoundError`` when ``out_dir`` holds no results of ``study``.
    """
    page, tables = page_paths(study, ROOT / "docs" if out_dir is None else out_dir)
    meta_file = tables / META
    if not meta_file.is_file() or not (tables / PLAN).is_file():
        raise FileNotFoundError(f"{tables}: no results of study {study['name']!r} to render "
                                "again (regenerate them from the study's store)")  # fmt: skip
    meta = json.loads(meta_file.read_text())
    if meta.get("study_name") != study["name"]:
        raise FileExistsError(f"{page} holds results of study {meta.get('study_name')!r}, not "
                              f"{study['name']!r}")  # fmt: skip
    mark_withdrawn(_read(tables, PLAN), study).to_csv(tables / PLAN, index=False)
    meta.update(study=dict(study), rerendered=command)
    meta_file.write_text(json.dumps(meta, indent=2, default=_json_safe) + "\n")
    page.write_text(render_v2(tables, page))
    return [page, tables / PLAN, meta_file]


# -- writing ----------------------------------------------------------------------------------------
def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(type(value).__name__)


def _display(path: str | Path | None) -> str:
    """``path`` relative to the repository when under it (the page must not name a home)."""
    if path is None:
        return ""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(ROOT).as_posix()
    except ValueError:
        return Path(path).name


def _lost_utterances(tables: Path, runs: pd.DataFrame) -> list[str]:
    """Runs whose per-utterance errors the page in ``tables`` used and ``runs`` (read from the
    store now) lacks: the store's artifacts did not answer for them (moved, not mounted)."""
    if not (tables / RUNS).is_file() or "utterances" not in runs:
        return []
    before = _read(tables, RUNS)
    if "utterances" not in before:
        return []
    had = set(before.loc[before["utterances"].astype(str) == "True", "run_id"])
    # a run superseded since (a newer run of its configuration) is rightly read no more
    now = runs[runs["run_id"].isin(had) & runs["used"].astype(bool) & (runs["phase"] == "test")]
    return sorted(now.loc[~now["utterances"].astype(bool), "run_id"])


def _guard(page: Path, tables: Path, name: str, finished: int, force: bool,
           runs: pd.DataFrame) -> None:  # fmt: skip
    """Refuse to replace another study's page, or (without ``force``) a page with results by
    one without any, or by one that lost runs' per-utterance errors."""
    meta_file = tables / META
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        if meta.get("study_name") not in (None, name):
            raise FileExistsError(
                f"{page} holds results of study {meta['study_name']!r}, not {name!r}: not "
                "replacing them"
            )
        if not force and finished == 0 and int(meta.get("finished") or 0) > 0:
            raise FileExistsError(
                f"{page} holds results of {meta['finished']} finished runs of study {name!r} and "
                "the store has none: not replacing them with an empty page (wrong tracking "
                "URI? force=True replaces them)"
            )
    elif page.is_file() and GENERATOR not in page.read_text()[:400]:
        raise FileExistsError(f"{page} was not written by {GENERATOR}: not replacing it")
    lost = [] if force else _lost_utterances(tables, runs)
    if lost:
        raise FileExistsError(
            f"{page}: the store gave no per-utterance errors for {len(lost)} run(s) whose errors "
            f"the page used (first: {', '.join(lost[:3])}), so their claims would change: not "
            "replacing it. Are the store's artifacts where its experiment's artifact location "
            "says? force=True replaces it"
        )


def _log_to_record(
    tracking_uri: str, study: Mapping[str, Any], record_run_id: str | None, files: Sequence[Path],
    page: Path,
) -> str | None:  # fmt: skip
    """Logs the page (``results/``) and the rest (``results/<tables>/``) to the study record
    run: ``record_run_id`` or the newest one of the study; ``None`` when there is none."""
    from experiments.study.collect import study_records
    from experiments.tracking import get_client

    if record_run_id is None:
        records = study_records(tracking_uri, study["experiment"], study["name"])
        if not records:
            return None
        record_run_id = records[0].info.run_id
    from mlflow.exceptions import MlflowException

    client = get_client(tracking_uri)
    try:
        for f in files:
            client.log_artifact(record_run_id, str(f),
                                "results" if f == page else f"results/{f.parent.name}")  # fmt: skip
    except (MlflowException, OSError) as exc:  # the files are written; the copy is a courtesy
        warnings.warn(f"results not logged to the study record run {record_run_id}: {exc}",
                      RuntimeWarning, stacklevel=3)  # fmt: skip
        return None
    return record_run_id


def regenerate_v2(
    study: Mapping[str, Any],
    tracking_uri: str,
    out_dir: str | Path | None = None,
    *,
    command: str,
    source: str | Path | None = None,
    wall_seconds: float | None = None,
    not_run: Sequence[str] = (),
    n_boot: int = 2000,
    alpha: float = 0.05,
    record_run_id: str | None = None,
    force: bool = False,
) -> list[Path]:
    """Write the results page of a v2 ``study`` (a config from
    ``experiments.study.config.load_study_v2``), its CSVs and figures, from the store at
    ``tracking_uri``; returns the files written (the page first).

    Arguments
    ---------
    out_dir : path or None
        The docs folder (default: the repository's ``docs/``): the page is
        ``<out_dir>/results_<stem>.md``, the rest in ``<out_dir>/results_<stem>/``
        (:func:`page_paths`).
    command : str
        The command that produced the results (printed on the page).
    source : path or None
        The study config file (named on the page).
    wall_seconds : float or None
        The study's wall time; ``None``: the sum over its record runs in the store.
    not_run : list of str
        Runs the runner did not run, one line each with its reason (listed on the page).
    n_boot, alpha : int, float
        Bootstrap draws (2,000 by the protocol) and the claims' level.
    record_run_id : str or None
        The MLflow run the page, CSVs and figures are logged to; ``None``: the study's newest
        record run (``cl_ssvdo.kind = study``), if any.
    force : bool
        Replace a page with results by one without any (an empty store).

    Raises ``FileExistsError`` rather than replace another study's page, a page this module
    did not write, or (without ``force``) results with an empty page or with one whose runs
    lost their per-utterance errors (the store's artifacts unreachable).
    """
    from experiments.study.collect import study_record
    from experiments.study.plots_v2 import front_figure, matrices_figure, voices_figure

    page, tables = page_paths(study, ROOT / "docs" if out_dir is None else out_dir)
    domains = study_domains(study)
    store = read_store(study, tracking_uri)
    finished = int((store.plan["status"] == "finished").sum())
    _guard(page, tables, study["name"], finished, force, store.runs)
    record = study_record(tracking_uri, study["experiment"], study["name"])
    if wall_seconds is None:
        wall_seconds = record.get("wall_seconds")
    claims = claims_frame(study, store, n_boot=n_boot, alpha=alpha)

    tables.mkdir(parents=True, exist_ok=True)
    page.parent.mkdir(parents=True, exist_ok=True)
    for stale in (FRONT_PNG, MATRICES_PNG, VOICES_PNG):
        (tables / stale).unlink(missing_ok=True)
    runs = store.runs.drop(columns=["plan_index", "lr_key"], errors="ignore")
    written = {
        RUNS: runs,
        PLAN: store.plan,
        SELECTION: selection_frame(store),
        CLAIMS: claims,
        MATRICES: matrices_frame(store, domains),
        VOICES: voices_frame(store.utterances, domains),
    }
    files = [page]
    for name, frame in written.items():
        frame.to_csv(tables / name, index=False)
        files.append(tables / name)
    meta = {
        "study_name": study["name"],
        "study": dict(study),
        "domains": domains,
        "command": command,
        "source": _display(source),
        "wall_seconds": wall_seconds,
        "invocations": record.get("invocations"),
        "runner_not_run": list(not_run),
        "selected": store.selected,
        "n_boot": n_boot,
        "alpha": alpha,
        "finished": finished,
        "planned": len(store.plan),
        "test_sets": scored_set_sizes(store.utterances, domains),
    }
    (tables / META).write_text(json.dumps(meta, indent=2, default=_json_safe) + "\n")
    files.append(tables / META)

    # the summary and the figures from the CSVs just written
    back_runs, back_plan = _read(tables, RUNS), _read(tables, PLAN)
    summary = summarise(back_runs, back_plan, domains, n_boot)
    summary.to_csv(tables / SUMMARY, index=False)
    files.append(tables / SUMMARY)
    configs = list(summary["config"]) if not summary.empty else []
    test_mats = _read(tables, MATRICES)
    test_mats = test_mats[(test_mats["phase"] == "test") & test_mats["used"].astype(bool)]
    drawn = [
        front_figure(summary, tables / FRONT_PNG, f"Learning vs forgetting ({study['name']})")
        if not summary.empty else None,
        matrices_figure(test_mats, configs, domains, tables / MATRICES_PNG),
        voices_figure(_read(tables, VOICES), configs, domains, tables / VOICES_PNG),
    ]  # fmt: skip
    files += [f for f in drawn if f is not None]
    page.write_text(render_v2(tables, page))
    _log_to_record(tracking_uri, study, record_run_id, files, page)
    return files
