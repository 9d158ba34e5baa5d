"""Synthetic per-utterance tables with known answers (tests and the doc examples of v2).

>>> frame = synthetic_frame({"ssvdo": 0.1, "lora": 0.3}, seeds=(0,), voices=2, utterances=2)
>>> sorted(frame["arm"].unique()), len(frame)
(['lora', 'ssvdo'], 96)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from experiments.study.collect import COLUMNS, DOMAINS

__all__ = ["synthetic_frame"]


def synthetic_frame(
    rates: Mapping[str, float],
    *,
    domains: Sequence[str] = tuple(DOMAINS),
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    voices: int = 4,
    utterances: int = 10,
    words: int = 10,
    forget: Mapping[str, float] | None = None,
    shares: Mapping[str, float] | None = None,
    budget: int = 100,
    seed: int = 0,
) -> pd.DataFrame:
    """Per-utterance records with known answers: arm ``a`` has word-error probability
    ``rates[a]`` on a domain right after learning it and ``rates[a] + forget[a]`` on earlier
    domains at the end; ``0.5`` before learning. ``shares`` maps an arm name to its
    ``(arm, inner_share)`` label: ``{"p25": ...}`` becomes arm ``ssvdo`` at that share."""
    rng = np.random.default_rng(seed)
    forget = dict(forget or {})
    lines: list[dict[str, Any]] = []
    n = len(domains)
    for name, p in rates.items():
        arm, share = name, np.nan
        if shares and name in shares:
            arm, share = "ssvdo", shares[name]
        for s in seeds:
            for row in range(n + 1):
                for k, domain in enumerate(domains):
                    learned_at = 0 if k == 0 else k + 1
                    if row < learned_at:
                        q = 0.5
                    elif row == n and k < n - 1:
                        q = p + forget.get(name, 0.0)
                    else:
                        q = p
                    q = float(np.clip(q, 0.0, 1.0))
                    errs = rng.binomial(words, q, size=voices * utterances)
                    for u in range(voices * utterances):
                        lines.append({"arm": arm, "budget": budget, "inner_share": share,
                                      "base": 0, "seed": s, "horizon": "main", "row": row,
                                      "domain": domain, "id": f"{domain}-{u}",
                                      "speaker": f"v{u // utterances}", "errors": int(errs[u]),
                                      "words": words})  # fmt: skip
    return pd.DataFrame(lines, columns=COLUMNS)
