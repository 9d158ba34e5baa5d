"""The per-run table of a v1 study: method labels, the page's settings, aggregation over seeds.

One row per finished run (columns as ``experiments.study.collect.collect_runs`` produces:
``model``, ``method``, ``budget``, ``seed``, ``new_domain_wer``, ``learning_mean``, ...).
``method`` is :func:`method_label`: ``ssvdo@<inner share>`` for SSVD-O, else the strategy
name, with ``|lr=<lr>`` for the runs of the learning-rate check (tag :data:`ARM_TAG` =
:data:`LR_ARM`), which :func:`main_arms` leaves out. :func:`aggregate` gives mean and
``<column>_std`` over seeds per (model, method, budget); :func:`cell_values` the per-seed
values of one cell, which the claims (``experiments.study.claims``) compare.

>>> import pandas as pd
>>> runs = pd.DataFrame({"model": ["small"] * 2, "method": ["lora", "lora|lr=0.005"]})
>>> list(main_arms(runs)["method"]), display_name("ssvdo@0.25"), display_name("lora|lr=0.005")
(['lora'], 'SSVD-O (s=0.25)', 'LoRA, lr 0.005')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from experiments.compare import aggregate_seeds, to_number

__all__ = [
    "ARM_TAG",
    "BASELINE_ADAPTERS",
    "DISPLAY",
    "DocSettings",
    "LR_ARM",
    "LR_MARK",
    "METHOD_ORDER",
    "aggregate",
    "budget_text",
    "budgets_of",
    "cell_values",
    "display_name",
    "lr_rows",
    "main_arms",
    "method_label",
    "method_rank",
    "models_with",
    "pareto_front",
    "plus_minus",
    "shares_of",
    "split_lr",
]

BASELINE_ADAPTERS = ("ssvd", "lora", "dora", "pissa")
ARM_TAG, LR_ARM = "cl_ssvdo.arm", "lr"  # the tag (and its value) of the learning-rate check runs
LR_MARK = "|lr="
DISPLAY = {
    "ssvd": "SSVD",
    "lora": "LoRA",
    "dora": "DoRA",
    "pissa": "PiSSA",
    "mica": "MiCA",
    "corda": "CorDA",
    "osf": "OSF",
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
        label += f"{LR_MARK}{lr:g}"
    return label


def split_lr(method: str) -> tuple[str, float | None]:
    """A method label as (main-arm label, learning rate of the learning-rate check or None).

    >>> split_lr("ssvdo@0.25|lr=0.002"), split_lr("lora")
    (('ssvdo@0.25', 0.002), ('lora', None))
    """
    base, mark, lr = method.partition(LR_MARK)
    return base, (to_number(lr) if mark else None)


def lr_rows(frame: pd.DataFrame) -> pd.Series:
    """True for the rows of ``frame`` that are learning-rate check runs."""
    if frame.empty or "method" not in frame:
        return pd.Series(False, index=frame.index)
    return frame["method"].astype(str).str.contains(LR_MARK, regex=False)


def main_arms(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``frame`` (per run or aggregated) that are not learning-rate check runs."""
    return frame[~lr_rows(frame)]


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
    out["_method"] = out["method"].map(method_rank)
    out["_lr"] = [math.nan if lr is None else lr for _, lr in map(split_lr, out["method"])]
    out = out.sort_values(["_model", "budget", "_method", "_lr"], na_position="last", kind="stable")
    return out.drop(columns=["_model", "_method", "_lr"]).reset_index(drop=True)


METHOD_ORDER = ("ssvd", "lora", "dora", "pissa", "full", "naive", "replay", "ewc", "weight_avg")


def method_rank(method: str) -> float:
    """SSVD-O splits first (by share), then the matched baselines, full FT, the CL references;
    the learning-rate check runs after all of them, in the same order."""
    base, lr = split_lr(method)
    later = 0.0 if lr is None else 3.0 + len(METHOD_ORDER)
    if base.startswith("ssvdo@"):
        return later + to_number(base.split("@", 1)[1])
    if base in METHOD_ORDER:
        return later + 2.0 + METHOD_ORDER.index(base)
    return later + 2.0 + len(METHOD_ORDER)


def cell_values(
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


def models_with(frame: pd.DataFrame, models: Sequence[str]) -> list[str]:
    present = set(frame["model"].unique()) if not frame.empty else set()
    return [m for m in models if m in present]


def shares_of(frame: pd.DataFrame, model: str, budget: float) -> list[float]:
    sub = frame[(frame["model"] == model) & (frame["budget"] == budget)]
    return sorted({float(s) for s in sub["inner_share"].dropna()})


def budgets_of(frame: pd.DataFrame, model: str) -> list[float]:
    sub = frame[frame["model"] == model]["budget"].dropna()
    return sorted({float(b) for b in sub})


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
