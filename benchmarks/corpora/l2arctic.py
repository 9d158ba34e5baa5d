"""L2-ARCTIC (non-native English, 24 speakers, six first languages).

Layout: ``<SPEAKER>/wav/arctic_a0001.wav`` (44.1 kHz; the dataset resamples) with
``<SPEAKER>/transcript/arctic_a0001.txt``. Splits are speaker-disjoint for test (default: one
speaker per first language); valid takes a deterministic 5 % of the other speakers'
utterances. All speakers read the same ARCTIC prompts, so test sentences also occur in train.
Domains: one ``accent_l2`` domain, or one per first language (``accent_arabic``, ...).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from benchmarks.corpora.common import (
    PreparedRows,
    audio_duration,
    finish,
    link_corpus,
    require_dir,
    speaker_split,
    wav_entry,
)
from cl_ssvdo.data import StreamInfo

__all__ = ["DEFAULT_TEST_SPEAKERS", "SPEAKER_L1", "prepare_l2arctic"]

SPEAKER_L1 = {
    **dict.fromkeys(("ABA", "SKA", "YBAA", "ZHAA"), "arabic"),
    **dict.fromkeys(("BWC", "LXC", "NCC", "TXHC"), "mandarin"),
    **dict.fromkeys(("ASI", "RRBI", "SVBI", "TNI"), "hindi"),
    **dict.fromkeys(("HJK", "HKK", "YDCK", "YKWK"), "korean"),
    **dict.fromkeys(("EBVS", "ERMS", "MBMPS", "NJS"), "spanish"),
    **dict.fromkeys(("HQTV", "PNV", "THV", "TLV"), "vietnamese"),
}
DEFAULT_TEST_SPEAKERS = ("ZHAA", "TXHC", "TNI", "YKWK", "NJS", "TLV")


def prepare_l2arctic(
    corpus_dir: str | os.PathLike,
    out_root: str | os.PathLike,
    test_speakers: Sequence[str] = DEFAULT_TEST_SPEAKERS,
    valid_fraction: float = 0.05,
    per_l1: bool = False,
    domain: str = "accent_l2",
) -> StreamInfo:
    """Manifests from a local L2-ARCTIC copy (the folder holding the speaker folders)."""
    corpus = require_dir(corpus_dir, "L2-ARCTIC")
    out = Path(out_root)
    linked = link_corpus(out, "l2arctic", corpus) is not None
    prepared = PreparedRows()
    speakers = sorted(p.name for p in corpus.iterdir() if (p / "wav").is_dir())
    if not speakers:
        require_dir(corpus / "ABA" / "wav", "L2-ARCTIC speaker folder (e.g. ABA/wav)")
    test = set(test_speakers)
    for spk in speakers:
        spk_domain = f"accent_{SPEAKER_L1.get(spk, 'other')}" if per_l1 else domain
        for audio in sorted((corpus / spk / "wav").glob("*.wav")):
            trn = corpus / spk / "transcript" / f"{audio.stem}.txt"
            if not trn.is_file():
                prepared.drop("no transcript file")
                continue
            utt_id = f"{spk}_{audio.stem}"
            split = (
                "test" if spk in test else speaker_split(utt_id, valid_fraction, 0.0, "l2arctic")
            )
            prepared.add(
                spk_domain,
                split,
                utt_id,
                audio_duration(audio),
                wav_entry(out, "l2arctic", corpus, audio, linked),
                spk,
                trn.read_text(encoding="utf-8", errors="replace"),
            )
    domains = sorted({d for d, _ in prepared.rows}) if per_l1 else [domain]
    source = {"test_speakers": sorted(test), "valid_fraction": valid_fraction, "per_l1": per_l1}
    return finish(out, "l2arctic", prepared, source, domains)
