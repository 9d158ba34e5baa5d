"""v1: the paper's four claims judged on a per-run table (``docs/results.md``), the notes on
where SSVD-O loses, and the learning-vs-forgetting front.

Input: one row per finished run (``experiments.study.collect.collect_runs``; labels and
aggregation in ``experiments.study.table``). :func:`evaluate_claims` gives the four
:class:`ClaimVerdict` by the rules below; the page is ``experiments.study.page``. Study v2
(docs/protocol.md) states its claims as bootstrap tests instead: ``experiments.study.claims_v2``.

Verdict rules (``experiments.study.verdicts.compare_groups`` and ``verdict``)
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

The learning-rate check (``experiments.study.lr_check``) is no claim: runs of the study's ``lr_check`` arm
(method labels ``<label>|lr=<lr>``, ``table.method_label``) are left out of the four claims and
the loss notes (``table.main_arms``); SSVD-O at the reference share is compared with each other
checked method by the same rule at every learning rate both ran and at their shipped rates, on
new-domain WER and AWER.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from experiments.study.table import (
    BASELINE_ADAPTERS,
    DocSettings,
    budget_text,
    budgets_of,
    cell_values,
    display_name,
    main_arms,
    method_label,
    models_with,
    plus_minus,
    shares_of,
)
from experiments.study.verdicts import Comparison, compare_groups, verdict

__all__ = [
    "CLAIMS",
    "CLAIM_TESTS",
    "ClaimVerdict",
    "claim1",
    "claim2",
    "claim3",
    "claim4",
    "describe",
    "evaluate_claims",
    "ssvdo_versus",
]


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


def describe(c: Comparison, unit: str = "") -> str:
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


def _claim_verdict(number: int, outcome: str, lead: str, comps: list[Comparison]) -> ClaimVerdict:
    return ClaimVerdict(
        number,
        CLAIMS[number],
        CLAIM_TESTS[number],
        outcome,
        _sentence(number, outcome, lead, comps),
        comps,
    )


def ssvdo_versus(
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
        full = cell_values(frame, model, "full", None, "new_domain_wer")
        for budget in budgets_of(frame, model):
            ours = cell_values(frame, model, ref, budget, "new_domain_wer")
            if ours.empty:
                continue
            best_gap: tuple[float, str] | None = None
            for base in baselines:
                theirs = cell_values(frame, model, base, budget, "new_domain_wer")
                if theirs.empty:
                    continue
                comps.append(
                    ssvdo_versus(model, budget, ref, ours, base, theirs, "new-domain WER", settings)
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
        cell_values(frame, model, a, budget, column),
        cell_values(frame, model, b, budget, column),
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
        budgets = budgets_of(frame, model)
        if not budgets:
            continue
        tight = budgets[0]
        shares = shares_of(frame, model, tight)
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
        for budget in budgets_of(frame, model):
            shares = shares_of(frame, model, budget)
            if len(shares) < 2:
                continue
            lo, hi = (method_label("ssvdo", "ssvdo", s) for s in (shares[0], shares[-1]))
            comps.append(
                _share_versus(frame, model, budget, (shares[0], shares[-1]), "tradeoff", settings)
            )
            d_learn = (
                cell_values(frame, model, lo, budget, "learning_mean").mean()
                - cell_values(frame, model, hi, budget, "learning_mean").mean()
            )
            d_forget = (
                cell_values(frame, model, lo, budget, "forgetting_mean").mean()
                - cell_values(frame, model, hi, budget, "forgetting_mean").mean()
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
    ssvd = cell_values(frame, model, "ssvd", budget, "new_domain_wer")
    ours = cell_values(frame, model, ref, budget, "new_domain_wer")
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
        for b_small, b_large in zip(
            budgets_of(frame, small), budgets_of(frame, large), strict=False
        ):
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
    ``experiments.study.collect.collect_runs``)."""
    return [f(frame, settings) for f in (claim1, claim2, claim3, claim4)]
