"""LibriSpeech (adult read English): ``<subset>/<speaker>/<chapter>/<spk>-<chap>-<utt>.flac``.

Transcripts: ``<spk>-<chap>.trans.txt`` per chapter, lines ``<utt id> <UPPER CASE TEXT>``.
Subsets map to splits (default ``train-clean-100`` -> train, ``dev-clean`` -> valid,
``test-clean`` -> test); LibriSpeech's subsets are already speaker-disjoint.
"""

from __future__ import annotations

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

__all__ = ["DEFAULT_SUBSETS", "prepare_librispeech"]

DEFAULT_SUBSETS: dict[str, tuple[str, ...]] = {
    "train": ("train-clean-100",),
    "valid": ("dev-clean",),
    "test": ("test-clean",),
}


def prepare_librispeech(
    corpus_dir: str | os.PathLike,
    out_root: str | os.PathLike,
    subsets: Mapping[str, Sequence[str]] = DEFAULT_SUBSETS,
    domain: str = "adult",
) -> StreamInfo:
    """Manifests ``<domain>_<split>.csv`` from a local LibriSpeech copy (the folder holding the subsets).

    Raises :class:`CorpusError` naming a missing subset folder, a transcript line without a
    matching audio file, or an audio file without a transcript line.
    """
    corpus = require_dir(corpus_dir, "LibriSpeech")
    if (corpus / "LibriSpeech").is_dir():
        corpus = corpus / "LibriSpeech"
    out = Path(out_root)
    linked = link_corpus(out, "librispeech", corpus) is not None
    prepared = PreparedRows()
    for split, names in subsets.items():
        for subset in names:
            subset_dir = require_dir(corpus / subset, f"LibriSpeech subset {subset!r}")
            for trans in sorted(subset_dir.glob("*/*/*.trans.txt")):
                audio_ids = {p.stem for p in trans.parent.glob("*.flac")}
                for line_no, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), 1):
                    if not line.strip():
                        continue
                    utt_id, _, text = line.strip().partition(" ")
                    audio = trans.parent / f"{utt_id}.flac"
                    if utt_id not in audio_ids:
                        raise CorpusError(
                            f"{trans}:{line_no}: no audio file {audio.name} for {utt_id!r}"
                        )
                    audio_ids.discard(utt_id)
                    prepared.add(
                        domain,
                        split,
                        utt_id,
                        audio_duration(audio),
                        wav_entry(out, "librispeech", corpus, audio, linked),
                        utt_id.split("-")[0],
                        text,
                    )
                if audio_ids:
                    raise CorpusError(f"{trans}: no transcript for {sorted(audio_ids)[:5]}")
    source = {"subsets": {k: list(v) for k, v in subsets.items()}}
    return finish(out, "librispeech", prepared, source, [domain], splits=list(subsets))
