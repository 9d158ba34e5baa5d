"""Word and character error rates with ``jiwer``: the one scorer of evaluation, pretraining's
validation and the Avalanche WER metric.

Text is whitespace-normalised first (words are split on whitespace; characters include the
single spaces between words). Rates are percentages at corpus level,
``100 * (S + D + I) / N`` summed over utterances (can exceed 100); an empty reference set
counts the insertions against a denominator of 1.

Depends on jiwer only.
"""

from __future__ import annotations

from collections.abc import Sequence

import jiwer

__all__ = ["UNITS", "cer", "error_counts", "error_rate", "utterance_error_counts", "wer"]

UNITS = ("word", "char")


def _norm(text: str) -> str:
    return " ".join(str(text).split())


def _process(refs: Sequence[str], hyps: Sequence[str], unit: str, caller: str):
    if len(refs) != len(hyps):
        raise ValueError(f"{caller}: {len(refs)} references but {len(hyps)} hypotheses")
    if unit not in UNITS:
        raise ValueError(f"{caller}: unit must be 'word' or 'char', got {unit!r}")
    process = jiwer.process_words if unit == "word" else jiwer.process_characters
    return process([_norm(r) for r in refs], [_norm(h) for h in hyps])


def utterance_error_counts(
    refs: Sequence[str], hyps: Sequence[str], unit: str = "word"
) -> tuple[list[int], list[int]]:
    """Per utterance: errors ``S + D + I`` and reference length ``N`` (in words or characters),
    from jiwer's alignment; they sum to :func:`error_counts`.

    >>> utterance_error_counts(["turn on the light", "yes"], ["turn the lights", "yes"])
    ([2, 0], [4, 1])
    >>> utterance_error_counts(["ab c"], ["ab"], unit="char")
    ([2], [4])
    """
    if not refs and not hyps:
        return [], []
    out = _process(refs, hyps, unit, "utterance_error_counts")
    errors = []
    for chunks in out.alignments:
        n = 0
        for c in chunks:
            if c.type in ("substitute", "delete"):
                n += c.ref_end_idx - c.ref_start_idx
            elif c.type == "insert":
                n += c.hyp_end_idx - c.hyp_start_idx
        errors.append(n)
    return errors, [len(r) for r in out.references]


def error_counts(refs: Sequence[str], hyps: Sequence[str], unit: str = "word") -> tuple[int, int]:
    """``(S + D + I, N)`` summed over utterances, ``unit`` ``"word"`` or ``"char"``.

    >>> error_counts(["the cat sat"], ["the bat sat down"])
    (2, 3)
    """
    if not refs and not hyps:
        return 0, 0
    out = _process(refs, hyps, unit, "error_counts")
    edits = out.substitutions + out.deletions + out.insertions
    return int(edits), int(out.hits + out.substitutions + out.deletions)


def error_rate(edits: int, total: int) -> float:
    """``100 * edits / total`` (a total of 0 counts as 1).

    >>> error_rate(1, 4), error_rate(2, 0)
    (25.0, 200.0)
    """
    return 100.0 * edits / max(total, 1)


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus word error rate, percent.

    >>> wer(["turn on the light"], ["turn the lights"])
    50.0
    """
    return error_rate(*error_counts(refs, hyps, "word"))


def cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus character error rate, percent.

    >>> cer(["abcd"], ["abxd"])
    25.0
    """
    return error_rate(*error_counts(refs, hyps, "char"))
