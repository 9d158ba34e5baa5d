"""Mozilla Common Voice: ``<lang>/{train,dev,test}.tsv`` and ``<lang>/clips/*.mp3``.

The accent column (``accents`` in recent releases, ``accent`` in older ones) assigns each
clip to a domain through ordered rules: the first rule whose pattern occurs (case-insensitive)
in the accent text wins; clips that match no rule go to ``default_domain`` or, when it is None,
are left out and counted. mp3 clips are read directly (soundfile >= 0.12 with libsndfile >= 1.1
decodes MPEG audio; the dataset resamples 48 kHz to 16 kHz).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from benchmarks.corpora.common import (
    CorpusError,
    PreparedRows,
    audio_duration,
    finish,
    link_corpus,
    require_dir,
    wav_entry,
)
from cl_ssvdo.data import StreamInfo

__all__ = ["DEFAULT_ACCENT_RULES", "DEFAULT_TSVS", "accent_domain", "prepare_commonvoice"]

DEFAULT_TSVS = {"train": "train.tsv", "valid": "dev.tsv", "test": "test.tsv"}

#: (pattern, domain), first match wins.
DEFAULT_ACCENT_RULES: tuple[tuple[str, str], ...] = (
    ("scottish", "accent_scottish"),
    ("scotland", "accent_scottish"),
    ("caribbean", "accent_caribbean"),
    ("jamaica", "accent_caribbean"),
    ("india", "accent_indian"),
    ("south asia", "accent_indian"),
    ("england", "accent_england"),
    ("british", "accent_england"),
    ("irish", "accent_irish"),
    ("ireland", "accent_irish"),
    ("australia", "accent_australian"),
    ("african", "accent_african"),
    ("united states", "adult"),
    ("american", "adult"),
)


def accent_domain(accent: str, rules: Sequence[tuple[str, str]], default: str | None) -> str | None:
    """The domain of an accent label under ``rules`` (or ``default``)."""
    text = (accent or "").lower()
    if text:
        for pattern, domain in rules:
            if pattern.lower() in text:
                return domain
    return default


def prepare_commonvoice(
    corpus_dir: str | os.PathLike,
    out_root: str | os.PathLike,
    accent_rules: Sequence[tuple[str, str]] = DEFAULT_ACCENT_RULES,
    default_domain: str | None = None,
    tsvs: Mapping[str, str] = DEFAULT_TSVS,
    domains: Sequence[str] | None = None,
    min_upvotes: int = 0,
) -> StreamInfo:
    """Manifests per accent domain from a local Common Voice language folder (holding ``clips/``).

    Arguments
    ---------
    accent_rules : ordered ``(pattern, domain)`` pairs applied to the accent field.
    default_domain : domain for clips whose accent matches no rule (None: leave them out, counted).
    tsvs : split -> tsv file name.
    domains : order of the domains in the stream (default: order of first appearance in the rules).
    min_upvotes : leave out clips with fewer up-votes (counted).
    """
    corpus = require_dir(corpus_dir, "Common Voice")
    clips = require_dir(corpus / "clips", "Common Voice clips")
    out = Path(out_root)
    linked = link_corpus(out, "commonvoice", corpus) is not None
    prepared = PreparedRows()
    for split, tsv_name in tsvs.items():
        tsv = corpus / tsv_name
        if not tsv.is_file():
            raise CorpusError(f"Common Voice: {tsv} not found")
        with tsv.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = reader.fieldnames or []
            for column in ("client_id", "path", "sentence"):
                if column not in header:
                    raise CorpusError(
                        f"Common Voice: {tsv} has no column {column!r} (header {header})"
                    )
            accent_col = (
                "accents" if "accents" in header else "accent" if "accent" in header else None
            )
            for row in reader:
                domain = accent_domain(
                    row.get(accent_col, "") if accent_col else "", accent_rules, default_domain
                )
                if domain is None:
                    prepared.drop("accent matches no rule")
                    continue
                if int(row.get("up_votes") or 0) < min_upvotes:
                    prepared.drop(f"fewer than {min_upvotes} up-votes")
                    continue
                audio = clips / row["path"]
                if not audio.is_file():
                    raise CorpusError(f"Common Voice: {tsv}: clip {audio} not found")
                prepared.add(
                    domain,
                    split,
                    Path(row["path"]).stem,
                    audio_duration(audio),
                    wav_entry(out, "commonvoice", corpus, audio, linked),
                    row["client_id"][:16],
                    row["sentence"],
                )
    if domains is None:
        used = {d for d, _ in prepared.rows}
        candidates = [d for _, d in accent_rules] + ([default_domain] if default_domain else [])
        domains = [d for d in dict.fromkeys(candidates) if d in used]
    source = {
        "accent_rules": [list(r) for r in accent_rules],
        "default_domain": default_domain,
        "tsvs": dict(tsvs),
    }
    return finish(out, "commonvoice", prepared, source, domains, list(tsvs))
