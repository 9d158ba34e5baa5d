"""Transcript normalisation shared by every corpus and the synthetic stream.

One rule set for all sources, so a model trained on one corpus is scored the same way on another:
lower-case ``a-z``, the apostrophe, and single spaces. Accented letters lose their accent
(``é`` -> ``e``), digits are spelled out one by one (``42`` -> ``four two``), hyphens, other
separators and every other character (symbols, emoji) become spaces, so words are never glued
together (``three@three#six`` -> ``three three six``), and apostrophes survive only inside
words (``don't`` stays, ``'quoted'`` -> ``quoted``).

Depends on the standard library only.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["ALLOWED_CHARS", "DIGIT_WORDS", "normalize_transcript"]

#: Every character a normalised transcript can contain.
ALLOWED_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz' ")

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'", "\u00b4": "'"})
_SEPARATORS = re.compile(r"[-_/\\\u2010-\u2015]")
_DISALLOWED = re.compile(r"[^a-z' ]")
_EDGE_APOSTROPHES = re.compile(r"(?:(?<=\s)|^)'+|'+(?=\s|$)")
_SPACES = re.compile(r"\s+")
_DIGIT = re.compile(r"\d")
# Letters that NFKD does not decompose into an ASCII base letter.
_SPECIAL_LETTERS = str.maketrans(
    {"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "đ": "d", "ł": "l", "þ": "th", "ð": "d", "ı": "i"}
)


def normalize_transcript(text: str) -> str:
    """Normalise a transcript to lower-case ``a-z``, apostrophes and single spaces.

    Arguments
    ---------
    text : str
        A transcript in any casing, with punctuation, digits or accents.

    Returns
    -------
    str
        The normalised transcript (possibly empty). The function is idempotent.

    Example
    -------
    >>> normalize_transcript("Turn OFF the kitchen-light, please! Room 42.")
    'turn off the kitchen light please room four two'
    >>> normalize_transcript("  'Café' isn\u2019t   open ")
    "cafe isn't open"
    >>> normalize_transcript("three@three#six \U0001f600 3 3 6")
    'three three six three three six'
    """
    if not isinstance(text, str):
        raise TypeError(f"normalize_transcript expects a str, got {type(text).__name__}")
    text = text.translate(_APOSTROPHES).lower().translate(_SPECIAL_LETTERS)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = _DIGIT.sub(lambda m: f" {DIGIT_WORDS[int(m.group())]} ", text)
    text = _SEPARATORS.sub(" ", text)
    text = _SPACES.sub(" ", text)
    text = _DISALLOWED.sub(" ", text)  # "three@three#six" -> "three three six", never glued
    text = _EDGE_APOSTROPHES.sub("", text)
    return _SPACES.sub(" ", text).strip()
