"""MyST, My Science Tutor children's speech (LDC2021S05).

Layout: ``myst_child_conv_speech/data/{train,development,test}/<student>/<session>/<utt>.flac``
with a ``<utt>.trn`` transcript beside each audio file; the student id is the speaker.
Transcripts carry annotations: ``<noise>``-style tags and ``[...]`` notes are removed,
``(*)``-style markers are removed; utterances marked unintelligible (``(())``) or without a
transcript are left out and counted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from benchmarks.corpora.common import (
    PreparedRows,
    audio_duration,
    finish,
    link_corpus,
    require_dir,
    wav_entry,
)
from cl_ssvdo.data import StreamInfo

__all__ = ["DEFAULT_PARTITIONS", "clean_myst_transcript", "prepare_myst"]

DEFAULT_PARTITIONS = {"train": "train", "valid": "development", "test": "test"}

_TAGS = re.compile(r"<[^>]*>|\[[^\]]*\]|\(\*\)|\(\s*\)")
_UNINTELLIGIBLE = re.compile(r"\(\(.*?\)\)")


def clean_myst_transcript(text: str) -> str | None:
    """Transcript without annotation markers; None when part of it is unintelligible."""
    if _UNINTELLIGIBLE.search(text):
        return None
    return _TAGS.sub(" ", text)


def _data_dir(corpus: Path) -> Path:
    for candidate in (corpus / "myst_child_conv_speech" / "data", corpus / "data", corpus):
        if (candidate / "train").is_dir() or (candidate / "test").is_dir():
            return candidate
    return require_dir(corpus / "myst_child_conv_speech" / "data", "MyST data folder")


def prepare_myst(
    corpus_dir: str | os.PathLike,
    out_root: str | os.PathLike,
    partitions: Mapping[str, str] = DEFAULT_PARTITIONS,
    domain: str = "child",
) -> StreamInfo:
    """Manifests ``<domain>_<split>.csv`` from a local MyST copy (MyST's own partitions)."""
    corpus = require_dir(corpus_dir, "MyST")
    data = _data_dir(corpus)
    out = Path(out_root)
    linked = link_corpus(out, "myst", data) is not None
    prepared = PreparedRows()
    for split, partition in partitions.items():
        part_dir = require_dir(data / partition, f"MyST partition {partition!r}")
        for audio in sorted(part_dir.glob("*/*/*.flac")) + sorted(part_dir.glob("*/*/*.wav")):
            trn = audio.with_suffix(".trn")
            if not trn.is_file():
                prepared.drop("no .trn transcript")
                continue
            text = clean_myst_transcript(trn.read_text(encoding="utf-8", errors="replace"))
            if text is None:
                prepared.drop("unintelligible (( )) in transcript")
                continue
            student = audio.parent.parent.name
            prepared.add(
                domain,
                split,
                audio.stem,
                audio_duration(audio),
                wav_entry(out, "myst", data, audio, linked),
                student,
                text,
            )
    return finish(
        out, "myst", prepared, {"partitions": dict(partitions)}, [domain], list(partitions)
    )
