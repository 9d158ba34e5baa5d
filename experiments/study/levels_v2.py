"""v2: the per-configuration levels of a study's results page (``experiments.study.page_v2``).

:func:`summarise` turns ``runs.csv`` and ``plan.csv`` into ``summary.csv``: one line per test
configuration of the plan with, per figure, the mean over the configuration's used runs and its
95 % percentile bootstrap CI over those runs (:func:`run_ci`). :func:`finite` and
:func:`num_text` are how the page's sections test and print a number read back from a CSV.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from experiments.study.store_v2 import DIAGNOSTICS, FIGURES

__all__ = ["LEVEL_SEED", "finite", "level_metrics", "num_text", "run_ci", "summarise"]

LEVEL_SEED = 0  # the per-configuration CIs' bootstrap seed (they recompute from runs.csv)


def finite(value: Any) -> bool:
    """Whether ``value`` reads as a finite number (``None``, text and NaN do not).

    >>> finite("0.5"), finite(None), finite(float("nan")), finite("")
    (True, False, False, False)
    """
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def num_text(value: Any, digits: int = 1, sign: bool = False) -> str:
    """``value`` with ``digits`` decimals (and its sign when ``sign``); ``-``: not a number.

    >>> num_text(2.345), num_text(-0.5, 2, sign=True), num_text(None)
    ('2.3', '-0.50', '-')
    """
    if not finite(value):
        return "-"
    return f"{float(value):+.{digits}f}" if sign else f"{float(value):.{digits}f}"


def run_ci(values: Sequence[float], n_boot: int, seed: int = LEVEL_SEED) -> tuple[float, ...]:
    """``(mean, low, high, n)`` of the finite ``values`` (one per run): the mean and its 95 %
    percentile bootstrap CI over runs (NaN CI with fewer than two runs).

    >>> run_ci([1.0, 2.0, 3.0], 1000)[0], run_ci([4.0], 10)[1:]
    (2.0, (nan, nan, 1))
    """
    v = np.asarray([x for x in values if math.isfinite(float(x))], dtype=float)
    if v.size == 0:
        return math.nan, math.nan, math.nan, 0
    if v.size == 1:
        return float(v[0]), math.nan, math.nan, 1
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return float(v.mean()), float(low), float(high), int(v.size)


def level_metrics(domains: Sequence[str]) -> list[str]:
    """The ``runs.csv`` columns :func:`summarise` gives a level: the per-run figures but the
    base WER, the final WER per domain, the weight change and angles."""
    return [*[m for m in FIGURES if m != "base_wer"], *(f"final_wer/{d}" for d in domains),
            *DIAGNOSTICS]  # fmt: skip


def summarise(
    runs: pd.DataFrame, plan: pd.DataFrame, domains: Sequence[str], n_boot: int
) -> pd.DataFrame:
    """One line per test configuration of the plan (plan order): runs planned and finished,
    the planned and the used learning rates, and per figure its mean, 95 % CI (bootstrap over
    the configuration's used runs, :func:`run_ci`) and the number of runs with a value."""
    tests = plan[plan["phase"] == "test"]
    used = runs[runs["used"].astype(bool) & (runs["phase"] == "test")]
    lines = []
    for config, part in tests.groupby("config", sort=False):
        first = part.iloc[0]
        mine = used[used["config"] == config]
        lrs = sorted({float(x) for x in mine["lr"] if finite(x)})
        line = {
            "config": config,
            "arm": first["arm"],
            "budget": first["budget"],
            "inner_share": first["inner_share"],
            "horizon": first["horizon"],
            "planned": len(part),
            "runs": len(mine),
            "lr_planned": first["lr"],
            "lr_used": ";".join(f"{x:g}" for x in lrs),
        }
        for m in level_metrics(domains):
            values = mine[m].to_numpy(float) if len(mine) and m in mine else []
            mean, low, high, n = run_ci(values, n_boot)
            line.update({m: mean, f"{m}_low": low, f"{m}_high": high, f"{m}_n": n})
        lines.append(line)
    return pd.DataFrame(lines)
