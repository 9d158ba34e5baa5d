"""v1: "Where SSVD-O loses" on ``docs/results.md``: one note per significant loss of SSVD-O at
the reference share (claim 1's comparisons that went *against* it, and AWER against every
unbudgeted reference), each with the logged numbers (learning, forgetting, trainable
parameters) that point at a likely reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from experiments.study.claims import ClaimVerdict, describe, ssvdo_versus
from experiments.study.table import (
    DocSettings,
    budgets_of,
    cell_values,
    main_arms,
    method_label,
    models_with,
)
from experiments.study.verdicts import Comparison

__all__ = ["loss_notes"]


def _mean(frame: pd.DataFrame, model: str, method: str, budget: float | None, col: str) -> float:
    values = cell_values(frame, model, method, budget, col)
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
        for budget in budgets_of(frame, model):
            ours = cell_values(frame, model, ref, budget, "awer")
            if ours.empty:
                continue
            for other in refs:
                theirs = cell_values(frame, model, other, None, "awer")
                c = ssvdo_versus(model, budget, ref, ours, other, theirs, "AWER", settings)
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
    text = f"- {c.metric}, {describe(c)}."
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
