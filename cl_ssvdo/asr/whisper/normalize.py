"""English text normalisation for scoring Whisper output against the stream's transcripts.

The stream's references are already normalised (``cl_ssvdo.data.normalize_transcript``:
lower-case ``a-z``, apostrophes, single spaces, numbers spelled out). Whisper writes cased,
punctuated text with digits ("It's 25 past 3."). :func:`normalize_text` maps both onto the same
form: numbers (integers, thousands separators, decimals, ordinals, ``%``) become English words,
then the same character rules as the stream apply. It is idempotent and the identity on an
already normalised transcript, so applying it to references and hypotheses alike is safe and
"25" vs "twenty five" is never an error.

Numbers are ambiguous: "336" may be read "three three six" (a digit string, which is how the
stream's normaliser spells digits) or "three hundred thirty six". :func:`normalize_hypothesis`
spells a hypothesis both ways and keeps the one closer to the reference (word edit distance),
so neither reading counts as an error; without a reference it uses cardinals.

(``cl_ssvdo`` may not import ``benchmarks``; ``tests`` check both functions agree.)

>>> normalize_text("It's 25 past 3, Mr. O'Neill -- 1,200 people (12%) came 2nd!")
"it's twenty five past three mr o'neill one thousand two hundred people twelve percent came second"
>>> normalize_text("twenty five") == normalize_text("25")
True
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalize_hypothesis", "normalize_text", "number_to_words", "ordinal_to_words"]

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = [(10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand")]
_ORDINAL_WORDS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
# The character rules of ``cl_ssvdo.data.normalize_transcript`` (kept equal by a test).
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'", "\u00b4": "'"})
_SPECIAL_LETTERS = str.maketrans(
    {"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "đ": "d", "ł": "l", "þ": "th", "ð": "d", "ı": "i"}
)
_NUMBER = re.compile(r"(?<![\d.])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(st|nd|rd|th)?(%)?")
_DIGIT = re.compile(r"\d")
_SEPARATORS = re.compile(r"[-_/\\\u2010-\u2015]")
_DISALLOWED = re.compile(r"[^a-z' ]")
_EDGE_APOSTROPHES = re.compile(r"(?:(?<=\s)|^)'+|'+(?=\s|$)")
_SPACES = re.compile(r"\s+")


def number_to_words(n: int) -> str:
    """Cardinal in English words, no "and", no hyphens: 125 -> 'one hundred twenty five'.

    >>> number_to_words(2_000_019)
    'two million nineteen'
    """
    if n < 0:
        return "minus " + number_to_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + ("" if ones == 0 else " " + _ONES[ones])
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return _ONES[hundreds] + " hundred" + ("" if rest == 0 else " " + number_to_words(rest))
    for value, name in _SCALES:
        if n >= value:
            head, rest = divmod(n, value)
            tail = "" if rest == 0 else " " + number_to_words(rest)
            return number_to_words(head) + " " + name + tail
    raise AssertionError("unreachable")


def ordinal_to_words(n: int) -> str:
    """Ordinal in English words: 21 -> 'twenty first'."""
    words = number_to_words(n).split()
    last = words[-1]
    if last in _ORDINAL_WORDS:
        words[-1] = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def _spell(match: re.Match, digit_by_digit: bool = False) -> str:
    integer, decimals, suffix, percent = match.groups()
    n = int(integer.replace(",", ""))
    if digit_by_digit and not suffix and "," not in integer:
        words = " ".join(_ONES[int(d)] for d in integer)
    else:
        words = ordinal_to_words(n) if suffix else number_to_words(n)
    if decimals:
        words += " point " + " ".join(_ONES[int(d)] for d in decimals)
    if percent:
        words += " percent"
    return f" {words} "


def normalize_text(text: str, digit_by_digit: bool = False) -> str:
    """Lower-case ``a-z``/apostrophe/single-space text with numbers spelled out (idempotent):
    as cardinals, or digit by digit (``digit_by_digit``, ordinals and 1,000-style excepted)."""
    if not isinstance(text, str):
        raise TypeError(f"normalize_text expects a str, got {type(text).__name__}")
    text = text.translate(_APOSTROPHES).lower().translate(_SPECIAL_LETTERS)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = _NUMBER.sub(lambda m: _spell(m, digit_by_digit), text)
    text = _DIGIT.sub(lambda m: f" {_ONES[int(m.group())]} ", text)  # any digit left over
    text = text.replace("%", " percent ").replace("&", " and ")
    text = _SEPARATORS.sub(" ", text)
    text = _SPACES.sub(" ", text)
    text = _DISALLOWED.sub(" ", text)  # never glue words together
    text = _EDGE_APOSTROPHES.sub("", text)
    return _SPACES.sub(" ", text).strip()


def _word_edits(a: list[str], b: list[str]) -> int:
    row = list(range(len(b) + 1))
    for i, wa in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, wb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (wa != wb))
    return row[-1]


def normalize_hypothesis(text: str, reference: str | None = None) -> str:
    """:func:`normalize_text` of a hypothesis; with a reference, numbers are spelled the way
    (cardinal or digit by digit) that is closer to it.

    >>> normalize_hypothesis("Call 336 now", "call three three six now")
    'call three three six now'
    >>> normalize_hypothesis("Call 336 now", "call three hundred thirty six now")
    'call three hundred thirty six now'
    """
    cardinal = normalize_text(text)
    if reference is None or not _DIGIT.search(text):
        return cardinal
    each = normalize_text(text, digit_by_digit=True)
    ref = normalize_text(reference).split()
    return each if _word_edits(each.split(), ref) < _word_edits(cardinal.split(), ref) else cardinal
