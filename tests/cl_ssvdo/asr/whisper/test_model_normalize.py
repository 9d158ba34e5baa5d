"""The scoring normaliser for Whisper output: numbers spelled like the references, idempotent,
identical to the stream's own normaliser on text without digits."""

from __future__ import annotations

import doctest
import string
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from cl_ssvdo.asr.whisper.decode import token_limits
from cl_ssvdo.asr.whisper.normalize import (
    normalize_hypothesis,
    normalize_text,
    number_to_words,
    ordinal_to_words,
)
from cl_ssvdo.data import normalize_transcript

# Text without numbers, "%" or "&" (which the Whisper normaliser spells out on purpose).
_TEXT = st.text(max_size=60).filter(
    lambda t: not any(c.isdigit() or c in "%&" for c in unicodedata.normalize("NFKD", t))
)


@given(st.integers(min_value=0, max_value=10**13 - 1))
def test_digits_and_spelled_numbers_normalise_alike(n: int) -> None:
    words = number_to_words(n)
    assert normalize_text(str(n)) == normalize_text(words) == words
    assert normalize_text(f"{n:,}") == words
    assert set(words) <= set(string.ascii_lowercase + " ")


@given(_TEXT)
def test_matches_the_stream_normaliser_without_digits(text: str) -> None:
    assert normalize_text(text) == normalize_transcript(text)


@given(st.text(max_size=60))
def test_idempotent(text: str) -> None:
    once = normalize_text(text)
    assert normalize_text(once) == once
    assert normalize_hypothesis(once, once) == once


@given(st.lists(st.integers(0, 9), min_size=1, max_size=9))
def test_digit_strings_read_either_way_are_no_error(digits: list[int]) -> None:
    """ "336" scores as "three three six" or "three hundred thirty six", whichever the
    reference says (the synthetic stream reads digit strings one by one)."""
    text = "".join(map(str, digits))
    each = " ".join(number_to_words(d) for d in digits)
    assert normalize_hypothesis(f"Code {text}.", f"code {each}") == f"code {each}"
    cardinal = number_to_words(int(text))
    assert normalize_hypothesis(f"Code {text}.", f"code {cardinal}") == f"code {cardinal}"


def test_examples() -> None:
    assert ordinal_to_words(21) == "twenty first" and ordinal_to_words(40) == "fortieth"
    assert normalize_text("3.5% on the 2nd") == "three point five percent on the second"
    assert normalize_hypothesis("Free one, nine.", "three one nine") == "free one nine"


@given(st.lists(st.floats(0.0, 30.0), max_size=8))
def test_token_limits_grow_with_duration_and_stay_capped(durations: list[float]) -> None:
    limits = token_limits(durations, tokens_per_second=6.0, margin=8, cap=440)
    assert all(8 <= n <= 440 for n in limits)
    order = sorted(range(len(durations)), key=durations.__getitem__)
    assert [limits[i] for i in order] == sorted(limits)


def test_docstring_examples_run() -> None:
    from cl_ssvdo.asr.whisper import decode, normalize

    for module in (normalize, decode):
        result = doctest.testmod(module, raise_on_error=False)
        assert result.attempted > 0 and result.failed == 0
