"""Shared steps of the corpus preparers: linking the corpus, rows, speaker splits, stream.json.

A preparer never copies or converts audio it can read in place: it links the corpus folder
into the stream as ``<out_root>/audio/<name>`` (a symlink), so manifest ``wav`` paths stay
relative to the stream root, as the contract asks. Where links are unavailable, the absolute
path is written instead (``ManifestDataset`` accepts both). Corpora whose utterances are
segments of long recordings (CGN) are cut into 16 kHz wavs under ``<out_root>/audio``.

Every row a preparer leaves out is counted by reason in ``stream.json``
(``config.sources[i].dropped``): nothing is dropped silently.

Depends on the standard library, soundfile and ``benchmarks``.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import soundfile as sf

from benchmarks.stream import write_stream_json
from cl_ssvdo.data import (
    DEFAULT_SPLITS,
    ManifestRow,
    StreamInfo,
    manifest_path,
    normalize_transcript,
    write_manifest,
)

__all__ = [
    "CorpusError",
    "PreparedRows",
    "audio_duration",
    "finish",
    "link_corpus",
    "speaker_split",
]


class CorpusError(ValueError):
    """A corpus folder or file is missing or malformed; the message names the path."""


def require_dir(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise CorpusError(f"{what}: folder not found: {path}")
    return path


def link_corpus(out_root: Path, name: str, corpus_dir: Path) -> Path | None:
    """Link ``corpus_dir`` as ``<out_root>/audio/<name>``; None where links are unavailable."""
    link = out_root / "audio" / name
    link.parent.mkdir(parents=True, exist_ok=True)
    target = corpus_dir.resolve()
    if link.is_symlink():
        if link.resolve() == target:
            return link
        raise CorpusError(f"{link} already links to {link.resolve()}, not {target}")
    if link.exists():
        raise CorpusError(f"{link} exists and is not a link to the corpus {target}")
    try:
        link.symlink_to(target, target_is_directory=True)
    except OSError:
        return None
    return link


def wav_entry(out_root: Path, name: str, corpus_dir: Path, audio: Path, linked: bool) -> str:
    """Manifest ``wav`` value for a file inside a linked corpus (relative), else absolute."""
    if linked:
        rel = audio.resolve().relative_to(corpus_dir.resolve())
        return (Path("audio") / name / rel).as_posix()
    return str(audio.resolve())


def audio_duration(path: str | os.PathLike) -> float:
    """Seconds of audio from the file header (no decoding for wav/flac)."""
    info = sf.info(str(path))
    if info.samplerate <= 0:
        raise CorpusError(f"{path}: invalid sample rate")
    return info.frames / float(info.samplerate)


def speaker_split(speaker: str, valid_fraction: float, test_fraction: float, salt: str = "") -> str:
    """Deterministic speaker-disjoint split: a hash of the speaker id picks train/valid/test."""
    h = int.from_bytes(hashlib.sha256(f"{salt}|{speaker}".encode()).digest()[:8], "big") / 2**64
    if h < test_fraction:
        return "test"
    if h < test_fraction + valid_fraction:
        return "valid"
    return "train"


@dataclass
class PreparedRows:
    """Rows per (domain, split), and counts of what was left out and why."""

    rows: dict[tuple[str, str], list[ManifestRow]] = field(default_factory=dict)
    dropped: Counter = field(default_factory=Counter)

    def add(
        self,
        domain: str,
        split: str,
        utt_id: str,
        duration: float,
        wav: str,
        spk_id: str,
        text: str,
    ) -> bool:
        """Normalise ``text`` and add the row; an empty transcript is counted, not added."""
        wrd = normalize_transcript(text)
        if not wrd:
            self.dropped["empty transcript after normalisation"] += 1
            return False
        self.rows.setdefault((domain, split), []).append(
            ManifestRow(utt_id, duration, wav, spk_id, wrd, domain)
        )
        return True

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] += n


def finish(
    out_root: Path,
    name: str,
    prepared: PreparedRows,
    source: Mapping[str, Any],
    domains: Sequence[str] | None = None,
    splits: Iterable[str] = DEFAULT_SPLITS,
) -> StreamInfo:
    """Write one manifest per (domain, split) (empty ones too) and merge ``stream.json``."""
    splits = list(splits)
    found = list(dict.fromkeys(d for d, _ in prepared.rows))
    order = list(domains) if domains is not None else found
    unknown = [d for d in found if d not in order]
    if unknown:
        raise CorpusError(f"{name}: rows for domains {unknown} not in the requested order {order}")
    if not found:
        raise CorpusError(f"{name}: no usable utterances found (dropped: {dict(prepared.dropped)})")
    for domain in order:
        for split in splits:
            rows = sorted(prepared.rows.get((domain, split), []), key=lambda r: r.ID)
            write_manifest(manifest_path(out_root, domain, split), rows)
    config = {
        "corpus": name,
        **dict(source),
        "domains": order,
        "utterances": {f"{d}_{s}": len(v) for (d, s), v in sorted(prepared.rows.items())},
        "dropped": dict(sorted(prepared.dropped.items())),
    }
    # Corpus audio is linked in place at its own rates: the stream asks readers to resample.
    return write_stream_json(out_root, name, order, splits, config, merge=True, resample=True)
