"""The paper's four claims judged on a per-run table: aggregation over seeds, the verdict rules,
the notes on where SSVD-O loses, and the learning-vs-forgetting front.

Input: one row per finished run, with the columns ``experiments.results_doc.collect_runs``
produces (``model``, ``method``, ``budget``, ``seed``, ``new_domain_wer``, ``learning_mean``,
...). :func:`aggregate` gives mean and std over seeds per cell; :func:`evaluate_claims` the four
:class:`ClaimVerdict` by the rules below. Rendering them into a page is ``experiments.results_doc``.

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

The learning-rate check (:func:`lr_checks`) is no claim: runs of the study's ``lr_check`` arm
(method labels ``<label>|lr=<lr>``, :func:`method_label`) are left out of the four claims and
the loss notes (:func:`main_arms`); SSVD-O at the reference share is compared with each other
checked method by the same rule at every learning rate both ran and at their shipped rates, on
new-domain WER and AWER.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from experiments.compare import aggregate_seeds, to_number

__all__ = [
    "ARM_TAG",
    "BASELINE_ADAPTERS",
    "CLAIMS",
    "CLAIM_TESTS",
    "DISPLAY",
    "ClaimVerdict",
    "Comparison",
    "DocSettings",
    "LR_ARM",
    "LrCheck",
    "aggregate",
    "budget_text",
    "claim1",
    "claim2",
    "claim3",
    "claim4",
    "compare_groups",
    "display_name",
    "evaluate_claims",
    "loss_notes",
    "lr_checks",
    "main_arms",
    "method_label",
    "models_with",
    "pareto_front",
    "plus_minus",
    "split_lr",
    "verdict",
]

BASELINE_ADAPTERS = ("ssvd", "lora", "dora", "pissa")
ARM_TAG, LR_ARM = "cl_ssvdo.arm", "lr"  # the tag (and its value) of the learning-rate check runs
_LR_MARK = "|lr="
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


# -- method labels and aggregation over seeds ------------------------------------------------------
def method_label(
    strategy: str, adapter: str, inner_share: float | None, lr: float | None = None
) -> str:
    """``ssvdo@0.25`` for SSVD-O with a constant ``{budget, inner_share}`` schedule, else the
    strategy name; ``|lr=<lr>`` appended for a run of the learning-rate check (``lr`` given),
    so those runs never mix with the main arms.

    >>> method_label("ssvdo", "ssvdo", 0.25), method_label("lora", "lora", None)
    ('ssvdo@0.25', 'lora')
    >>> method_label("ssvdo", "ssvdo", 0.25, lr=2e-3), method_label("lora", "lora", None, 5e-3)
    ('ssvdo@0.25|lr=0.002', 'lora|lr=0.005')
    """
    if adapter == "ssvdo" and inner_share is not None and math.isfinite(inner_share):
        label = f"ssvdo@{inner_share:g}"
    else:
        label = strategy
    if lr is not None and math.isfinite(lr):
        label += f"{_LR_MARK}{lr:g}"
    return label


def split_lr(method: str) -> tuple[str, float | None]:
    """A method label as (main-arm label, learning rate of the learning-rate check or None).

    >>> split_lr("ssvdo@0.25|lr=0.002"), split_lr("lora")
    (('ssvdo@0.25', 0.002), ('lora', None))
    """
    base, mark, lr = method.partition(_LR_MARK)
    return base, (to_number(lr) if mark else None)


def _lr_rows(frame: pd.DataFrame) -> pd.Series:
    """True for the rows of ``frame`` that are learning-rate check runs."""
    if frame.empty or "method" not in frame:
        return pd.Series(False, index=frame.index)
    return frame["method"].astype(str).str.contains(_LR_MARK, regex=False)


def main_arms(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``frame`` (per run or aggregated) that are not learning-rate check runs."""
    return frame[~_lr_rows(frame)]


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
    out["_lr"] = [math.nan if lr is None else lr for _, lr in map(split_lr, out["method"])]
    out = out.sort_values(["_model", "budget", "_method", "_lr"], na_position="last", kind="stable")
    return out.drop(columns=["_model", "_method", "_lr"]).reset_index(drop=True)


METHOD_ORDER = ("ssvd", "lora", "dora", "pissa", "full", "naive", "replay", "ewc", "weight_avg")


def _method_rank(method: str) -> float:
    """SSVD-O splits first (by share), then the matched baselines, full FT, the CL references;
    the learning-rate check runs after all of them, in the same order."""
    base, lr = split_lr(method)
    later = 0.0 if lr is None else 3.0 + len(METHOD_ORDER)
    if base.startswith("ssvdo@"):
        return later + to_number(base.split("@", 1)[1])
    if base in METHOD_ORDER:
        return later + 2.0 + METHOD_ORDER.index(base)
    return later + 2.0 + len(METHOD_ORDER)


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


# -- verdict rules ---------------------------------------------------------------------------------
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


def display_name(method: str) -> str:
    """``SSVD-O (s=0.25)``, ``LoRA``; ``LoRA, lr 0.005`` for a learning-rate check label."""
    base, lr = split_lr(method)
    if lr is not None:
        return f"{display_name(base)}, lr {lr:g}"
    if method.startswith("ssvdo@"):
        return f"SSVD-O (s={method.split('@', 1)[1]})"
    return DISPLAY.get(method, method)


def budget_text(budget: float) -> str:
    return "no budget" if math.isnan(budget) else f"{int(budget):,}"


def plus_minus(mean: float, std: float, digits: int = 1) -> str:
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
        f"{c.label}: {c.name_a} {plus_minus(c.mean_a, c.std_a)} vs {c.name_b} "
        f"{plus_minus(c.mean_b, c.std_b)} ({how})"
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


def models_with(frame: pd.DataFrame, models: Sequence[str]) -> list[str]:
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


def _ssvdo_versus(
    model: str,
    budget: float,
    ref: str,
    ours: pd.Series,
    other: str,
    theirs: pd.Series,
    metric: str,
    settings: DocSettings,
) -> Comparison:
    """SSVD-O at the reference share (``ours``) against ``other``; lower ``metric`` is better."""
    return compare_groups(
        f"{model} @ {budget_text(budget)}",
        ours,
        theirs,
        lower_is_better=True,
        margin=settings.min_margin,
        name_a="SSVD-O",
        name_b=display_name(other),
        metric=metric,
        model=model,
        budget=budget,
        method_a=ref,
        method_b=other,
    )


def claim1(frame: pd.DataFrame, settings: DocSettings) -> ClaimVerdict:
    frame = main_arms(frame)
    ref = method_label("ssvdo", "ssvdo", settings.reference_share)
    comps: list[Comparison] = []
    gaps: list[str] = []
    for model in models_with(frame, settings.models):
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
                    _ssvdo_versus(
                        model, budget, ref, ours, base, theirs, "new-domain WER", settings
                    )
                )
                gap = float(theirs.mean() - full.mean()) if not full.empty else math.nan
                if math.isfinite(gap) and (best_gap is None or gap < best_gap[0]):
                    best_gap = (gap, display_name(base))
            if not full.empty and best_gap is not None:
                gaps.append(
                    f"{model} @ {budget_text(budget)}: SSVD-O {ours.mean() - full.mean():+.2f}, "
                    f"best baseline ({best_gap[1]}) {best_gap[0]:+.2f}"
                )
    outcome = verdict(comps)
    lead = (
        f"SSVD-O at inner share {settings.reference_share:g} against the baselines matched to "
        f"its parameter count, on new-domain WER (lower is better)."
    )
    missing = [display_name(b) for b in BASELINE_ADAPTERS if b not in {c.method_b for c in comps}]
    if missing:
        lead += f" Not compared (no runs): {', '.join(missing)}."
        if outcome == "confirmed":  # the claim names all four baselines
            outcome = "inconclusive"
    if gaps:
        lead += " Gap to full fine-tuning (WER points above it): " + "; ".join(gaps) + "."
    return _claim_verdict(1, outcome, lead, comps)


_SHARE_METRICS = {  # column -> (label, lower is better)
    "new_domain_wer": ("new-domain WER", True),
    "tradeoff": ("learning - forgetting", False),
}


def _share_versus(
    frame: pd.DataFrame,
    model: str,
    budget: float,
    shares: tuple[float, float],
    column: str,
    settings: DocSettings,
) -> Comparison:
    """SSVD-O at inner share ``shares[0]`` (side a) against ``shares[1]`` on ``column``."""
    label, lower = _SHARE_METRICS[column]
    a, b = (method_label("ssvdo", "ssvdo", s) for s in shares)
    return compare_groups(
        f"{model} @ {budget_text(budget)}",
        _values(frame, model, a, budget, column),
        _values(frame, model, b, budget, column),
        lower_is_better=lower,
        margin=settings.min_margin,
        name_a=f"s={shares[0]:g}",
        name_b=f"s={shares[1]:g}",
        metric=label,
        model=model,
        budget=budget,
        method_a=a,
        method_b=b,
    )


def claim2(frame: pd.DataFrame, settings: DocSettings) -> ClaimVerdict:
    frame = main_arms(frame)
    comps = []
    for model in models_with(frame, settings.models):
        budgets = _budgets(frame, model)
        if not budgets:
            continue
        tight = budgets[0]
        shares = _shares(frame, model, tight)
        if len(shares) < 2:
            continue
        comps.append(
            _share_versus(frame, model, tight, (shares[-1], shares[0]), "new_domain_wer", settings)
        )
    outcome = verdict(comps)
    lead = (
        "At each model's smallest budget, SSVD-O with the largest inner share against the "
        "smallest, on new-domain WER (lower is better; same budget, so better = more efficient)."
    )
    return _claim_verdict(2, outcome, lead, comps)


def claim3(frame: pd.DataFrame, settings: DocSettings) -> ClaimVerdict:
    frame = main_arms(frame)
    frame = frame.assign(tradeoff=frame["learning_mean"] - frame["forgetting_mean"])
    comps = []
    details = []
    for model in models_with(frame, settings.models):
        for budget in _budgets(frame, model):
            shares = _shares(frame, model, budget)
            if len(shares) < 2:
                continue
            lo, hi = (method_label("ssvdo", "ssvdo", s) for s in (shares[0], shares[-1]))
            comps.append(
                _share_versus(frame, model, budget, (shares[0], shares[-1]), "tradeoff", settings)
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
                f"{model} @ {budget_text(budget)}: learning {d_learn:+.2f}, "
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
    frame = main_arms(frame)
    ref = method_label("ssvdo", "ssvdo", settings.reference_share)
    models = models_with(frame, settings.models)
    comps = []
    if len(models) >= 2:
        small, large = models[0], models[-1]
        for b_small, b_large in zip(_budgets(frame, small), _budgets(frame, large), strict=False):
            comps.append(
                compare_groups(
                    f"{budget_text(b_small)} on {small} vs {budget_text(b_large)} on {large}",
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
    else:
        lead += _base_gap(frame, models[0], models[-1])
    return _claim_verdict(4, outcome, lead, comps)


def _base_gap(frame: pd.DataFrame, small: str, large: str) -> str:
    """A caveat when the two base models start from different WERs on the first domain: the
    comparison then mixes model size with base quality."""
    columns = [c for c in frame.columns if c.startswith("base_wer/")]
    if not columns:
        return ""
    first = columns[0]
    w_small, w_large = (frame[frame["model"] == m][first].mean() for m in (small, large))
    if not (math.isfinite(w_small) and math.isfinite(w_large)) or abs(w_large - w_small) < 1.0:
        return ""
    return (
        f" Caveat: the base models differ before any adaptation ({first.split('/', 1)[1]} WER "
        f"{small} {w_small:.1f} %, {large} {w_large:.1f} %), so this comparison mixes model "
        "size with base-model quality."
    )


def evaluate_claims(frame: pd.DataFrame, settings: DocSettings) -> list[ClaimVerdict]:
    """The four verdicts from a per-run frame (columns as produced by
    ``experiments.results_doc.collect_runs``)."""
    return [f(frame, settings) for f in (claim1, claim2, claim3, claim4)]


# -- losses of SSVD-O, with data-driven likely reasons ------------------------------------------
def _mean(frame: pd.DataFrame, model: str, method: str, budget: float | None, col: str) -> float:
    values = _values(frame, model, method, budget, col)
    return float(values.mean()) if not values.empty else math.nan


def loss_notes(
    frame: pd.DataFrame, settings: DocSettings, verdicts: Sequence[ClaimVerdict]
) -> list[str]:
    """One bullet per significant loss of SSVD-O at the reference share: claim 1's comparisons
    and AWER against every unbudgeted reference (full FT, Naive, Replay, ...), each with the
    numbers that point at a likely reason."""
    frame = main_arms(frame)
    ref = method_label("ssvdo", "ssvdo", settings.reference_share)
    losses = [c for c in verdicts[0].comparisons if c.outcome == "against"]
    for model in models_with(frame, settings.models):
        refs = sorted(set(frame[(frame["model"] == model) & frame["budget"].isna()]["method"]))
        for budget in _budgets(frame, model):
            ours = _values(frame, model, ref, budget, "awer")
            if ours.empty:
                continue
            for other in refs:
                theirs = _values(frame, model, other, None, "awer")
                c = _ssvdo_versus(model, budget, ref, ours, other, theirs, "AWER", settings)
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


# -- learning-rate check --------------------------------------------------------------------------
_LR_METRICS = (("new_domain_wer", "new-domain WER"), ("awer", "AWER"))  # lower is better


@dataclass
class LrCheck:
    """The learning-rate check on one model and budget.

    ``cells``: (method label, learning rate, shipped) for each checked method at each rate it
    ran, ``shipped`` marking the main-arm runs at the method's configured rate. ``comparisons``:
    SSVD-O at the reference share (side a) against each other checked method on each of
    new-domain WER and AWER, at the shipped rates and at every rate both ran. ``sentences``: per
    other method, whether the ordering at equal rates matches the one at the shipped rates.
    """

    model: str
    budget: float
    cells: list[tuple[str, float, bool]]
    comparisons: list[Comparison] = field(default_factory=list)
    sentences: list[str] = field(default_factory=list)


def _cell_name(label: str, lr: float) -> str:
    """``LoRA, lr 0.002`` for the main-arm ``lora`` at 0.002 as for ``lora|lr=0.002``."""
    return display_name(f"{split_lr(label)[0]}{_LR_MARK}{lr:g}")


def _lr_versus(
    frame: pd.DataFrame,
    model: str,
    budget: float,
    cells: tuple[tuple[str, float], tuple[str, float]],
    where: str,
    settings: DocSettings,
) -> list[Comparison]:
    """Cell ``cells[0]`` (label, lr) against ``cells[1]`` on each metric of the check."""
    (a, lr_a), (b, lr_b) = cells
    return [
        compare_groups(
            f"{metric} {where}",
            _values(frame, model, a, budget, column),
            _values(frame, model, b, budget, column),
            lower_is_better=True,
            margin=settings.min_margin,
            name_a=_cell_name(a, lr_a),
            name_b=_cell_name(b, lr_b),
            metric=metric,
            model=model,
            budget=budget,
            method_a=a,
            method_b=b,
        )
        for column, metric in _LR_METRICS
    ]


def _ordering(c: Comparison, a: str, b: str) -> str:
    return {"for": f"{a} better", "against": f"{b} better"}.get(
        c.outcome, "no difference beyond the spread"
    )


def _lr_sentence(
    head: str,
    names: tuple[str, str],
    shipped: list[Comparison],
    equal: list[Comparison],
    rates: list[str],
    shipped_rates: str = "",
) -> str:
    """Whether the ordering of ``names`` at the equal learning ``rates`` (comparisons
    ``equal``) matches the one at the shipped rates (``shipped_rates``, comparisons
    ``shipped``)."""
    a, b = names
    text = f"**{head}, {a} vs {b}.**"
    if shipped:
        orderings = "; ".join(f"{c.metric}, {_ordering(c, a, b)}" for c in shipped)
        text += f" At the shipped learning rates ({shipped_rates}): {orderings}."
    else:
        text += " The runs at the shipped learning rates are missing: no ordering to check."
    if not equal:
        return text + " No learning rate was run by both."
    if not shipped:
        return text + " " + "; ".join(f"{c.label}: {_ordering(c, a, b)}" for c in equal) + "."
    at_shipped = {c.metric: c.outcome for c in shipped}
    differ = [c for c in equal if c.outcome != at_shipped.get(c.metric)]
    if not differ:
        metrics = " and ".join(dict.fromkeys(c.metric for c in equal))
        return text + (
            f" At equal learning rates ({', '.join(rates)}) the ordering on {metrics} is the "
            "same as at the shipped ones: the difference in learning rates does not explain it."
        )
    return text + (
        " At equal learning rates the ordering differs: "
        + "; ".join(f"{c.label}: {_ordering(c, a, b)}" for c in differ)
        + ". The ordering at the shipped rates is at least partly an effect of the learning rates."
    )


def lr_checks(frame: pd.DataFrame, settings: DocSettings) -> list[LrCheck]:
    """The learning-rate check of every model and budget that has learning-rate check runs
    (method labels with ``|lr=``); empty when there are none."""
    arms = frame[_lr_rows(frame)]
    ref = method_label("ssvdo", "ssvdo", settings.reference_share)
    out = []
    for model in models_with(arms, settings.models):
        for budget in _budgets(arms, model):
            here = arms[(arms["model"] == model) & (arms["budget"] == budget)]
            rates: dict[str, dict[str, str]] = {}  # main-arm label -> {lr text: label}
            for label in here["method"].unique():
                base, lr = split_lr(label)
                rates.setdefault(base, {})[f"{lr:g}"] = label
            shipped: dict[str, float] = {}
            for base in rates:
                lrs = _values(frame, model, base, budget, "lr")
                if not lrs.empty:
                    shipped[base] = float(lrs.iloc[0])
                    rates[base].setdefault(f"{shipped[base]:g}", base)
            bases = sorted(rates, key=_method_rank)
            check = LrCheck(
                model,
                budget,
                [
                    (label, float(lr), label == base)
                    for base in bases
                    for lr, label in sorted(rates[base].items(), key=lambda kv: float(kv[0]))
                ],
            )
            for other in bases if ref in rates else []:
                if other == ref:
                    continue
                at_shipped: list[Comparison] = []
                shipped_rates = ""
                if ref in shipped and other in shipped:
                    shipped_rates = f"{shipped[ref]:g} vs {shipped[other]:g}"
                    at_shipped = _lr_versus(
                        frame, model, budget,
                        ((ref, shipped[ref]), (other, shipped[other])),
                        f"at the shipped lrs ({shipped_rates})", settings,
                    )  # fmt: skip
                common = [  # both at the shipped rate: the comparison above
                    lr
                    for lr in sorted(set(rates[ref]) & set(rates[other]), key=float)
                    if rates[ref][lr] != ref or rates[other][lr] != other
                ]
                equal: list[Comparison] = []
                for lr in common:
                    equal += _lr_versus(
                        frame, model, budget,
                        ((rates[ref][lr], float(lr)), (rates[other][lr], float(lr))),
                        f"at lr {lr}", settings,
                    )  # fmt: skip
                check.comparisons += at_shipped + equal
                head = f"{model} @ {budget_text(budget)}"
                names = (display_name(ref), display_name(other))
                check.sentences.append(
                    _lr_sentence(head, names, at_shipped, equal, common, shipped_rates)
                )
            out.append(check)
    return out


# -- learning-vs-forgetting front ------------------------------------------------------------------
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
