"""Claims v2 on synthetic per-utterance tables with known answers (experiments.study.claims_v2)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cl_ssvdo.metrics import awer
from experiments.study.claims_v2 import (
    NOT_RUN,
    NOT_TESTED,
    ClaimV2,
    claim4_qualifies,
    claim_inner_share,
    claim_new_domain,
    claim_scale,
    claim_tradeoff,
    claims_table,
    evaluate_claims,
)
from experiments.study.collect import DOMAINS
from experiments.study.differences import (
    final_awer_difference,
    forgetting_difference,
    new_domain_difference,
    run_matrices,
)
from experiments.study.frames_v2 import (
    _rejudge,
    _with_reported,
    awer_sides,
    long_horizon_sides,
)
from experiments.study.losses_v2 import _side
from experiments.study.sections_v2 import claims_section
from experiments.study.synthetic import synthetic_frame
from experiments.study.verdicts import Bootstrap, Test, judge

N_BOOT = 500
SHARES = {"p25": 0.25, "p75": 0.75}


def test_planted_effect_is_confirmed_and_zero_effect_is_inconclusive() -> None:
    planted = synthetic_frame({"ssvdo": 0.10, "lora": 0.30, "dora": 0.25}, seed=0)
    c = claim_new_domain(planted, DOMAINS, "ssvdo", ["lora", "dora"], n_boot=N_BOOT)
    assert c.verdict == "confirmed"
    assert [t.outcome for t in c.tests] == ["for", "for"]
    lora = c.tests[0].result
    assert lora.ci_low < lora.effect < lora.ci_high < 0
    assert -25 < lora.effect < -15  # planted: 10 % vs 30 %
    assert all(t.p_adjusted >= t.result.p_value for t in c.tests)  # Holm never lowers p

    zero = synthetic_frame({"ssvdo": 0.20, "lora": 0.20}, seed=1)
    c = claim_new_domain(zero, DOMAINS, "ssvdo", ["lora"], n_boot=N_BOOT)
    assert c.verdict == "inconclusive"
    r = c.tests[0].result
    assert r.ci_low < 0 < r.ci_high and c.tests[0].outcome == "unclear"


def test_effect_of_the_wrong_sign_refutes() -> None:
    frame = synthetic_frame({"ssvdo": 0.35, "lora": 0.10}, seed=2)
    assert claim_new_domain(frame, DOMAINS, "ssvdo", ["lora"], n_boot=N_BOOT).verdict == "refuted"


def test_one_unclear_comparison_keeps_the_claim_inconclusive() -> None:
    frame = synthetic_frame({"ssvdo": 0.10, "lora": 0.30, "pissa": 0.10}, seed=3)
    c = claim_new_domain(frame, DOMAINS, "ssvdo", ["lora", "pissa"], n_boot=N_BOOT)
    assert [t.outcome for t in c.tests] == ["for", "unclear"] and c.verdict == "inconclusive"


def test_gap_to_full_fine_tuning_is_reported_not_tested() -> None:
    frame = synthetic_frame({"ssvdo": 0.20, "lora": 0.30, "full_adapted": 0.10}, seed=4)
    c = claim_new_domain(frame, DOMAINS, "ssvdo", ["lora"], full=["full_adapted"], n_boot=N_BOOT)
    assert len(c.tests) == 1
    gaps = dict(c.reported)
    assert set(gaps) == {
        "gap ssvdo - full_adapted (budget None, base 0)",
        "gap lora - full_adapted (budget None, base 0)",
    }
    assert gaps["gap ssvdo - full_adapted (budget None, base 0)"].effect == pytest.approx(10, abs=3)
    assert gaps["gap lora - full_adapted (budget None, base 0)"].effect == pytest.approx(20, abs=3)


def test_claim2_inner_share_planted_and_null() -> None:
    planted = synthetic_frame({"p25": 0.30, "p75": 0.10}, shares=SHARES, seed=5)
    c = claim_inner_share(planted, DOMAINS, "ssvdo", [0.25, 0.75], [100], n_boot=N_BOOT)
    assert c.verdict == "confirmed" and c.tests[0].result.effect < -15
    null = synthetic_frame({"p25": 0.20, "p75": 0.20}, shares=SHARES, seed=6)
    c = claim_inner_share(null, DOMAINS, "ssvdo", [0.25, 0.75], [100], n_boot=N_BOOT)
    assert c.verdict == "inconclusive"


def test_claim3_less_forgetting_and_non_inferior_learning_is_confirmed() -> None:
    frame = synthetic_frame(
        {"p25": 0.05, "p75": 0.05},
        shares=SHARES,
        forget={"p75": 0.20},
        voices=8,
        utterances=30,
        seed=7,
    )
    c = claim_tradeoff(frame, DOMAINS, "ssvdo", [0.25, 0.75], [100], n_boot=N_BOOT)
    forgetting, learning = c.tests
    assert forgetting.outcome == "for" and forgetting.result.effect == pytest.approx(-20, abs=3)
    # learning equal: the shifted difference sits near -1 point, its CI below 0
    assert learning.result.effect == pytest.approx(-1.0, abs=0.6) and learning.result.ci_high < 0
    assert c.verdict == "confirmed"


def test_claim3_without_a_forgetting_difference_is_inconclusive() -> None:
    frame = synthetic_frame({"p25": 0.2, "p75": 0.2}, shares=SHARES, forget={"p25": 0.1,
                            "p75": 0.1}, seed=8)  # fmt: skip
    c = claim_tradeoff(frame, DOMAINS, "ssvdo", [0.25, 0.75], [100], n_boot=N_BOOT)
    assert c.verdict == "inconclusive" and c.tests[0].outcome == "unclear"


def test_forgetting_counts_the_base_domain_against_row_zero() -> None:
    """Only the adult column forgets (row 0 -> final): the difference is the adult loss
    weighted by adult's share of the earlier-domain words."""
    frame = synthetic_frame({"a": 0.1, "b": 0.1}, seed=9, utterances=5)
    final = len(DOMAINS)
    hit = (frame["arm"] == "a") & (frame["row"] == final) & (frame["domain"] == "adult")
    frame.loc[hit, "errors"] = frame.loc[hit, "words"]  # every adult word wrong at the end
    r = forgetting_difference(frame, DOMAINS, {"arm": "a"}, {"arm": "b"}, n_boot=200)
    assert r.effect == pytest.approx(
        _forgetting_points(frame, "a") - _forgetting_points(frame, "b")
    )
    # adult: ~10 % -> 100 %, child unchanged; equal words, so about (90 + 0) / 2 points
    assert r.effect == pytest.approx(45, abs=6) and r.ci_low > 0  # voices drawn across domains


def _forgetting_points(frame: pd.DataFrame, arm: str) -> float:
    """Direct: mean over seeds of pooled (final - learned) errors on earlier domains / words."""
    n = len(DOMAINS)
    runs = frame[frame["arm"] == arm]
    total, words = 0.0, 0.0
    for k, domain in enumerate(DOMAINS[:-1]):
        learned = 0 if k == 0 else k + 1
        fin = runs[(runs["row"] == n) & (runs["domain"] == domain)]
        ref = runs[(runs["row"] == learned) & (runs["domain"] == domain)]
        seeds = fin["seed"].nunique()
        total += (fin["errors"].sum() - ref["errors"].sum()) / seeds
        words += fin["words"].sum() / seeds
    return 100.0 * total / words


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.0, 0.6), st.floats(0.0, 0.6))
def test_new_domain_effect_is_the_pooled_wer_difference(seed: int, pa: float, pb: float) -> None:
    frame = synthetic_frame({"a": pa, "b": pb}, seeds=(0, 1), voices=2, utterances=3, seed=seed)
    r = new_domain_difference(frame, DOMAINS, {"arm": "a"}, {"arm": "b"}, n_boot=50)
    cells = pd.DataFrame([(k + 1, DOMAINS[k]) for k in range(1, len(DOMAINS))],
                         columns=["row", "domain"])  # fmt: skip
    part = frame.merge(cells, on=["row", "domain"])
    wer = {arm: 100.0 * g["errors"].sum() / g["words"].sum() for arm, g in part.groupby("arm")}
    assert r.effect == pytest.approx(wer["a"] - wer["b"])
    assert r.ci_low <= r.ci_high


def test_claim4_is_not_tested_without_qualifying_bases() -> None:
    frame = synthetic_frame({"ssvdo": 0.2, "ssvd": 0.2}, seed=10)
    bases = [
        {"family": "conformer", "size": 2.0e6, "adult_wer": 29.6, "budget_fraction": 0.0176},
        {"family": "conformer", "size": 8.0e6, "adult_wer": 57.7, "budget_fraction": 0.0066},
        {"family": "whisper", "size": 37.8e6, "adult_wer": 10.0, "budget_fraction": 0.01},
    ]
    c = claim_scale(frame, DOMAINS, bases)
    assert c.verdict == NOT_TESTED and not c.tests
    assert "conformer: 2 size(s), 3 needed" in c.reason and "whisper: 1 size(s)" in c.reason
    ok, why = claim4_qualifies([{**b, "size": s} for b, s in zip(bases[:1] * 3, (1, 2, 3),
                                                                  strict=True)])  # fmt: skip
    assert ok, why
    far = [{**bases[0], "size": s, "adult_wer": w} for s, w in ((1, 20), (2, 30), (3, 31))]
    assert claim4_qualifies(far) == (False, "conformer: adult WER 20.0-31.0, not within 5 points")


def _three_sizes(ssvd_rates: tuple[float, float, float]) -> tuple[pd.DataFrame, list[dict]]:
    parts = [synthetic_frame({"ssvdo": 0.20, "ssvd": rate}, seed=11 + base).assign(base=base)
             for base, rate in enumerate(ssvd_rates)]  # fmt: skip
    bases = [
        {"family": "conformer", "size": s, "base": b, "adult_wer": 30.0, "budget_fraction": 0.01}
        for b, s in ((0, 1.0), (1, 2.0), (2, 4.0))
    ]
    return pd.concat(parts, ignore_index=True), bases


def test_claim4_planted_growth_is_confirmed_between_qualifying_bases() -> None:
    frame, bases = _three_sizes((0.20, 0.30, 0.40))
    c = claim_scale(frame, DOMAINS, bases, n_boot=N_BOOT)
    assert c.verdict == "confirmed" and len(c.tests) == 2
    assert all(t.result.effect == pytest.approx(10, abs=3) for t in c.tests)
    # no growth (the outer transform worth 10 points at every size): not confirmed
    frame, bases = _three_sizes((0.30, 0.30, 0.30))
    flat = claim_scale(frame, DOMAINS, bases, n_boot=N_BOOT)
    assert flat.verdict != "confirmed"
    assert all(t.result.ci_low < 0 < t.result.ci_high for t in flat.tests)


def test_final_awer_difference_is_the_matrices_awer_with_test_sampling_in_its_ci() -> None:
    # b forgets 30 points on the two earlier of three domains: final AWER higher by 30 * 2/3
    frame = synthetic_frame({"a": 0.1, "b": 0.1}, forget={"b": 0.3}, seed=12)
    r = final_awer_difference(frame, DOMAINS, {"arm": "b"}, {"arm": "a"}, n_boot=N_BOOT)
    per_run = {arm: [awer(R)[-1] for R in run_matrices(frame[frame["arm"] == arm], DOMAINS).values()]
               for arm in ("a", "b")}  # fmt: skip
    assert r.effect == pytest.approx(np.mean(per_run["b"]) - np.mean(per_run["a"]), abs=1e-9)
    assert r.effect == pytest.approx(20, abs=3) and r.ci_low > 0 and r.p_value < 0.01
    null = final_awer_difference(frame, DOMAINS, {"arm": "a"}, {"arm": "a"}, n_boot=N_BOOT)
    assert null.effect == 0 and null.ci_low == 0 == null.ci_high
    # one run a side: the seeds cannot be resampled, the voices and utterances still are
    one = frame[frame["seed"] == 0]
    single = final_awer_difference(one, DOMAINS, {"arm": "b"}, {"arm": "a"}, n_boot=N_BOOT)
    assert single.ci_high - single.ci_low > 2.0


def test_evaluate_claims_and_table_cover_every_claim() -> None:
    frame = synthetic_frame(
        {"p25": 0.10, "p75": 0.15, "lora": 0.30, "full_adapted": 0.05}, shares=SHARES, seed=13
    )
    claims = evaluate_claims(frame, DOMAINS, shares=(0.25, 0.75), budgets=[100], n_boot=N_BOOT)
    assert [c.number for c in claims] == [1, 2, 3, 4]
    assert claims[0].verdict == "confirmed" and claims[3].verdict == NOT_TESTED
    table = claims_table(claims)
    assert set(table["claim"]) == {1, 2, 3, 4}
    tests = table[table["kind"] == "test"]
    assert tests["p_holm"].notna().all() and (tests["p_holm"] >= tests["p"] - 1e-12).all()
    assert (table["kind"] == "reported").sum() == 2  # gap of ssvdo and lora to full FT
    sided = table[table["claim"].isin([1, 2, 3]) & (table["kind"] != "none")]
    assert sided["a_arm"].notna().all() and sided["b_arm"].notna().all()  # what each compares
    one = table[(table["claim"] == 1) & (table["kind"] == "test")].iloc[0]
    assert (one["figure"], one["a_arm"], one["a_share"], one["b_arm"], one["a_budget"]) == (
        "new_domain_wer", "ssvdo", 0.25, "lora", 100.0)  # fmt: skip
    assert np.isnan(one["b_share"])  # the baseline is not selected on a share


def test_missing_columns_and_mismatched_test_sets_are_named() -> None:
    frame = synthetic_frame({"a": 0.1, "b": 0.1}, seed=14)
    with pytest.raises(ValueError, match="missing columns"):
        evaluate_claims(frame.drop(columns=["speaker"]), DOMAINS)
    other = frame.copy()
    other.loc[other["arm"] == "b", "id"] += "x"
    with pytest.raises(ValueError, match="same test utterances"):
        new_domain_difference(other, DOMAINS, {"arm": "a"}, {"arm": "b"}, n_boot=10)
    with pytest.raises(ValueError, match="no per-utterance records for arm='c'"):
        new_domain_difference(frame, DOMAINS, {"arm": "c"}, {"arm": "b"}, n_boot=10)


def test_rejudge_partial_planned_and_unrun_claims() -> None:
    """Against the plan's family of tests: all run -> the rule's verdict; some missing -> they
    enter Holm with p = 1, so a claim whose run tests are all *for* is only inconclusive;
    none run -> *not run yet*, not a finding."""
    strong = Bootstrap(-5.0, -7.0, -3.0, 0.001, 2000)
    names = ["a - lora", "a - ssvd"]

    def claim(run: list[str]) -> ClaimV2:
        j = judge([Test(n, strong, "negative") for n in run])
        return ClaimV2(1, "s", j.verdict, j)

    planned = claim(names)
    full, missing = _rejudge(claim(names), planned, 0.05)
    assert (full.verdict, missing) == ("confirmed", [])
    half, missing = _rejudge(claim(names[:1]), planned, 0.05)
    assert half.verdict == "inconclusive" and missing == ["a - ssvd"]
    assert [t.outcome for t in half.tests] == ["for", "unclear"]
    none, missing = _rejudge(claim([]), planned, 0.05)
    assert none.verdict == NOT_RUN and missing == names
    assert none.reason == "2 of 2 planned tests have no finished runs (counted as unclear)"
    # a plan with no tests at all is not "not run yet": nothing was planned to run
    empty, missing = _rejudge(ClaimV2(1, "s", NOT_TESTED), claim([]), 0.05)
    assert empty.verdict == "inconclusive" and missing == []


def test_long_horizon_differences_are_reported_from_the_long_runs_only() -> None:
    """Main horizon: SSVD-O and LoRA equal; long horizon: SSVD-O 20 points better than LoRA
    and as good as full fine-tuning. Claim 1's test sees only the main runs; what it reports
    at the long horizon only the long ones, on the page under its own heading."""
    main = synthetic_frame({"ssvdo": 0.20, "lora": 0.20, "full_adapted": 0.20}, seed=16)
    long = synthetic_frame({"ssvdo": 0.10, "lora": 0.30, "full_adapted": 0.10}, seed=17)
    frame = pd.concat([main, long.assign(horizon="long")], ignore_index=True)
    c = claim_new_domain(frame, DOMAINS, "ssvdo", ["lora"], budgets=[100], n_boot=N_BOOT)
    r = c.tests[0].result
    assert r.ci_low < 0 < r.ci_high  # the long runs do not leak into the main test

    sides = long_horizon_sides(frame, "ssvdo", None, 100)
    assert [(name, figure) for name, figure, *_ in sides] == [
        ("long: ssvdo - lora (budget 100, base 0)", "new_domain_wer"),
        ("long: AWER ssvdo - lora (budget 100, base 0)", "awer"),
        ("long: gap ssvdo - full_adapted (budget 100, base 0)", "new_domain_wer"),
        ("long: AWER ssvdo - full_adapted (budget 100, base 0)", "awer"),
    ]
    assert "budget" not in sides[2][3]  # full fine-tuning is not selected on a budget
    c = _with_reported(c, frame, DOMAINS, awer_sides(frame, "ssvdo", None, [100]) + sides, N_BOOT)
    got = dict(c.reported)
    assert got["long: ssvdo - lora (budget 100, base 0)"].effect == pytest.approx(-20, abs=3)
    assert got["long: ssvdo - lora (budget 100, base 0)"].ci_high < 0
    gap = got["long: gap ssvdo - full_adapted (budget 100, base 0)"]
    assert gap.ci_low < 0 < gap.ci_high
    main_awer = got["AWER ssvdo - lora (budget 100, base 0)"]
    assert main_awer.ci_low < 0 < main_awer.ci_high  # main horizon: no difference planted

    table = claims_table([c])
    horizon = dict(zip(table["name"], table["horizon"], strict=True))
    assert horizon["long: AWER ssvdo - lora (budget 100, base 0)"] == "long"
    assert horizon["ssvdo - lora (budget 100, base 0)"] == "main"
    page = "\n".join(claims_section(table.assign(statement="s"), 0.05))
    main_part, long_part = page.split("Reported at the long horizon (*Protocol*), not tested:")
    assert "| AWER ssvdo - lora (budget 100, base 0) |" in main_part
    assert "long:" not in main_part and long_part.count("| long: ") == 4


def test_a_difference_at_the_long_horizon_is_set_beside_the_long_configurations() -> None:
    summary = pd.DataFrame({"arm": ["lora", "lora"], "horizon": ["main", "long"],
                            "budget": [100, 100], "inner_share": [np.nan, np.nan],
                            "config": ["lora b100", "lora b100 long"]})  # fmt: skip
    assert _side(summary, "lora", 100, np.nan, 0.25, "long")["config"] == "lora b100 long"
    assert _side(summary, "lora", 100, np.nan, 0.25)["config"] == "lora b100"
    with pytest.raises(ValueError, match="different horizons"):
        claims_table([ClaimV2(1, "s", "inconclusive", reported=(("x", Bootstrap(0, -1, 1, 1, 9)),),
                              sides=(("x", "awer", {"arm": "a", "horizon": "long"},
                                      {"arm": "b"}),))])  # fmt: skip
