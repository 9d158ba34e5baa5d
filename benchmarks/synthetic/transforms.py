"""Per-domain synthesis options and sox effects, drawn from a per-utterance RNG.

adult / accent: engine defaults, ``tempo U(0.9, 1.1)``.
child: F0 raised at synthesis (espeak ``-p 85 -s 140``; flite
``int_f0_target_mean=260``, ``duration_stretch=1.1``), then ``pitch U(300, 500)`` cents (moves F0
and formants together, a linear vocal-tract-length perturbation) and ``tempo U(0.85, 0.95)``.
See docs/data.md for the word error rates these recipes produced.

Depends on the standard library only.
"""

from __future__ import annotations

import random

from benchmarks.synthetic.voices import Voice

__all__ = ["CHILD_PITCH_CENTS", "CHILD_TEMPO", "ADULT_TEMPO", "domain_transform"]

ADULT_TEMPO = (0.9, 1.1)
CHILD_TEMPO = (0.85, 0.95)
CHILD_PITCH_CENTS = (300, 500)


def domain_transform(
    kind: str, voice: Voice, rng: random.Random
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(engine_options, sox_effects)`` for one utterance of a domain of this ``kind``."""
    if kind in ("adult", "accent"):
        tempo = round(rng.uniform(*ADULT_TEMPO), 3)
        return (), ("tempo", f"{tempo:.3f}")
    if kind == "child":
        cents = rng.randint(*CHILD_PITCH_CENTS)
        tempo = round(rng.uniform(*CHILD_TEMPO), 3)
        if voice.engine == "espeak":
            options: tuple[str, ...] = ("-p", "85", "-s", "140")
        elif voice.engine == "flite":
            options = ("--setf", "int_f0_target_mean=260", "--setf", "duration_stretch=1.1")
        else:
            options = ()
        return options, ("pitch", str(cents), "tempo", f"{tempo:.3f}")
    raise ValueError(f"unknown domain kind {kind!r} (expected adult, child or accent)")
