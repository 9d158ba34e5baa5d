"""``docs/results.md`` from the tracking store: the study's tables, figures and claim verdicts.

Data flow: :func:`collect_runs` reads every finished run of one study from MLflow (one row per
run; the WER matrix is rebuilt from the ``wer/<domain>`` step metrics) -> :func:`aggregate`
(mean and std over seeds, ``experiments.compare.aggregate_seeds``) -> :func:`evaluate_claims`
(four verdicts by the rules below) -> :func:`write_results` (Markdown, PNGs, small CSVs). The
CSVs hold everything the page needs, so :func:`load_runs_csv` rebuilds it without the store.
Metric maths stays in ``cl_ssvdo.metrics``; figures come from ``experiments.plots``.

Per-run columns beyond ``compare.row_from_mlflow``'s:

- ``new_domain_wer``: mean over experiences ``i`` of ``R[i, i - 1]``, the WER on each domain
  right after training on it (``references.diagonal``): how well a method adapts;
- ``first_forgetting``: ``F[E, 0]`` of ``metrics.forgetting_matrix``: WER points lost on the
  first domain (adult) at the end, against the best WER it ever had;
- ``base_wer/<domain>``: row 0 (the base model before any adaptation);
- ``model`` (study model key), ``method`` (``ssvdo@<inner share>`` for SSVD-O, else the
  strategy name), ``inner_share``, ``lr``, ``max_steps``, ``duration_s``, ``git_commit``.

Verdict rules (:func:`compare_groups`, :func:`verdict`)
-------------------------------------------------------
A *comparison* puts the per-seed values of the side a claim says is better (``a``) against
the other side (``b``). ``advantage`` = how much ``a`` is better (WER points, or percent for
claim 4); ``spread`` = pooled standard deviation over seeds ``sqrt((sd_a^2 + sd_b^2) / 2)``
(``ddof=1``); ``threshold = max(spread, margin)``. The outcome is ``for`` when
``advantage > threshold``, ``against`` when ``advantage < -threshold``, else ``tie``; with fewer
than two seeds on either side it is ``tie`` (no spread to judge against). A claim is
**confirmed** when every comparison is ``for``, **refuted** when at least one is ``against``,
and **inconclusive** otherwise (including when its runs are missing; claim 1, which names four
baselines, also needs each of them compared at least once to be confirmed).

The four claims and their comparisons (``s`` = SSVD-O's inner share of the budget):

1. SSVD-O at the reference share vs each matched baseline (SSVD, LoRA, DoRA, PiSSA), every
   model and budget, new-domain WER (lower is better). The gap to full fine-tuning is reported.
2. At each model's smallest budget: SSVD-O with the largest ``s`` vs the smallest ``s``,
   new-domain WER (inner-heavy better = the inner transform is the more efficient half).
3. At every model and budget: smallest ``s`` vs largest ``s`` on ``learning_mean -
   forgetting_mean`` (WER points gained on new domains minus points lost on earlier ones).
4. Outer value ``v = 100 * (W_ssvd - W_ssvdo) / W_ssvd`` per seed (relative new-domain WER
   gain of SSVD-O at the reference share over SSVD, the inner transform alone, at the same
   budget): largest model vs smallest model at each budget level (budgets sorted, aligned by
   position), ``margin = min_margin_relative``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cl_ssvdo import metrics
from experiments.compare import aggregate_seeds, row_from_mlflow
from experiments.plots import learning_forgetting_scatter, save, wer_vs_params
from experiments.references import diagonal
from experiments.tracking import check_tracking, get_client

__all__ = [
    "BASELINE_ADAPTERS",
    "ClaimVerdict",
    "Comparison",
    "DocSettings",
    "aggregate",
    "collect_runs",
    "compare_groups",
    "evaluate_claims",
    "load_runs_csv",
    "method_label",
    "pareto_front",
    "render",
    "study_record",
    "verdict",
    "write_not_run_page",
    "write_results",
]

BASELINE_ADAPTERS = ("ssvd", "lora", "dora", "pissa")
DISPLAY = {
    "ssvd": "SSVD",
    "lora": "LoRA",
    "dora": "DoRA",
    "pissa": "PiSSA",
    "full": "full FT",
    "naive": "Naive",
    "replay": "Replay",
    "ewc": "EWC",
    "weight_avg": "weight avg.",
}
RUNS_CSV, SUMMARY_CSV, CLAIMS_CSV, META_JSON = "runs.csv", "summary.csv", "claims.csv", "meta.json"


@dataclass
class DocSettings:
    """What the page needs to know about the study besides the runs.

    ``models`` are the study's model keys, smallest model first; ``methods`` (optional) the
    planned method labels per model: other runs found under the study's tag are ignored.
    """

    study: str
    experiment: str
    command: str
    models: list[str]
    budgets: dict[str, list[int]]
    seeds: list[int]
    inner_shares: list[float]
    reference_share: float
    min_margin: float = 0.5
    min_margin_relative: float = 2.0
    estimate: str = ""
    description: str = ""
    planned_runs: dict[str, int] = field(default_factory=dict)
    methods: dict[str, list[str]] | None = None
    presets: dict[str, str] = field(default_factory=dict)


# -- reading the store ---------------------------------------------------------------------------
def method_label(strategy: str, adapter: str, inner_share: float | None) -> str:
    """``ssvdo@0.25`` for SSVD-O with a constant ``{budget, inner_share}`` schedule, else the
    strategy name.

    >>> method_label("ssvdo", "ssvdo", 0.25), method_label("lora", "lora", None)
    ('ssvdo@0.25', 'lora')
    """
    if adapter == "ssvdo" and inner_share is not None and math.isfinite(inner_share):
        return f"ssvdo@{inner_share:g}"
    return strategy


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


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
    return out


def _run_row(client, run) -> dict[str, Any]:
    params, tags = run.data.params, run.data.tags
    row = row_from_mlflow(run)
    domains = [d for d in params.get("stream.domains", "").split(",") if d]
    share = _number(params.get("config.strategy.adapter.schedule.constant.inner_share"))
    row["model"] = tags.get("cl_ssvdo.model_size") or params.get("config.model.preset", "?")
    row["inner_share"] = share if row["adapter"] == "ssvdo" else math.nan
    row["method"] = method_label(row["strategy"], row["adapter"], row["inner_share"])
    row["lr"] = _number(params.get("config.train.optimizer.lr"))
    row["max_steps"] = _number(params.get("config.train.max_steps"))
    row["git_commit"] = params.get("git.commit", "")
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
    frame = frame.drop_duplicates(["model", "method", "budget", "seed"], keep="last")
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


def study_record(tracking_uri: str, experiment: str, study: str) -> dict[str, Any]:
    """The newest study record run (``cl_ssvdo.kind = study``): wall time, status, command."""
    if _sqlite_missing(tracking_uri):
        return {}
    client = get_client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return {}
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`cl_ssvdo.study` = '{study}' and tags.`cl_ssvdo.kind` = 'study'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        return {}
    run = runs[0]
    return {
        "status": run.info.status,
        "wall_seconds": run.data.metrics.get("study_wall_seconds", math.nan),
        "command": run.data.params.get("study.command", ""),
        "started_ms": run.info.start_time,
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


# -- aggregation ---------------------------------------------------------------------------------
def aggregate(frame: pd.DataFrame, models: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean and ``<column>_std`` over seeds per (model, method, budget), models in order."""
    if frame.empty:
        return pd.DataFrame()
    parts = []
    order = list(models) if models else sorted(frame["model"].unique())
    for model in order:
        sub = frame[frame["model"] == model]
        if sub.empty:
            continue
        # aggregate_seeds groups by (strategy, adapter, budget): the method label is the strategy.
        keyed = sub.drop(columns=["strategy"]).rename(columns={"method": "strategy"})
        keyed = keyed.drop(columns=["start_time"], errors="ignore")
        agg = aggregate_seeds(keyed).rename(columns={"strategy": "method"})
        agg.insert(0, "model", model)
        parts.append(agg)
    out = pd.concat(parts, ignore_index=True)
    out["_model"] = out["model"].map(order.index)
    out["_method"] = out["method"].map(_method_rank)
    out = out.sort_values(["_model", "budget", "_method"], na_position="last", kind="stable")
    return out.drop(columns=["_model", "_method"]).reset_index(drop=True)


METHOD_ORDER = ("ssvd", "lora", "dora", "pissa", "full", "naive", "replay", "ewc", "weight_avg")


def _method_rank(method: str) -> float:
    """SSVD-O splits first (by share), then the matched baselines, full FT, the CL references."""
    if method.startswith("ssvdo@"):
        return _number(method.split("@", 1)[1])
    if method in METHOD_ORDER:
        return 2.0 + METHOD_ORDER.index(method)
    return 2.0 + len(METHOD_ORDER)


def _values(
    frame: pd.DataFrame, model: str, method: str, budget: float | None, column: str
) -> pd.Series:
    """Per-seed values (indexed by seed) of one (model, method, budget) cell; finite only."""
    sel = (frame["model"] == model) & (frame["method"] == method)
    if budget is None or (isinstance(budget, float) and math.isnan(budget)):
        sel &= frame["budget"].isna()
    else:
        sel &= frame["budget"] == budget
    sub = frame.loc[sel, ["seed", column]].dropna()
    return pd.Series(sub[column].to_numpy(dtype=float), index=sub["seed"].to_numpy())


# -- verdict rules -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    """One comparison of a claim: ``a`` is the side the claim says is better."""

    label: str
    name_a: str
    name_b: str
    metric: str
    mean_a: float
    std_a: float
    n_a: int
    mean_b: float
    std_b: float
    n_b: int
    advantage: float
    threshold: float
    outcome: str  # "for" | "against" | "tie"
    note: str = ""
    model: str = ""
    budget: float = math.nan
    method_a: str = ""
    method_b: str = ""


def _stats(values: Sequence[float]) -> tuple[float, float, int]:
    arr = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if arr.size == 0:
        return math.nan, math.nan, 0
    std = float(arr.std(ddof=1)) if arr.size >= 2 else math.nan
    return float(arr.mean()), std, int(arr.size)


def compare_groups(
    label: str,
    a: Sequence[float],
    b: Sequence[float],
    *,
    lower_is_better: bool,
    margin: float,
    name_a: str = "a",
    name_b: str = "b",
    metric: str = "",
    **context: Any,
) -> Comparison:
    """Apply the rule of the module docstring to per-seed values ``a`` and ``b``.

    >>> c = compare_groups("x", [20.0, 21.0, 22.0], [25.0, 26.0, 27.0], lower_is_better=True, margin=0.5)
    >>> c.outcome, c.advantage, c.threshold
    ('for', 5.0, 1.0)
    """
    if margin < 0 or not math.isfinite(margin):
        raise ValueError(f"margin: must be a finite number >= 0, got {margin!r}")
    unknown = set(context) - {"model", "budget", "method_a", "method_b"}
    if unknown:
        raise TypeError(f"compare_groups: unknown context {sorted(unknown)}")
    mean_a, std_a, n_a = _stats(a)
    mean_b, std_b, n_b = _stats(b)
    advantage = (mean_b - mean_a) if lower_is_better else (mean_a - mean_b)
    if n_a < 2 or n_b < 2:
        note = "fewer than 2 seeds on a side: no spread to judge against"
        return Comparison(
            label, name_a, name_b, metric, mean_a, std_a, n_a, mean_b, std_b, n_b,
            advantage, math.nan, "tie", note, **context,
        )  # fmt: skip
    threshold = max(math.sqrt((std_a**2 + std_b**2) / 2.0), margin)
    outcome = "for" if advantage > threshold else "against" if advantage < -threshold else "tie"
    return Comparison(
        label, name_a, name_b, metric, mean_a, std_a, n_a, mean_b, std_b, n_b,
        advantage, threshold, outcome, **context,
    )  # fmt: skip


def verdict(comparisons: Sequence[Comparison]) -> str:
    """``confirmed`` (all ``for``), ``refuted`` (any ``against``) or ``inconclusive``."""
    outcomes = [c.outcome for c in comparisons]
    if "against" in outcomes:
        return "refuted"
    if outcomes and all(o == "for" for o in outcomes):
        return "confirmed"
    return "inconclusive"


@dataclass
class ClaimVerdict:
    number: int
    claim: str
    test: str
    verdict: str
    sentence: str
    comparisons: list[Comparison] = field(default_factory=list)


CLAIMS = {
    1: "SSVD-O beats LoRA, DoRA, PiSSA and SSVD at matched parameter budgets on domain-shifted "
    "ASR and narrows the gap to full fine-tuning.",
    2: "Under tight budgets the inner transform is more parameter-efficient than the outer one.",
    3: "A smaller inner ratio with a larger outer rank gives a better learning/forgetting "
    "trade-off.",
    4: "The outer transform gains value as the model grows.",
}

CLAIM_TESTS = {
    1: "SSVD-O (reference share) vs each matched baseline, every model and budget, new-domain WER",
    2: "at each model's smallest budget: largest vs smallest inner share, new-domain WER",
    3: "every model and budget: smallest vs largest inner share, learning - forgetting",
    4: "outer value (SSVD-O over SSVD, %) on the largest vs the smallest model, per budget level",
}


def _name(method: str) -> str:
    if method.startswith("ssvdo@"):
        return f"SSVD-O (s={method.split('@', 1)[1]})"
    return DISPLAY.get(method, method)


def _budget_text(budget: float) -> str:
    return "no budget" if math.isnan(budget) else f"{int(budget):,}"


def _pm(mean: float, std: float, digits: int = 1) -> str:
    if not math.isfinite(mean):
        return "-"
    if not math.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _describe(c: Comparison, unit: str = "") -> str:
    if c.outcome == "for":
        how = f"{c.name_a} better by {c.advantage:.2f}{unit} > {c.threshold:.2f}"
    elif c.outcome == "against":
        how = f"{c.name_b} better by {-c.advantage:.2f}{unit} > {c.threshold:.2f}"
    elif math.isnan(c.threshold):
        how = f"difference {c.advantage:+.2f}{unit}; {c.note}"
    else:
        how = f"difference {c.advantage:+.2f}{unit} within {c.threshold:.2f}"
    return (
        f"{c.label}: {c.name_a} {_pm(c.mean_a, c.std_a)} vs {c.name_b} "
        f"{_pm(c.mean_b, c.std_b)} ({how})"
    )


def _sentence(number: int, outcome: str, lead: str, comparisons: Sequence[Comparison]) -> str:
    counts = {k: sum(c.outcome == k for c in comparisons) for k in ("for", "against", "tie")}
    if not comparisons:
        tail = "No comparison could be made (the runs it needs are missing)."
    else:
        tail = (
            f"{counts['for']} of {len(comparisons)} comparisons support it, "
            f"{counts['against']} contradict it, {counts['tie']} are within the spread."
        )
    return f"**Claim {number}: {outcome}.** {lead} {tail}"


def _models_with(frame: pd.DataFrame, models: Sequence[str]) -> list[str]:
    present = set(frame["model"].unique()) if not frame.empty else set()
    return [m for m in models if m in present]


def _shares(frame: pd.DataFrame, model: str, budget: float) -> list[float]:
    sub = frame[(frame["model"] == model) & (frame["budget"] == budget)]
    return sorted({float(s) for s in sub["inner_share"].dropna()})


def _budgets(frame: pd.DataFrame, model: str) -> list[float]:
    sub = frame[frame["model"] == model]["budget"].dropna()
    return sorted({float(b) for b in sub})


def _claim_verdict(number: int, outcome: str, lead: str, comps: list[Comparison]) -> ClaimVerdict:
    return ClaimVerdict(
        number,
        CLAIMS[number],
        CLAIM_TESTS[number],
        outcome,
        _sentence(number, outcome, lead, comps),
        comps,
    )


def claim1(frame: pd.DataFrame, settings: DocSettings) -> ClaimVerdict:
    ref = method_label("ssvdo", "ssvdo", settings.reference_share)
    comps: list[Comparison] = []
    gaps: list[str] = []
    for model in _models_with(frame, settings.models):
        baselines = sorted(
            set(
                frame[(frame["model"] == model) & frame["adapter"].isin(BASELINE_ADAPTERS)][
                    "method"
                ]
            )
        )
        full = _values(frame, model, "full", None, "new_domain_wer")
        for budget in _budgets(frame, model):
            ours = _values(frame, model, ref, budget, "new_domain_wer")
            if ours.empty:
                continue
            best_gap: tuple[float, str] | None = None
            for base in baselines:
                theirs = _values(frame, model, base, budget, "new_domain_wer")
                if theirs.empty:
                    continue
                comps.append(
                    compare_groups(
                        f"{model} @ {_budget_text(budget)}",
                        ours,
                        theirs,
                        lower_is_better=True,
                        margin=settings.min_margin,
                        name_a="SSVD-O",
                        name_b=_name(base),
                        metric="new-domain WER",
                        model=model,
                        budget=budget,
                        method_a=ref,
                        method_b=base,
                    )
                )
                gap = float(theirs.mean() - full.mean()) if not full.empty else math.nan
                if math.isfinite(gap) and (best_gap is None or gap < best_gap[0]):
                    best_gap = (gap, _name(base))
            if not full.empty and best_gap is not None:
                gaps.append(
                    f"{model} @ {_budget_text(budget)}: SSVD-O {ours.mean() - full.mean():+.2f}, "
                    f"best baseline ({best_gap[1]}) {best_gap[0]:+.2f}"
                )
    outcome = verdict(comps)
    lead = (
        f"SSVD-O at inner share {settings.reference_share:g} against the baselines matched to "
        f"its parameter count, on new-domain WER (lower is better)."
    )
    missing = [_name(b) for b in BASELINE_ADAPTERS if b not in {c.method_b for c in comps}]
    if missing:
        lead += f" Not compared (no runs): {', '.join(missing)}."
        if outcome == "confirmed":  # the claim names all four baselines
            outcome = "inconclusive"
    if gaps:
        lead += " Gap to full fine-tuning (WER points above it): " + "; ".join(gaps) + "."
    return _claim_verdict(1, outcome, lead, comps)


def claim2(frame: pd.DataFrame, settings: DocSettings) -> ClaimVerdict:
    comps = []
    for model in _models_with(frame, settings.models):
        budgets = _budgets(frame, model)
        if not budgets:
            continue
        tight = budgets[0]
        shares = _shares(frame, model, tight)
        if len(shares) < 2:
            continue
        hi, lo = shares[-1], shares[0]
        comps.append(
            compare_groups(
                f"{model} @ {_budget_text(tight)}",
                _values(frame, model, method_label("ssvdo", "ssvdo", hi), tight, "new_domain_wer"),
                _values(frame, model, method_label("ssvdo", "ssvdo", lo), tight, "new_domain_wer"),
                lower_is_better=True,
                margin=settings.min_margin,
                name_a=f"s={hi:g}",
                name_b=f"s={lo:g}",
                metric="new-domain WER",
                model=model,
                budget=tight,
                method_a=method_label("ssvdo", "ssvdo", hi),
                method_b=method_label("ssvdo", "ssvdo", lo),
            )
        )
    outcome = verdict(comps)
    lead = (
        "At each model's smallest budget, SSVD-O with the largest inner share against the "
        "smallest, on new-domain WER (lower is better; same budget, so better = more efficient)."
    )
    return _claim_verdict(2, outcome, lead, comps)


def claim3(frame: pd.DataFrame, settings: DocSettings) -> ClaimVerdict:
    frame = frame.assign(tradeoff=frame["learning_mean"] - frame["forgetting_mean"])
    comps = []
    details = []
    for model in _models_with(frame, settings.models):
        for budget in _budgets(frame, model):
            shares = _shares(frame, model, budget)
            if len(shares) < 2:
                continue
            lo, hi = (method_label("ssvdo", "ssvdo", s) for s in (shares[0], shares[-1]))
            comps.append(
                compare_groups(
                    f"{model} @ {_budget_text(budget)}",
                    _values(frame, model, lo, budget, "tradeoff"),
                    _values(frame, model, hi, budget, "tradeoff"),
                    lower_is_better=False,
                    margin=settings.min_margin,
                    name_a=f"s={shares[0]:g}",
                    name_b=f"s={shares[-1]:g}",
                    metric="learning - forgetting",
                    model=model,
                    budget=budget,
                    method_a=lo,
                    method_b=hi,
                )
            )
            d_learn = (
                _values(frame, model, lo, budget, "learning_mean").mean()
                - _values(frame, model, hi, budget, "learning_mean").mean()
            )
            d_forget = (
                _values(frame, model, lo, budget, "forgetting_mean").mean()
                - _values(frame, model, hi, budget, "forgetting_mean").mean()
            )
            details.append(
                f"{model} @ {_budget_text(budget)}: learning {d_learn:+.2f}, "
                f"forgetting {d_forget:+.2f}"
            )
    outcome = verdict(comps)
    lead = (
        "Smallest against largest inner share at every budget, on learning minus forgetting "
        "(WER points gained on new domains minus points lost on earlier ones; higher is better)."
    )
    if details:
        lead += " Smallest minus largest share: " + "; ".join(details) + "."
    return _claim_verdict(3, outcome, lead, comps)


def _outer_value(frame: pd.DataFrame, model: str, budget: float, ref: str) -> pd.Series:
    """Per seed: ``100 * (W_ssvd - W_ssvdo) / W_ssvd`` on new-domain WER (paired by seed)."""
    ssvd = _values(frame, model, "ssvd", budget, "new_domain_wer")
    ours = _values(frame, model, ref, budget, "new_domain_wer")
    seeds = sorted(set(ssvd.index) & set(ours.index))
    return pd.Series(
        [100.0 * (ssvd[s] - ours[s]) / max(ssvd[s], 1e-9) for s in seeds], index=seeds, dtype=float
    )


def claim4(frame: pd.DataFrame, settings: DocSettings) -> ClaimVerdict:
    ref = method_label("ssvdo", "ssvdo", settings.reference_share)
    models = _models_with(frame, settings.models)
    comps = []
    if len(models) >= 2:
        small, large = models[0], models[-1]
        for b_small, b_large in zip(_budgets(frame, small), _budgets(frame, large), strict=False):
            comps.append(
                compare_groups(
                    f"{_budget_text(b_small)} on {small} vs {_budget_text(b_large)} on {large}",
                    _outer_value(frame, large, b_large, ref),
                    _outer_value(frame, small, b_small, ref),
                    lower_is_better=False,
                    margin=settings.min_margin_relative,
                    name_a=large,
                    name_b=small,
                    metric="outer value (%)",
                    method_a=ref,
                    method_b=ref,
                )
            )
    outcome = verdict(comps)
    lead = (
        f"Value of the outer transform = relative new-domain WER reduction (%) of SSVD-O "
        f"(s={settings.reference_share:g}) over SSVD (inner transform only) at the same budget, "
        f"largest model against smallest, budget levels aligned by rank."
    )
    if len(models) < 2:
        lead += f" Only {len(models)} model size(s) in the results."
    return _claim_verdict(4, outcome, lead, comps)


def evaluate_claims(frame: pd.DataFrame, settings: DocSettings) -> list[ClaimVerdict]:
    """The four verdicts from a per-run frame (columns as produced by :func:`collect_runs`)."""
    return [f(frame, settings) for f in (claim1, claim2, claim3, claim4)]


# -- losses of SSVD-O, with data-driven likely reasons ------------------------------------------
def _mean(frame: pd.DataFrame, model: str, method: str, budget: float | None, col: str) -> float:
    values = _values(frame, model, method, budget, col)
    return float(values.mean()) if not values.empty else math.nan


def _loss_notes(
    frame: pd.DataFrame, settings: DocSettings, verdicts: Sequence[ClaimVerdict]
) -> list[str]:
    """One bullet per significant loss of SSVD-O at the reference share: claim 1's comparisons
    and AWER against every unbudgeted reference (full FT, Naive, Replay, ...), each with the
    numbers that point at a likely reason."""
    ref = method_label("ssvdo", "ssvdo", settings.reference_share)
    losses = [c for c in verdicts[0].comparisons if c.outcome == "against"]
    for model in _models_with(frame, settings.models):
        refs = sorted(set(frame[(frame["model"] == model) & frame["budget"].isna()]["method"]))
        for budget in _budgets(frame, model):
            ours = _values(frame, model, ref, budget, "awer")
            if ours.empty:
                continue
            for other in refs:
                c = compare_groups(
                    f"{model} @ {_budget_text(budget)}",
                    ours,
                    _values(frame, model, other, None, "awer"),
                    lower_is_better=True,
                    margin=settings.min_margin,
                    name_a="SSVD-O",
                    name_b=_name(other),
                    metric="AWER",
                    model=model,
                    budget=budget,
                    method_a=ref,
                    method_b=other,
                )
                if c.outcome == "against":
                    losses.append(c)
    steps = "/".join(str(int(s)) for s in sorted(set(frame["max_steps"].dropna())))
    return [_loss_note(frame, c, steps or "the fixed") for c in losses]


def _loss_note(frame: pd.DataFrame, c: Comparison, steps: str) -> str:
    other_budget = None if c.method_b in set(frame[frame["budget"].isna()]["method"]) else c.budget

    def mean(method: str, budget: float | None, col: str) -> float:
        return _mean(frame, c.model, method, budget, col)

    l_ours, l_other = (mean(c.method_a, c.budget, "learning_mean"),
                       mean(c.method_b, other_budget, "learning_mean"))  # fmt: skip
    f_ours, f_other = (mean(c.method_a, c.budget, "forgetting_mean"),
                       mean(c.method_b, other_budget, "forgetting_mean"))  # fmt: skip
    p_ours, p_other = (mean(c.method_a, c.budget, "trainable_params"),
                       mean(c.method_b, other_budget, "trainable_params"))  # fmt: skip
    text = f"- {c.metric}, {_describe(c)}."
    finite = all(math.isfinite(v) for v in (l_ours, l_other, f_ours, f_other))
    if finite and l_ours < l_other:
        text += f" SSVD-O learned less on the new domains (learning {l_ours:.1f} vs {l_other:.1f}"
        text += (
            f") while forgetting less ({f_ours:.1f} vs {f_other:.1f})" if f_ours <= f_other else ")"
        )
        text += (
            ". Likely reason: its update rotates the pretrained singular vectors and shifts the "
            f"singular values from zero, so within {steps} steps per experience and untuned "
            f"learning rates it moves less than {c.name_b}."
        )
    elif finite and f_ours > f_other:
        text += (
            f" SSVD-O forgot more ({f_ours:.1f} vs {f_other:.1f} WER points; learning "
            f"{l_ours:.1f} vs {l_other:.1f}). Likely reason: "
            + (
                f"{c.name_b} protects earlier domains (replay, a penalty or averaging), which an "
                "adapter alone does not."
                if c.method_b in ("replay", "ewc", "weight_avg")
                else "each experience rotates the dominant singular subspaces the earlier "
                "domains rely on, and nothing holds them in place."
            )
        )
    if math.isfinite(p_ours) and math.isfinite(p_other):
        if p_other > p_ours:
            text += f" {c.name_b} trained more parameters ({p_other:,.0f} vs {p_ours:,.0f})."
        elif p_other < p_ours:
            text += (
                f" Not a budget artefact: {c.name_b} trained {p_other:,.0f} parameters, "
                f"SSVD-O {p_ours:,.0f}."
            )
    return text


# -- figures -------------------------------------------------------------------------------------
def pareto_front(points: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Points not dominated in (learning: higher, forgetting: lower), by increasing learning.

    >>> pts = [{"learning": 5, "forgetting": 1}, {"learning": 3, "forgetting": 2},
    ...        {"learning": 8, "forgetting": 4}]
    >>> [p["learning"] for p in pareto_front(pts)]
    [5, 8]
    """
    finite = [
        p
        for p in points
        if math.isfinite(float(p["learning"])) and math.isfinite(float(p["forgetting"]))
    ]
    front = []
    for p in finite:
        dominated = any(
            q is not p
            and q["learning"] >= p["learning"]
            and q["forgetting"] <= p["forgetting"]
            and (q["learning"] > p["learning"] or q["forgetting"] < p["forgetting"])
            for q in finite
        )
        if not dominated:
            front.append(p)
    return sorted(front, key=lambda p: float(p["learning"]))


def _points(agg: pd.DataFrame, model: str) -> list[dict[str, Any]]:
    out = []
    for row in agg[agg["model"] == model].to_dict("records"):
        budget = row.get("budget", math.nan)
        label = _name(row["method"]) + ("" if math.isnan(budget) else f" {budget / 1000:g}k")
        out.append(
            {
                "label": label,
                "group": _name(row["method"]),
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


# -- Markdown ------------------------------------------------------------------------------------
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


def _results_table(agg: pd.DataFrame, model: str, first_domain: str) -> str:
    rows = []
    for row in agg[agg["model"] == model].to_dict("records"):
        cells = [
            _name(row["method"]),
            _budget_text(row.get("budget", math.nan)),
            _params_cell(row),
        ]
        for col in ("new_domain_wer", "first_forgetting", "awer", "bwt"):
            cells.append(_pm(row.get(col, math.nan), row.get(f"{col}_std", math.nan)))
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


def _base_table(frame: pd.DataFrame, models: Sequence[str], domains: Sequence[str]) -> str:
    rows = []
    for model in models:
        sub = frame[frame["model"] == model]
        if sub.empty:
            continue
        cells = [model]
        for d in domains:
            col = sub.get(f"base_wer/{d}", pd.Series(dtype=float)).dropna()
            cells.append(f"{col.mean():.1f}" if not col.empty else "-")
        rows.append(cells)
    return _md_table(["model", *domains], rows)


def _comparisons_table(comps: Sequence[Comparison]) -> str:
    rows = [
        [
            c.label,
            f"{c.name_a} {_pm(c.mean_a, c.std_a, 2)}",
            f"{c.name_b} {_pm(c.mean_b, c.std_b, 2)}",
            f"{c.advantage:+.2f}" if math.isfinite(c.advantage) else "-",
            f"{c.threshold:.2f}" if math.isfinite(c.threshold) else "n/a",
            c.outcome,
        ]
        for c in comps
    ]
    return _md_table(
        ["where", "claimed better (a)", "other (b)", "a better by", "threshold", "outcome"], rows
    )


def _hours(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "unknown"
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


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
    models = _models_with(frame, settings.models)
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
        "learning rates are the shipped configs' starting points (column *lr*), tuned for no method.",
        f"- Finished runs: {len(frame)}; compute time (sum of run durations, base pretraining "
        f"excluded): {_hours(float(frame['duration_s'].sum()))}; study wall time: "
        f"{_hours(float(meta.get('wall_seconds', math.nan)))}"
        + (f" ({meta['status'].lower()})" if meta.get("status") else "")
        + ".",
        f"- Code: git commit {', '.join(commits) or 'unknown'}.",
        "",
        "### Base models (WER %, before any adaptation)",
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
    notes = _loss_notes(frame, settings, verdicts)
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
            f"`{rel(tables_dir / SUMMARY_CSV)}`; every comparison: `{rel(tables_dir / CLAIMS_CSV)}`.",
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
    ``meta.json``); returns the files written."""
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
        "status": meta.get("status"),
        "verdicts": {v.number: v.verdict for v in verdicts},
    }
    files[4].write_text(json.dumps(meta_out, indent=2, default=_json_safe) + "\n")
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
