"""The one scorer (jiwer) gives the numbers both old scorers gave: checked against an
independent Levenshtein count and against SpeechBrain's edit distance (what
``cl_ssvdo.asr.evaluate`` used before), on random references and hypotheses."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from speechbrain.utils.edit_distance import count_ops, op_table

from cl_ssvdo.data.scoring import cer, error_counts, error_rate, utterance_error_counts, wer


def levenshtein(ref: list[str], hyp: list[str]) -> int:
    """Textbook dynamic programme: substitutions + deletions + insertions."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        cur = [i]
        for j, h in enumerate(hyp, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h)))
        prev = cur
    return prev[-1]


def speechbrain_edits(ref: list[str], hyp: list[str]) -> int:
    ops = count_ops(op_table(list(ref), list(hyp)))
    return int(ops["insertions"] + ops["deletions"] + ops["substitutions"])


WORDS = st.lists(st.sampled_from(["one", "two", "oh", "light", "lights", "on", "a"]), max_size=7)
SPACES = st.sampled_from([" ", "  ", "\t", " \n "])
PAIRS = st.lists(st.tuples(WORDS, WORDS, SPACES), min_size=1, max_size=8)


@given(PAIRS)
@settings(max_examples=150, deadline=None)
def test_counts_equal_an_independent_levenshtein_and_speechbrain(pairs) -> None:
    refs = [sep.join(r) for r, _, sep in pairs]
    hyps = [" ".join(h) + sep for _, h, sep in pairs]
    words = [(r, h) for r, h, _ in pairs]
    chars = [(list(" ".join(r)), list(" ".join(h))) for r, h, _ in pairs]

    per_word, n_words = utterance_error_counts(refs, hyps, "word")
    assert per_word == [levenshtein(r, h) for r, h in words]
    assert per_word == [speechbrain_edits(r, h) for r, h in words]
    assert n_words == [len(r) for r, _ in words]
    per_char, n_chars = utterance_error_counts(refs, hyps, "char")
    assert per_char == [levenshtein(r, h) for r, h in chars]
    assert per_char == [speechbrain_edits(r, h) for r, h in chars]
    assert n_chars == [len(r) for r, _ in chars]

    assert error_counts(refs, hyps, "word") == (sum(per_word), sum(n_words))
    assert error_counts(refs, hyps, "char") == (sum(per_char), sum(n_chars))
    assert wer(refs, hyps) == 100.0 * sum(per_word) / max(sum(n_words), 1)
    assert cer(refs, hyps) == 100.0 * sum(per_char) / max(sum(n_chars), 1)


def test_empty_sides_and_bad_arguments() -> None:
    assert error_counts([], []) == (0, 0) and utterance_error_counts([], []) == ([], [])
    assert error_counts([""], ["a b"]) == (2, 0) and wer([""], ["a b"]) == 200.0
    assert error_counts(["a b"], [""]) == (2, 2) and wer(["a b"], [""]) == 100.0
    assert error_rate(0, 0) == 0.0
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        error_counts(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="unit must be 'word' or 'char'"):
        utterance_error_counts(["a"], ["a"], unit="phone")
