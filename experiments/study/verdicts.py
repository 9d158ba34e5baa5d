"""Verdict rules of the study: numbers in, ``confirmed | refuted | inconclusive`` out.

Both study versions end in the same claim rule (:func:`claim_verdict`): a claim is
**confirmed** when every one of its tests or comparisons is *for* it, **refuted** when at least
one is *against* it (the claims are universal: "beats every baseline", "at every budget"), and
**inconclusive** otherwise (or when it has none). They differ in how one test is decided:

* v2 (docs/protocol.md): hierarchical paired bootstrap and Holm correction, below;
* v1 (docs/results.md, kept to reproduce that page): the seed-spread rule of
  :func:`compare_groups` (section at the end of this module).

Statistics of v2: hierarchical paired bootstrap, Holm correction, claim verdicts.

A WER difference between two arms has three sources of noise: the training seed, the test
voices (3-5 per domain on the embedded stream) and the utterances each voice read. Seed spread
alone understates it, so :func:`bootstrap_wer_difference` resamples all three, in that order:
seeds with replacement, then voices with replacement, then utterances within each drawn voice
with replacement. Both arms see the same voice and utterance draws (paired: they were scored
on the same test set); seeds are drawn for both arms with the same indices when the arms ran
the same seeds (``paired_seeds``), independently otherwise.

A *test* is a stated comparison with a claimed direction. Within one claim the p-values are
Holm-corrected (:func:`holm`); :func:`judge` turns the corrected tests into a verdict:

* a test is **for** the claim when its corrected p < ``alpha`` and the effect has the claimed
  sign, **against** when corrected p < ``alpha`` and the sign is the other, else **unclear**;
* the claim is **confirmed** when every test is *for*, **refuted** when at least one is
  *against* (the claims are universal: "beats every baseline", "at every budget"), and
  **inconclusive** otherwise (or when it has no test).

Only numpy; nothing here knows MLflow or the study layout.

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> words = np.full(40, 10)
>>> speakers = np.repeat(np.arange(4), 10)
>>> a = rng.binomial(10, 0.10, size=(3, 40))      # 3 seeds x 40 utterances, ~10 % WER
>>> b = rng.binomial(10, 0.30, size=(3, 40))      # ~30 % WER
>>> r = bootstrap_wer_difference(a, b, words, speakers, n_boot=500, seed=0)
>>> r.effect < 0 and r.ci_high < 0 and r.p_value < 0.01
True
>>> judge([Test("a vs b", r, claimed="negative")]).verdict
'confirmed'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

__all__ = [
    "Bootstrap",
    "ClaimJudgement",
    "Comparison",
    "Test",
    "bootstrap_wer_difference",
    "claim_verdict",
    "compare_groups",
    "holm",
    "judge",
    "verdict",
]

Direction = Literal["negative", "positive"]


@dataclass(frozen=True)
class Bootstrap:
    """A difference ``a - b`` with its percentile CI and two-sided bootstrap p-value."""

    effect: float
    ci_low: float
    ci_high: float
    p_value: float
    n_boot: int
    level: float = 0.95


def _p_two_sided(diffs: np.ndarray) -> float:
    """Two-sided bootstrap p-value of H0: difference = 0 (add-one smoothed, at most 1)."""
    n = diffs.size
    below = (np.count_nonzero(diffs <= 0) + 1) / (n + 1)
    above = (np.count_nonzero(diffs >= 0) + 1) / (n + 1)
    return float(min(1.0, 2.0 * min(below, above)))


def _summarise(effect: float, diffs: np.ndarray, level: float) -> Bootstrap:
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(diffs, [tail, 1.0 - tail])
    return Bootstrap(float(effect), float(low), float(high), _p_two_sided(diffs), diffs.size, level)


def _seed_weights(rng: np.random.Generator, n_boot: int, n_seeds: int) -> np.ndarray:
    """``[n_boot, n_seeds]`` multiplicities of a with-replacement draw of the seeds."""
    return rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=n_boot).astype(float)


def _utterance_weights(rng: np.random.Generator, n_boot: int, speakers: np.ndarray) -> np.ndarray:
    """``[n_boot, N]`` multiplicities of a voices-then-utterances draw.

    Drawing voice j ``c`` times and, each time, its ``n_j`` utterances with replacement gives
    utterance counts ~ Multinomial(c * n_j, 1/n_j) (a sum of independent multinomials with one
    probability vector), so one multinomial per voice replaces the nested loop.
    """
    labels, inverse = np.unique(speakers, return_inverse=True)
    n_spk = labels.size
    voice_counts = rng.multinomial(n_spk, np.full(n_spk, 1.0 / n_spk), size=n_boot)
    weights = np.zeros((n_boot, speakers.size))
    for j in range(n_spk):
        members = np.flatnonzero(inverse == j)
        draws = voice_counts[:, j] * members.size
        weights[:, members] = rng.multinomial(draws, np.full(members.size, 1.0 / members.size))
    return weights


def bootstrap_wer_difference(
    errors_a: np.ndarray,
    errors_b: np.ndarray,
    words: np.ndarray,
    speakers: Sequence[str] | np.ndarray,
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    paired_seeds: bool = True,
    seed: int = 0,
    strata: Sequence[str] | np.ndarray | None = None,
) -> Bootstrap:
    """WER(a) - WER(b) in points with a hierarchical (seed, voice, utterance) bootstrap.

    Arguments
    ---------
    errors_a, errors_b : array ``[S_a, N]`` and ``[S_b, N]``
        Word errors (substitutions + deletions + insertions) per seed and test utterance.
    words : array ``[N]``
        Reference word count per utterance.
    speakers : sequence ``[N]``
        Voice of each utterance.
    paired_seeds : bool
        Draw the same seed indices for both arms (requires ``S_a == S_b``).
    strata : sequence ``[N]``, optional
        A label per utterance (e.g. its domain). Given, the figure is the mean over strata of
        each stratum's WER (e.g. the final AWER: the mean of the per-domain WERs) instead of
        the pooled WER, and voices are drawn within each stratum, so every draw scores every
        stratum on as many voices as it has.

    Returns
    -------
    Bootstrap
        ``effect`` = mean-over-seeds WER(a) - WER(b) in percentage points (negative: a better).

    Example
    -------
    >>> words = np.full(8, 10.0)
    >>> domain = np.array(["x"] * 4 + ["y"] * 4)
    >>> a = np.tile([1.0] * 4 + [5.0] * 4, (2, 1))  # x: 10 %, y: 50 %, mean 30 %
    >>> b = np.tile([2.0] * 4 + [2.0] * 4, (2, 1))  # 20 % on both
    >>> r = bootstrap_wer_difference(a, b, words, np.arange(8) % 2, strata=domain, n_boot=50)
    >>> round(r.effect, 6), round(r.ci_low, 6), round(r.ci_high, 6)
    (10.0, 10.0, 10.0)
    """
    a = np.atleast_2d(np.asarray(errors_a, dtype=float))
    b = np.atleast_2d(np.asarray(errors_b, dtype=float))
    w = np.asarray(words, dtype=float)
    spk = np.asarray(speakers)
    if a.shape[1] != w.size or b.shape[1] != w.size or spk.size != w.size:
        raise ValueError(
            f"errors_a {a.shape}, errors_b {b.shape}, words {w.shape} and speakers "
            f"{spk.shape} must agree on the number of utterances"
        )
    if w.sum() <= 0:
        raise ValueError("words: the test set has no reference words")
    if paired_seeds and a.shape[0] != b.shape[0]:
        raise ValueError(
            f"paired_seeds needs as many seeds for a ({a.shape[0]}) as b ({b.shape[0]})"
        )
    groups = [np.arange(w.size)] if strata is None else _strata(strata, w)
    rng = np.random.default_rng(seed)
    mean_a, mean_b = a.mean(0), b.mean(0)
    effect = float(np.mean([100.0 * (mean_a[g].sum() - mean_b[g].sum()) / w[g].sum()
                            for g in groups]))  # fmt: skip
    va = _seed_weights(rng, n_boot, a.shape[0])
    vb = va if paired_seeds else _seed_weights(rng, n_boot, b.shape[0])
    per_utt_a = (va @ a) / a.shape[0]  # [n_boot, N]: mean errors over the drawn seeds
    per_utt_b = (vb @ b) / b.shape[0]
    diffs = np.zeros(n_boot)
    for g in groups:
        u = _utterance_weights(rng, n_boot, spk[g])
        diffs += 100.0 * ((per_utt_a[:, g] * u).sum(1) - (per_utt_b[:, g] * u).sum(1)) / (u @ w[g])
    return _summarise(effect, diffs / len(groups), level)


def _strata(strata: Sequence[str] | np.ndarray, words: np.ndarray) -> list[np.ndarray]:
    """Column indices per stratum label, each stratum with reference words."""
    labels = np.asarray(strata)
    if labels.size != words.size:
        raise ValueError(f"strata {labels.shape} and words {words.shape} must agree")
    groups = [np.flatnonzero(labels == s) for s in np.unique(labels)]
    empty = [str(labels[g[0]]) for g in groups if words[g].sum() <= 0]
    if empty:
        raise ValueError(f"strata {empty}: no reference words")
    return groups


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1).

    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(p_values, dtype=float)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        adjusted[idx] = running
    return [round(float(x), 12) for x in adjusted]


@dataclass(frozen=True)
class Test:
    """One stated comparison of a claim: ``result`` is ``a - b``; ``claimed`` its predicted sign."""

    name: str
    result: Bootstrap
    claimed: Direction
    p_adjusted: float | None = None
    outcome: str = ""


@dataclass(frozen=True)
class ClaimJudgement:
    verdict: str  # confirmed | refuted | inconclusive
    tests: tuple[Test, ...]
    alpha: float
    rule: str


RULE = (
    "each test: Holm-corrected p < alpha with the claimed sign = for, with the other sign = "
    "against, else unclear; claim confirmed if every test is for, refuted if any is against, "
    "inconclusive otherwise"
)


def _outcome(test: Test, alpha: float) -> str:
    if test.p_adjusted is None or test.p_adjusted >= alpha:
        return "unclear"
    sign_ok = test.result.effect < 0 if test.claimed == "negative" else test.result.effect > 0
    return "for" if sign_ok else "against"


def judge(tests: Sequence[Test], alpha: float = 0.05) -> ClaimJudgement:
    """Holm-correct the tests of one claim and give the verdict by :data:`RULE`."""
    adjusted = holm([t.result.p_value for t in tests]) if tests else []
    judged = []
    for t, p in zip(tests, adjusted, strict=True):
        with_p = replace(t, p_adjusted=p)
        judged.append(replace(with_p, outcome=_outcome(with_p, alpha)))
    verdict = claim_verdict([t.outcome for t in judged])
    return ClaimJudgement(verdict, tuple(judged), alpha, RULE)


def claim_verdict(outcomes: Sequence[str]) -> str:
    """The claim rule of both versions over its tests' outcomes (``for | against | ...``).

    >>> claim_verdict(["for", "for"]), claim_verdict(["for", "against"]), claim_verdict([])
    ('confirmed', 'refuted', 'inconclusive')
    """
    if "against" in outcomes:
        return "refuted"
    if outcomes and all(o == "for" for o in outcomes):
        return "confirmed"
    return "inconclusive"


# -- v1: the seed-spread rule (docs/results.md) ---------------------------------------------------
# A comparison puts the per-seed values of the side a claim says is better (``a``) against the
# other side (``b``): ``advantage`` = how much ``a`` is better; ``threshold = max(pooled sd over
# seeds, margin)``; ``for`` when ``advantage > threshold``, ``against`` when below
# ``-threshold``, else ``tie`` (also with fewer than two seeds on a side).
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
    """Apply the v1 rule (above) to per-seed values ``a`` and ``b``.

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
    return claim_verdict([c.outcome for c in comparisons])
