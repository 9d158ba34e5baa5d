"""v2: the section *Where SSVD-O loses* of a study's results page (``experiments.study.page_v2``).

:func:`losses` picks the lines of ``claims.csv`` where SSVD-O loses: every test of a claim
whose outcome went against it, and every reported difference of SSVD-O at the reference share
minus an arm it was compared with, in new-domain WER or AWER, whose 95 % CI lies above zero.
:func:`losses_section` sets each beside what the runs logged for its two configurations on
the difference's base (learning, forgetting, weight change, angles; ``summary.csv``'s figures
over those runs only), in words that only restate those numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from experiments.study.frames_v2 import ssvdo_arm
from experiments.study.levels_v2 import finite, num_text, summarise

__all__ = ["LOSS_FIGURES", "BaseSummaries", "losses", "losses_section"]

LOSS_FIGURES = {"new_domain_wer": "new-domain WER", "awer": "AWER", "forgetting": "forgetting"}


def losses(claims: pd.DataFrame, study: Mapping[str, Any]) -> pd.DataFrame:
    """The lines of ``claims`` (``claims.csv``) where SSVD-O loses, in their order: every test
    whose outcome is ``against`` (its claim, about SSVD-O, went the other way), and every
    reported difference of SSVD-O at the reference share minus an arm it was compared with, on
    new-domain WER or AWER, whose 95 % CI lies above zero (SSVD-O higher, i.e. worse)."""
    ssvdo = ssvdo_arm(study)
    if ssvdo is None or claims.empty:
        return claims.iloc[0:0]
    against = (claims["kind"] == "test") & (claims["outcome"] == "against")
    if "a_arm" not in claims:  # written before claims.csv named each difference's sides
        return claims[against.to_numpy(bool)]
    share = pd.to_numeric(claims["a_share"], errors="coerce").to_numpy(float)
    low = pd.to_numeric(claims["ci_low"], errors="coerce").to_numpy(float)
    worse = (
        (claims["kind"] == "reported")
        & (claims["a_arm"] == ssvdo)
        & np.isclose(share, float(study["reference_share"]))
        & claims["figure"].isin(["new_domain_wer", "awer"])
        & (np.nan_to_num(low, nan=-np.inf) > 0)
    )  # fmt: skip
    return claims[(against | worse).to_numpy(bool)]


def _side(summary: pd.DataFrame, arm: Any, budget: Any, share: Any, reference_share: float,
          horizon: str = "main") -> dict[str, Any] | None:  # fmt: skip
    """The configuration of ``summary`` a claim's side selects (arm and horizon, and budget and
    inner share where it selects on them); ``None`` when there is none."""
    if summary.empty or not str(arm):
        return None
    mask = (summary["arm"] == arm) & (summary["horizon"] == horizon)
    if finite(budget):
        mask &= pd.to_numeric(summary["budget"], errors="coerce") == float(budget)
    shares = pd.to_numeric(summary["inner_share"], errors="coerce").to_numpy(float)
    if finite(share):
        mask &= np.isclose(shares, float(share))
    found = summary[mask.to_numpy(bool)]
    if found.empty:
        return None
    at_reference = found[np.isclose(shares[mask.to_numpy(bool)], reference_share)]
    return (at_reference if not at_reference.empty else found).iloc[0].to_dict()


_DEGREES = 180.0 / math.pi
# what the bullets set side by side: summary column, label, scale, digits, unit, and the
# words for "a is higher", "a is lower", "the same" (numbers described, no cause stated)
_MEASURES = [
    ("learning", "learning", 1.0, 1, "", ("learned more", "learned less", "learned as much")),
    ("forgetting", "forgetting", 1.0, 1, "", ("forgot more", "forgot less", "forgot as much")),
    ("weight_change", "weight change per experience", 100.0, 2, " %",
     ("changed its adapted weights more per experience", "changed its adapted weights less per "
      "experience", "changed its adapted weights as much per experience")),
    ("weight_change_total", "weight change over the stream", 100.0, 2, " %",
     ("ended further from its start weights", "ended closer to its start weights",
      "ended as far from its start weights")),
    ("inner_angle", "inner angle", _DEGREES, 2, "°",
     ("rotated its inner transform more", "rotated its inner transform less",
      "rotated its inner transform as much")),
    ("outer_angle", "outer angle", _DEGREES, 2, "°",
     ("turned its outer subspaces more", "turned its outer subspaces less",
      "turned its outer subspaces as much")),
]  # fmt: skip


def _scaled(line: Mapping[str, Any] | None, metric: str, scale: float, digits: int,
            unit: str) -> str:  # fmt: skip
    """``mean [low, high]`` of a summary line's ``metric`` times ``scale``; ``-``: not logged."""
    if line is None or not finite(line.get(metric)):
        return "-"
    mean = num_text(float(line[metric]) * scale, digits)
    if not finite(line.get(f"{metric}_low")):
        return f"{mean}{unit} (1 run)"
    low, high = (num_text(float(line[f"{metric}_{k}"]) * scale, digits) for k in ("low", "high"))
    return f"{mean}{unit} [{low}, {high}]"


def _compare(a: Mapping[str, Any], b: Mapping[str, Any], metric: str, scale: float, digits: int,
             unit: str, words: tuple[str, str, str]) -> str | None:  # fmt: skip
    """``"learned less (20.1 vs 25.3; intervals apart)"``: side a against side b in words that
    only restate the numbers (``None`` when either is not logged)."""
    if not (finite(a.get(metric)) and finite(b.get(metric))):
        return None
    x, y = (num_text(float(line[metric]) * scale, digits) for line in (a, b))
    word = words[2] if x == y else words[0] if float(x) > float(y) else words[1]
    ends = [a.get(f"{metric}_{k}") for k in ("low", "high")] + [
        b.get(f"{metric}_{k}") for k in ("low", "high")]  # fmt: skip
    if all(finite(v) for v in ends):
        lo_a, hi_a, lo_b, hi_b = (float(v) for v in ends)
        word += f" ({x}{unit} vs {y}{unit}; 95 % intervals " + (
            "overlap)" if lo_a <= hi_b and lo_b <= hi_a else "apart)")  # fmt: skip
    else:
        word += f" ({x}{unit} vs {y}{unit})"
    return word


class BaseSummaries:
    """``summary.csv``'s lines (:func:`~experiments.study.levels_v2.summarise`) over the runs
    on one base, so that a difference is set beside measurements of the runs it compared;
    ``base`` None or NaN: over every base, which is ``summary`` (``summary.csv``'s lines)."""

    def __init__(self, runs: pd.DataFrame, plan: pd.DataFrame, domains: list[str], n_boot: int,
                 summary: pd.DataFrame):  # fmt: skip
        self.runs, self.plan, self.domains, self.n_boot = runs, plan, domains, n_boot
        self.cache: dict[float | None, pd.DataFrame] = {None: summary}

    def __call__(self, base: Any) -> pd.DataFrame:
        key = float(base) if finite(base) else None
        if key not in self.cache:
            runs, plan = self.runs, self.plan
            if key is not None:
                runs = runs[pd.to_numeric(runs["base"], errors="coerce") == key]
                plan = plan[pd.to_numeric(plan["base"], errors="coerce") == key]
            self.cache[key] = summarise(runs, plan, self.domains, self.n_boot)
        return self.cache[key]


def _loss_bullet(t: Mapping[str, Any], summary: pd.DataFrame, reference_share: float) -> list[str]:
    figure = str(t.get("figure") or "")
    what = LOSS_FIGURES.get(figure, figure or "figure")
    if figure.startswith("new_domain_wer - "):  # claim 3's non-inferiority test
        what = f"new-domain WER minus the {figure.split(' - ', 1)[1]}-point margin"
    if t["kind"] == "test":
        how = f"test of claim {t['claim']}, outcome *against*"
        holm = f", Holm p = {num_text(t['p_holm'], 4)}"
    else:
        how = f"reported with claim {t['claim']}, 95 % CI above zero"
        holm = ""
    ci = (f"[{num_text(t['ci_low'], 2, True)}, {num_text(t['ci_high'], 2, True)}]"
          if finite(t["ci_low"]) else "[-]")  # fmt: skip
    out = [f"- **`{t['name']}`** ({what}; {how}): a - b = {num_text(t['effect'], 2, True)} WER points "
           f"{ci}, p = {num_text(t['p'], 4)}{holm}."]  # fmt: skip
    a, b = (_side(summary, t.get(f"{k}_arm", ""), t.get(f"{k}_budget"), t.get(f"{k}_share"),
                  reference_share, t["horizon"]) for k in "ab")  # fmt: skip
    if a is None or b is None:
        return out + ["  Its two sides are not configurations of this study's summary: no "
                      "per-configuration measurements to set beside it."]  # fmt: skip
    cells = []
    for metric, label, scale, digits, unit, _ in _MEASURES:
        x, y = _scaled(a, metric, scale, digits, unit), _scaled(b, metric, scale, digits, unit)
        if metric in ("inner_angle", "outer_angle") and x == y == "-":
            continue  # neither side has the angle (not an SSVD-O pair)
        cells.append(f"{label} {x} vs {y}")
    out.append(f"  a = `{a['config']}`, b = `{b['config']}` ({int(a['runs'])} and "
               f"{int(b['runs'])} runs): " + "; ".join(cells) + ".")  # fmt: skip
    words = [w for metric, _, scale, digits, unit, ws in _MEASURES
             if (w := _compare(a, b, metric, scale, digits, unit, ws)) is not None]  # fmt: skip
    if words:
        said = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
        out.append(f"  In numbers, against `{b['config']}`, `{a['config']}` {said}.")
    return out


def losses_section(claims: pd.DataFrame, summaries: BaseSummaries, study: Mapping[str, Any],
                    n_tests: int) -> list[str]:  # fmt: skip
    out = ["## Where SSVD-O loses", ""]
    ssvdo, share = ssvdo_arm(study), float(study["reference_share"])
    if ssvdo is None:
        return out + ["No SSVD-O arm in this study: nothing to report.", ""]
    if n_tests == 0:
        return out + ["No data: no test run of this study has finished, so there is no "
                      "comparison to report.", ""]  # fmt: skip
    lost = losses(claims, study)
    if lost.empty:
        return out + [f"SSVD-O loses nowhere here: no test of a claim went against it, and no "
                      f"reported difference of `{ssvdo}` at the reference share ({share:g}) in "
                      "new-domain WER or AWER against an arm it was compared with has its 95 % "
                      "CI above zero.", ""]  # fmt: skip
    out += [f"Every test of a claim whose outcome went against SSVD-O, and every reported "
            f"difference of `{ssvdo}` at the reference share ({share:g}) minus an arm it was "
            "compared with, in new-domain WER or AWER, whose 95 % CI lies above zero (*Claims*; "
            "`claims.csv`). Beside each, what the runs logged for the two configurations on the "
            "difference's base (mean over those runs [95 % CI, bootstrap over them]; "
            "`summary.csv`'s figures, from `runs.csv` restricted to that base): learning and "
            "forgetting (WER points), the relative weight change ||dW|| / ||W0|| of the adapted "
            "layers (per experience, mean over experiences; and over the whole stream, at its "
            "end), and the SSVD-O layers' inner rotation and outer principal angles (mean over "
            "layers and experiences, degrees). `-`: not logged. The sentences restate these "
            "numbers; they do not say why.", ""]  # fmt: skip
    for t in lost.to_dict("records"):
        out += _loss_bullet(t, summaries(t.get("base")), share)
    return out + [""]
