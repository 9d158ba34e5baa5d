"""The study's statistics on synthetic data whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.study.verdicts import (
    Test,
    bootstrap_wer_difference,
    holm,
    judge,
)


def _test_set(rng: np.random.Generator, voices: int = 5, per_voice: int = 20):
    words = rng.integers(4, 15, size=voices * per_voice)
    speakers = np.repeat([f"v{i}" for i in range(voices)], per_voice)
    return words, speakers


def _errors(rng, words, speakers, seeds: int, rate: float, voice_effect: np.ndarray):
    """Binomial word errors whose rate varies by voice (the hard voices stay hard)."""
    _, inverse = np.unique(speakers, return_inverse=True)
    p = np.clip(rate + voice_effect[inverse], 0.01, 0.95)
    return rng.binomial(words, p, size=(seeds, words.size))


def test_effect_is_the_wer_difference_in_points():
    words = np.array([10, 10, 20])
    speakers = np.array(["a", "a", "b"])
    a = np.array([[1, 0, 2], [1, 2, 0]])  # 3 errors / 40 words per seed -> 7.5 %
    b = np.array([[4, 4, 4], [4, 4, 4]])  # 12 / 40 -> 30 %
    r = bootstrap_wer_difference(a, b, words, speakers, n_boot=200)
    assert r.effect == pytest.approx(-22.5)
    assert r.ci_low <= r.effect <= r.ci_high


def test_planted_effect_is_confirmed_and_null_is_inconclusive():
    rng = np.random.default_rng(1)
    words, speakers = _test_set(rng)
    voice = rng.normal(0, 0.05, size=5)
    base = _errors(rng, words, speakers, 5, 0.20, voice)
    better = _errors(rng, words, speakers, 5, 0.12, voice)
    same = _errors(rng, words, speakers, 5, 0.20, voice)
    planted = bootstrap_wer_difference(better, base, words, speakers, n_boot=1000, seed=2)
    null = bootstrap_wer_difference(same, base, words, speakers, n_boot=1000, seed=3)
    assert planted.ci_high < 0 < -planted.effect
    assert null.ci_low < 0 < null.ci_high
    assert judge([Test("planted", planted, "negative")]).verdict == "confirmed"
    assert judge([Test("null", null, "negative")]).verdict == "inconclusive"
    # the same planted effect claimed the other way round refutes the claim
    assert judge([Test("planted", planted, "positive")]).verdict == "refuted"


def test_null_rejection_rate_is_near_alpha():
    """Under no difference, p < 0.05 happens rarely (a badly biased bootstrap would fail)."""
    rng = np.random.default_rng(7)
    words, speakers = _test_set(rng, voices=4, per_voice=12)
    rejections = 0
    trials = 40
    for t in range(trials):
        voice = rng.normal(0, 0.05, size=4)
        a = _errors(rng, words, speakers, 3, 0.2, voice)
        b = _errors(rng, words, speakers, 3, 0.2, voice)
        r = bootstrap_wer_difference(a, b, words, speakers, n_boot=300, seed=t)
        rejections += r.p_value < 0.05
    assert rejections / trials <= 0.15


def test_voice_resampling_widens_the_interval():
    """Voice-level variation must widen the CI relative to a one-voice test set."""
    rng = np.random.default_rng(4)
    words = np.full(120, 10)
    many = np.repeat(np.arange(6), 20)
    one = np.zeros(120, dtype=int)
    voice = np.array([-0.1, 0.1, -0.1, 0.1, -0.1, 0.1])
    # arm a is better on odd voices and worse on even ones: the contrast depends on the voices
    _, inv = np.unique(many, return_inverse=True)
    a = rng.binomial(10, np.clip(0.2 + voice[inv], 0, 1), size=(3, 120))
    b = rng.binomial(10, np.clip(0.2 - voice[inv], 0, 1), size=(3, 120))
    wide = bootstrap_wer_difference(a, b, words, many, n_boot=800)
    narrow = bootstrap_wer_difference(a, b, words, one, n_boot=800)
    assert wide.ci_high - wide.ci_low > 1.5 * (narrow.ci_high - narrow.ci_low)


def test_shapes_and_pairing_are_checked():
    words = np.ones(3)
    with pytest.raises(ValueError, match="agree on the number of utterances"):
        bootstrap_wer_difference(np.ones((2, 3)), np.ones((2, 4)), words, ["a"] * 3)
    with pytest.raises(ValueError, match="paired_seeds"):
        bootstrap_wer_difference(np.ones((2, 3)), np.ones((3, 3)), words, ["a"] * 3)
    r = bootstrap_wer_difference(
        np.ones((2, 3)), np.ones((3, 3)), words, ["a"] * 3, paired_seeds=False, n_boot=50
    )
    assert r.effect == 0.0
    with pytest.raises(ValueError, match=r"strata \['y'\]: no reference words"):
        bootstrap_wer_difference(np.ones((2, 3)), np.ones((2, 3)), np.array([1.0, 1.0, 0.0]),
                                 ["a"] * 3, strata=["x", "x", "y"])  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=1e-6, max_value=1.0), min_size=1, max_size=12))
def test_holm_properties(ps):
    adjusted = holm(ps)
    m = len(ps)
    for p, q in zip(ps, adjusted, strict=True):
        assert p - 1e-12 <= q <= min(1.0, m * p) + 1e-12
    order = np.argsort(ps, kind="stable")
    ranked = [adjusted[i] for i in order]
    assert all(x <= y + 1e-12 for x, y in zip(ranked, ranked[1:], strict=False))


def test_holm_known_values():
    assert holm([0.01, 0.04, 0.03]) == [0.03, 0.06, 0.06]
    assert holm([0.2]) == [0.2]
    assert holm([0.5, 0.5]) == [1.0, 1.0]


def test_holm_turns_a_marginal_family_inconclusive():
    """Three tests at p=0.03 each: each alone is 'for', the corrected family is not."""
    rng = np.random.default_rng(0)
    diffs = rng.normal(0, 1, 10)
    from experiments.study.verdicts import Bootstrap

    marginal = Bootstrap(-1.0, -2.0, -0.1, 0.03, diffs.size)
    assert judge([Test("one", marginal, "negative")]).verdict == "confirmed"
    family = judge([Test(str(i), marginal, "negative") for i in range(3)])
    assert family.verdict == "inconclusive"
    assert all(t.p_adjusted == pytest.approx(0.09) for t in family.tests)
    assert judge([]).verdict == "inconclusive"


def test_one_stratum_is_the_pooled_figure_and_strata_average_their_wers():
    rng = np.random.default_rng(7)
    words = rng.integers(3, 12, 40).astype(float)
    speakers = np.array([f"v{i % 5}" for i in range(40)])
    a = rng.binomial(words.astype(int), 0.2, size=(3, 40)).astype(float)
    b = rng.binomial(words.astype(int), 0.3, size=(3, 40)).astype(float)
    pooled = bootstrap_wer_difference(a, b, words, speakers, n_boot=300, seed=4)
    one = bootstrap_wer_difference(a, b, words, speakers, n_boot=300, seed=4, strata=["d"] * 40)
    assert one == pooled
    # two strata: the effect is the mean of the two strata's WER differences, not the pooled one
    halves = np.array(["x"] * 10 + ["y"] * 30)
    two = bootstrap_wer_difference(a, b, words, speakers, n_boot=300, strata=halves)
    per = [100 * (a.mean(0)[m].sum() - b.mean(0)[m].sum()) / words[m].sum()
           for m in (halves == "x", halves == "y")]  # fmt: skip
    assert two.effect == pytest.approx(np.mean(per))
