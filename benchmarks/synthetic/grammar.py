"""Small-vocabulary text: connected digit strings and short command phrases (50/50).

Every choice comes from the ``random.Random`` passed in, so a seeded generator gives the same
sentences on every machine. The vocabulary (:data:`VOCABULARY`) has about 150 words; every
sentence is already normalised (:func:`cl_ssvdo.data.normalize_transcript` leaves it unchanged).

Depends on the standard library only.
"""

from __future__ import annotations

import random

__all__ = ["VOCABULARY", "command_phrase", "digit_string", "sentence"]

DIGITS = ("zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_NUMBERS = ("ten", "twelve", "fifteen", "twenty", "thirty", "forty", "fifty", "hundred")
_ROOMS = ("kitchen", "bedroom", "bathroom", "living room", "hallway", "garage", "office", "garden")
_DEVICES = (
    "light",
    "lights",
    "lamp",
    "fan",
    "heater",
    "radio",
    "television",
    "oven",
    "kettle",
    "alarm",
)
_OPENABLE = ("door", "window", "front door", "back door", "gate", "curtains", "blinds")
_MEDIA = ("music", "song", "video", "podcast", "playlist", "news", "movie")
_NAMES = ("mum", "dad", "anna", "peter", "maria", "james", "grandma", "the doctor", "the office")
_LEVELS = ("volume", "temperature", "brightness", "speed")
_DIRECTIONS = ("left", "right", "forward", "back", "up", "down")
_TIMES = ("today", "tomorrow", "tonight", "this morning", "this evening", "next week")
_QUESTIONS = ("weather", "time", "date", "temperature outside", "score", "traffic")
_COLOURS = ("red", "green", "blue", "yellow", "white", "orange", "purple")
_TASKS = ("buy milk", "feed the cat", "water the plants", "take my pills", "call back", "lock up")


def _pick(rng: random.Random, options: tuple[str, ...]) -> str:
    return options[rng.randrange(len(options))]


def _maybe(rng: random.Random, text: str, p: float = 0.5) -> str:
    return text if rng.random() < p else ""


def digit_string(rng: random.Random, min_len: int = 3, max_len: int = 8) -> str:
    """Connected digits, e.g. ``"one three five oh nine"``."""
    n = rng.randint(min_len, max_len)
    return " ".join(_pick(rng, DIGITS) for _ in range(n))


def _number(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return _pick(rng, DIGITS[2:])
    return _pick(rng, _NUMBERS)


def command_phrase(rng: random.Random) -> str:
    """A short command or question, e.g. ``"turn off the kitchen light please"``."""
    kind = rng.randrange(9)
    if kind == 0:
        words = [
            _pick(rng, ("turn", "switch")),
            _pick(rng, ("on", "off")),
            "the",
            _maybe(rng, _pick(rng, _ROOMS)),
            _pick(rng, _DEVICES),
        ]
    elif kind == 1:
        words = [_pick(rng, ("open", "close", "lock", "unlock")), "the", _pick(rng, _OPENABLE)]
        words.append(_maybe(rng, "in the " + _pick(rng, _ROOMS), 0.4))
    elif kind == 2:
        words = [
            _pick(rng, ("play", "pause", "stop", "skip", "start", "repeat")),
            "the",
            _pick(rng, _MEDIA),
        ]
    elif kind == 3:
        words = [_pick(rng, ("call", "text", "send a message to", "ring")), _pick(rng, _NAMES)]
        words.append(_maybe(rng, _pick(rng, _TIMES), 0.3))
    elif kind == 4:
        words = [
            _pick(rng, ("set", "change")),
            "the",
            _pick(rng, _LEVELS),
            "to",
            _number(rng),
            _maybe(rng, _pick(rng, ("degrees", "percent")), 0.4),
        ]
    elif kind == 5:
        words = [
            _pick(rng, ("increase", "decrease", "raise", "lower")),
            "the",
            _pick(rng, _LEVELS),
            _maybe(rng, _pick(rng, ("a little", "a lot", "by " + _number(rng))), 0.6),
        ]
    elif kind == 6:
        words = [
            "move",
            _pick(rng, _DIRECTIONS),
            _number(rng),
            _pick(rng, ("steps", "metres", "times")),
        ]
    elif kind == 7:
        words = [
            "what is the",
            _pick(rng, _QUESTIONS),
            _maybe(rng, _pick(rng, _TIMES), 0.5),
        ]
    else:
        if rng.random() < 0.5:
            words = ["remind me to", _pick(rng, _TASKS), _pick(rng, _TIMES)]
        else:
            words = [
                "make the",
                _maybe(rng, _pick(rng, _ROOMS)),
                _pick(rng, ("light", "lamp", "lights")),
                _pick(rng, _COLOURS),
            ]
    words.insert(0, _maybe(rng, _pick(rng, ("please", "hey computer", "okay")), 0.2))
    words.append(_maybe(rng, _pick(rng, ("please", "now", "thanks")), 0.3))
    return " ".join(w for w in words if w)


def sentence(rng: random.Random) -> str:
    """A digit string or a command phrase, with equal probability."""
    return digit_string(rng) if rng.random() < 0.5 else command_phrase(rng)


def _vocabulary() -> frozenset[str]:
    groups = (
        DIGITS,
        _NUMBERS,
        _ROOMS,
        _DEVICES,
        _OPENABLE,
        _MEDIA,
        _NAMES,
        _LEVELS,
        _DIRECTIONS,
        _TIMES,
        _QUESTIONS,
        _COLOURS,
        _TASKS,
        (
            "turn",
            "switch",
            "on",
            "off",
            "the",
            "open",
            "close",
            "lock",
            "unlock",
            "in",
            "play",
            "pause",
            "stop",
            "skip",
            "start",
            "repeat",
            "call",
            "text",
            "send",
            "a",
            "message",
            "to",
            "ring",
            "set",
            "change",
            "degrees",
            "percent",
            "increase",
            "decrease",
            "raise",
            "lower",
            "little",
            "lot",
            "by",
            "move",
            "steps",
            "metres",
            "times",
            "what",
            "is",
            "remind",
            "me",
            "make",
            "please",
            "hey",
            "computer",
            "okay",
            "now",
            "thanks",
        ),
    )
    return frozenset(w for group in groups for phrase in group for w in phrase.split())


#: Every word a generated sentence can contain.
VOCABULARY: frozenset[str] = _vocabulary()
