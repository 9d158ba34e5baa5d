"""v2: the claims of docs/protocol.md as stated tests on per-utterance records.

Input: the per-utterance table of ``experiments.study.collect`` (``COLUMNS``; one line per run,
evaluation row and test utterance). The figures per pair of arms (new-domain WER, forgetting,
per-run AWER) are ``experiments.study.differences``; each claim states its tests on them,
Holm-corrects them within the claim and takes the verdict by
``experiments.study.verdicts.judge``.

Claims:

1. SSVD-O (reference share) minus each matched baseline, new-domain WER, at every budget and
   every base both ran (claimed negative); the gap to full fine-tuning is reported, not tested.
2. New-domain WER of the largest inner share minus the smallest, at every budget (negative).
3. Forgetting of the smallest share minus the largest (negative), and learning
   non-inferiority: new-domain WER of the smallest share minus the largest, minus the margin
   (1 point), claimed negative; at every budget.
4. Only between qualifying bases (:func:`claim4_qualifies`); else "not tested here" + reason.

Example
-------
>>> from experiments.study.synthetic import synthetic_frame
>>> from experiments.study.collect import DOMAINS
>>> frame = synthetic_frame({"ssvdo": 0.10, "lora": 0.30}, seed=0)
>>> c = claim_new_domain(frame, DOMAINS, "ssvdo", ["lora"], n_boot=300)
>>> c.verdict
'confirmed'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from experiments.study.differences import (
    check_columns,
    forgetting_difference,
    new_domain_difference,
    outer_value_growth,
    shared_bases,
)
from experiments.study.verdicts import (
    RULE,
    Bootstrap,
    ClaimJudgement,
    Test,
    judge,
)

__all__ = [
    "BASELINES",
    "FULL",
    "NOT_RUN",
    "NOT_TESTED",
    "SIDE_COLUMNS",
    "ClaimV2",
    "claim4_qualifies",
    "claim_inner_share",
    "claim_new_domain",
    "claim_scale",
    "claim_tradeoff",
    "claims_table",
    "evaluate_claims",
]

NON_INFERIORITY_POINTS = 1.0
NOT_TESTED = "not tested here"
NOT_RUN = "not run yet"  # the protocol tests the claim, but none of its tests has finished runs
BASELINES = ("lora", "dora", "pissa", "ssvd")  # claim 1's matched baselines
FULL = ("full_adapted", "naive")  # claim 1's full fine-tuning arms (gap reported, not tested)
# what each test / reported difference compares (``claims_table``): the figure, then arm,
# budget and inner share of side a and of side b, the base (blank / NaN: not selected on) and
# the horizon both sides ran (``main`` unless the selections name another)
SIDE_COLUMNS = ["figure", "a_arm", "a_budget", "a_share", "b_arm", "b_budget", "b_share", "base",
                "horizon"]  # fmt: skip


@dataclass(frozen=True)
class ClaimV2:
    """A claim's verdict (``confirmed | refuted | inconclusive | not tested here | not run
    yet``), its tests after Holm, what it reports without testing, and why it was not tested
    (if so).

    ``sides``: per test or reported difference, ``(name, figure, a, b)``: the figure compared
    and the two selections (``{arm, budget, share, base}``) whose difference ``a - b`` it is.
    """

    number: int
    statement: str
    verdict: str
    judgement: ClaimJudgement | None = None
    reported: tuple[tuple[str, Bootstrap], ...] = ()
    reason: str = ""
    rule: str = RULE
    sides: tuple[tuple[str, str, Mapping[str, Any], Mapping[str, Any]], ...] = ()

    @property
    def tests(self) -> tuple[Test, ...]:
        return self.judgement.tests if self.judgement else ()


def claim_new_domain(
    frame: pd.DataFrame,
    domains: Sequence[str],
    ssvdo_arm: str,
    baselines: Sequence[str],
    *,
    budgets: Sequence[Any] = (None,),
    share: float | None = None,
    full: Sequence[str] = (),
    n_boot: int = 2000,
    alpha: float = 0.05,
) -> ClaimV2:
    """Claim 1: SSVD-O minus each baseline, new-domain WER, per budget and shared base."""
    tests, reported, sides = [], [], []
    for budget in budgets:
        ours = {"arm": ssvdo_arm, "budget": budget, "share": share}
        for other in baselines:
            theirs = {"arm": other, "budget": budget}
            for base in shared_bases(frame, ours, theirs):
                a, b = {**ours, "base": base}, {**theirs, "base": base}
                r = new_domain_difference(frame, domains, a, b, n_boot=n_boot)
                name = f"{ssvdo_arm} - {other} (budget {budget}, base {base})"
                tests.append(Test(name, r, "negative"))
                sides.append((name, "new_domain_wer", a, b))
        for ref in full:
            for arm_sel in [ours] + [{"arm": o, "budget": budget} for o in baselines]:
                for base in shared_bases(frame, arm_sel, {"arm": ref}):
                    a, b = {**arm_sel, "base": base}, {"arm": ref, "base": base}
                    r = new_domain_difference(frame, domains, a, b, n_boot=n_boot)
                    name = f"gap {arm_sel['arm']} - {ref} (budget {budget}, base {base})"
                    reported.append((name, r))
                    sides.append((name, "new_domain_wer", a, b))
    j = judge(tests, alpha)
    statement = ("SSVD-O beats LoRA/DoRA/PiSSA/SSVD at matched budgets and narrows the gap to "
                 "full fine-tuning")  # fmt: skip
    why = (
        "" if tests else f"no baseline of {list(baselines)} ran at a budget and base of {ssvdo_arm}"
    )
    return ClaimV2(1, statement, j.verdict, j, tuple(reported), reason=why, sides=tuple(sides))


def claim_inner_share(
    frame: pd.DataFrame,
    domains: Sequence[str],
    arm: str,
    shares: Sequence[float],
    budgets: Sequence[Any],
    *,
    n_boot: int = 2000,
    alpha: float = 0.05,
) -> ClaimV2:
    """Claim 2: new-domain WER of the largest share minus the smallest, at every budget."""
    lo, hi = min(shares), max(shares)
    tests, sides = [], []
    for budget in budgets:
        for base in shared_bases(frame, {"arm": arm, "budget": budget, "share": lo},
                           {"arm": arm, "budget": budget, "share": hi}):  # fmt: skip
            a = {"arm": arm, "budget": budget, "share": hi, "base": base}
            b = {"arm": arm, "budget": budget, "share": lo, "base": base}
            r = new_domain_difference(frame, domains, a, b, n_boot=n_boot)
            name = f"share {hi:g} - {lo:g} (budget {budget}, base {base})"
            tests.append(Test(name, r, "negative"))
            sides.append((name, "new_domain_wer", a, b))
    j = judge(tests, alpha)
    return ClaimV2(2, "Under tight budgets the inner transform is more parameter-efficient",
                   j.verdict, j, sides=tuple(sides))  # fmt: skip


def claim_tradeoff(
    frame: pd.DataFrame,
    domains: Sequence[str],
    arm: str,
    shares: Sequence[float],
    budgets: Sequence[Any],
    *,
    margin: float = NON_INFERIORITY_POINTS,
    n_boot: int = 2000,
    alpha: float = 0.05,
) -> ClaimV2:
    """Claim 3: less forgetting at the smallest share, learning not worse by ``margin``."""
    lo, hi = min(shares), max(shares)
    tests, sides = [], []
    for budget in budgets:
        small = {"arm": arm, "budget": budget, "share": lo}
        large = {"arm": arm, "budget": budget, "share": hi}
        for base in shared_bases(frame, small, large):
            s, g = {**small, "base": base}, {**large, "base": base}
            f = forgetting_difference(frame, domains, s, g, n_boot=n_boot)
            name = f"forgetting share {lo:g} - {hi:g} (budget {budget}, base {base})"
            tests.append(Test(name, f, "negative"))
            sides.append((name, "forgetting", s, g))
            n = new_domain_difference(frame, domains, s, g, n_boot=n_boot, shift_points=margin)
            name = (f"learning share {lo:g} - {hi:g} - {margin:g} (non-inferiority, "
                    f"budget {budget}, base {base})")  # fmt: skip
            tests.append(Test(name, n, "negative"))
            sides.append((name, f"new_domain_wer - {margin:g}", s, g))
    j = judge(tests, alpha)
    statement = ("A smaller inner share with a larger outer rank gives a better "
                 "learning/forgetting trade-off")  # fmt: skip
    return ClaimV2(3, statement, j.verdict, j, sides=tuple(sides))


def claim4_qualifies(bases: Sequence[Mapping[str, Any]]) -> tuple[bool, str]:
    """Claim 4 needs >= 3 sizes of one family with adult WER within 5 points and the budget
    the same fraction of the adapted weights (within 10 % of each other).

    ``bases``: ``{family, size, adult_wer, budget_fraction}`` per base.

    >>> claim4_qualifies([{"family": "conformer", "size": 2.0e6, "adult_wer": 29.6,
    ...                    "budget_fraction": 0.0176}])[0]
    False
    """
    by_family: dict[str, list[Mapping[str, Any]]] = {}
    for b in bases:
        by_family.setdefault(str(b["family"]), []).append(b)
    reasons = []
    for family, members in by_family.items():
        sizes = {b["size"] for b in members}
        if len(sizes) < 3:
            reasons.append(f"{family}: {len(sizes)} size(s), 3 needed")
            continue
        wers = [float(b["adult_wer"]) for b in members]
        if max(wers) - min(wers) > 5.0:
            reasons.append(
                f"{family}: adult WER {min(wers):.1f}-{max(wers):.1f}, not within 5 points"
            )
            continue
        fr = [float(b["budget_fraction"]) for b in members]
        if max(fr) > 1.1 * min(fr):
            reasons.append(f"{family}: budget fractions {min(fr):.4f}-{max(fr):.4f} differ")
            continue
        return True, f"{family}: {len(sizes)} comparable sizes"
    return False, "; ".join(reasons) or "no bases described"


def claim_scale(
    frame: pd.DataFrame,
    domains: Sequence[str],
    bases: Sequence[Mapping[str, Any]],
    *,
    ssvdo_arm: str = "ssvdo",
    inner_arm: str = "ssvd",
    n_boot: int = 2000,
    alpha: float = 0.05,
) -> ClaimV2:
    """Claim 4: the outer transform's value (new-domain WER of ``inner_arm`` minus
    ``ssvdo_arm``) grows from each size to the next (claimed positive), with the hierarchical
    bootstrap (``experiments.study.differences.outer_value_growth``). Not tested unless
    :func:`claim4_qualifies`; ``frame['base']`` names the size there."""
    statement = "The outer transform gains value as the model grows"
    ok, why = claim4_qualifies(bases)
    if not ok:
        return ClaimV2(4, statement, NOT_TESTED, reason=why)
    sizes = sorted({b["size"] for b in bases})
    by_size = {b["size"]: b.get("base", b["size"]) for b in bases}
    tests = [
        Test(f"outer value size {b:g} - size {a:g}",
             outer_value_growth(frame, domains, ssvdo_arm, inner_arm, by_size[a], by_size[b],
                                n_boot=n_boot), "positive")
        for a, b in zip(sizes, sizes[1:], strict=False)
    ]  # fmt: skip
    j = judge(tests, alpha)
    return ClaimV2(4, statement, j.verdict, j, reason=why)


def evaluate_claims(
    frame: pd.DataFrame,
    domains: Sequence[str],
    *,
    ssvdo_arm: str = "ssvdo",
    shares: Sequence[float] = (0.25, 0.5, 0.75),
    reference_share: float = 0.25,
    budgets: Sequence[Any] = (None,),
    baselines: Sequence[str] = BASELINES,
    full: Sequence[str] = FULL,
    bases: Sequence[Mapping[str, Any]] = (),
    n_boot: int = 2000,
    alpha: float = 0.05,
) -> list[ClaimV2]:
    """The four claims over the arms present in ``frame`` (absent baselines are skipped)."""
    check_columns(frame)
    present = set(frame["arm"].unique())
    base_list = [b for b in baselines if b in present]
    full_list = [f for f in full if f in present]
    got = sorted({float(s) for s in frame.loc[frame["arm"] == ssvdo_arm, "inner_share"].dropna()})
    use = [s for s in shares if any(np.isclose(s, g) for g in got)]
    out = [claim_new_domain(frame, domains, ssvdo_arm, base_list, budgets=budgets,
                            share=reference_share, full=full_list, n_boot=n_boot, alpha=alpha)]  # fmt: skip
    if len(use) >= 2:
        out.append(claim_inner_share(frame, domains, ssvdo_arm, use, budgets, n_boot=n_boot,
                                     alpha=alpha))  # fmt: skip
        out.append(claim_tradeoff(frame, domains, ssvdo_arm, use, budgets, n_boot=n_boot,
                                  alpha=alpha))  # fmt: skip
    else:
        why = f"{ssvdo_arm} ran {len(use)} inner share(s); 2 needed"
        out.append(ClaimV2(2, "Under tight budgets the inner transform is more parameter-"
                           "efficient", NOT_TESTED, reason=why))  # fmt: skip
        out.append(ClaimV2(3, "A smaller inner share with a larger outer rank gives a better "
                           "learning/forgetting trade-off", NOT_TESTED, reason=why))  # fmt: skip
    out.append(claim_scale(frame, domains, bases, ssvdo_arm=ssvdo_arm, n_boot=n_boot, alpha=alpha))
    return out


def claims_table(claims: Iterable[ClaimV2]) -> pd.DataFrame:
    """One line per test and per reported figure: claim, verdict, kind, name, effect, CI,
    p, Holm p, outcome and what it compares (:data:`SIDE_COLUMNS`, from ``ClaimV2.sides``;
    blank for a test without them) (the CSV behind the page's claims section)."""
    lines = []
    for c in claims:
        base = {"claim": c.number, "verdict": c.verdict, "reason": c.reason}
        sides = {name: _side_columns(figure, a, b) for name, figure, a, b in c.sides}
        for t in c.tests:
            r = t.result
            lines.append({**base, "kind": "test", "name": t.name, "claimed": t.claimed,
                          "effect": r.effect, "ci_low": r.ci_low, "ci_high": r.ci_high,
                          "p": r.p_value, "p_holm": t.p_adjusted, "outcome": t.outcome,
                          **sides.get(t.name, {})})  # fmt: skip
        for name, r in c.reported:
            lines.append({**base, "kind": "reported", "name": name, "effect": r.effect,
                          "ci_low": r.ci_low, "ci_high": r.ci_high, "p": r.p_value,
                          **sides.get(name, {})})  # fmt: skip
        if not c.tests and not c.reported:
            lines.append({**base, "kind": "none", "name": ""})
    columns = ["claim", "verdict", "reason", "kind", "name", "claimed", "effect", "ci_low",
               "ci_high", "p", "p_holm", "outcome", *SIDE_COLUMNS]  # fmt: skip
    frame = pd.DataFrame(lines)
    return frame.reindex(columns=[*columns, *(c for c in frame.columns if c not in columns)])


def _side_columns(figure: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    def num(value: Any) -> float:
        return float(value) if value is not None else np.nan

    base = a.get("base", b.get("base"))
    horizon, other = a.get("horizon", "main"), b.get("horizon", "main")
    if other != horizon:
        raise ValueError(f"{figure}: sides at different horizons ({horizon!r}, {other!r})")
    return {"figure": figure, "a_arm": a["arm"], "a_budget": num(a.get("budget")),
            "a_share": num(a.get("share")), "b_arm": b["arm"], "b_budget": num(b.get("budget")),
            "b_share": num(b.get("share")), "base": num(base), "horizon": horizon}  # fmt: skip
