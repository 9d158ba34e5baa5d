"""v1: the learning-rate check of a study (``lr_check`` in the study config): no claim.

Runs of the ``lr_check`` arm (method labels ``<label>|lr=<lr>``) are left out of the four
claims; here SSVD-O at the reference share is compared with each other checked method by the
v1 rule (``experiments.study.verdicts.compare_groups``) at every learning rate both ran and
at their shipped rates, on new-domain WER and AWER; :func:`lr_checks` also says per method
whether the ordering at equal rates matches the one at the shipped rates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from experiments.study.table import (
    LR_MARK,
    DocSettings,
    budget_text,
    budgets_of,
    cell_values,
    display_name,
    lr_rows,
    method_label,
    method_rank,
    models_with,
    split_lr,
)
from experiments.study.verdicts import Comparison, compare_groups

__all__ = ["LrCheck", "lr_checks"]

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
    return display_name(f"{split_lr(label)[0]}{LR_MARK}{lr:g}")


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
            cell_values(frame, model, a, budget, column),
            cell_values(frame, model, b, budget, column),
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
    arms = frame[lr_rows(frame)]
    ref = method_label("ssvdo", "ssvdo", settings.reference_share)
    out = []
    for model in models_with(arms, settings.models):
        for budget in budgets_of(arms, model):
            here = arms[(arms["model"] == model) & (arms["budget"] == budget)]
            rates: dict[str, dict[str, str]] = {}  # main-arm label -> {lr text: label}
            for label in here["method"].unique():
                base, lr = split_lr(label)
                rates.setdefault(base, {})[f"{lr:g}"] = label
            shipped: dict[str, float] = {}
            for base in rates:
                lrs = cell_values(frame, model, base, budget, "lr")
                if not lrs.empty:
                    shipped[base] = float(lrs.iloc[0])
                    rates[base].setdefault(f"{shipped[base]:g}", base)
            bases = sorted(rates, key=method_rank)
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
