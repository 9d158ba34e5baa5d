"""CGN, Corpus Gesproken Nederlands (Dutch from the Netherlands and Flanders).

Layout: ``data/audio/wav/comp-<c>/<nl|vl>/<fn>.wav`` with the orthographic transcription
``data/annot/text/ort/comp-<c>/<nl|vl>/<fn>.ort.gz``: a gzipped Praat TextGrid (long or short
text format, Latin-1), one interval tier per speaker (tier named by speaker id, e.g.
``N01001``/``V40012``). Each non-empty speaker interval becomes one utterance, cut into a 16 kHz
mono wav under ``<out_root>/audio/cgn``. CGN markers: words with ``*``-suffixes (``*v``
foreign, ``*a`` broken off, ...) keep the word; ``ggg`` (non-speech) is removed; segments with
``xxx`` (unintelligible) are left out and counted.
Domains by region (``nl`` -> ``cgn_nl``, ``vl`` -> ``cgn_vl``); speaker-disjoint splits by a
hash of the speaker id, or explicit speaker lists.
"""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from benchmarks.corpora.common import CorpusError, PreparedRows, finish, require_dir, speaker_split
from cl_ssvdo.data import StreamInfo

__all__ = ["clean_cgn_text", "parse_textgrid", "prepare_cgn"]

DEFAULT_DOMAINS = {"nl": "cgn_nl", "vl": "cgn_vl"}
_TOKENS = re.compile(
    r'"(?:[^"]|"")*"|\[\s*\d*\s*\]|<exists>|<absent>|-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?'
)
_SPEAKER_TIER = re.compile(r"^[NV]\d+$")


def _decode(raw: bytes) -> str:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def parse_textgrid(text: str) -> dict[str, list[tuple[float, float, str]]]:
    """Interval tiers of a Praat TextGrid (long or short text format): ``{name: [(start, end, text)]}``.

    Point tiers are skipped. Raises ValueError on a malformed file.
    """
    tokens = [t for t in _TOKENS.findall(text) if not t.startswith("[")]
    pos = 0

    def take() -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise ValueError("TextGrid ends early")
        pos += 1
        return tokens[pos - 1]

    def string() -> str:
        tok = take()
        if not tok.startswith('"'):
            raise ValueError(f"TextGrid: expected a string, got {tok!r}")
        return tok[1:-1].replace('""', '"')

    if string() != "ooTextFile" or string() != "TextGrid":
        raise ValueError("not a Praat TextGrid text file")
    take(), take()  # xmin, xmax
    if take() != "<exists>":
        return {}
    n_tiers = int(float(take()))
    tiers: dict[str, list[tuple[float, float, str]]] = {}
    for _ in range(n_tiers):
        kind, name = string(), string()
        take(), take()
        n = int(float(take()))
        if kind == "IntervalTier":
            tiers[name] = [(float(take()), float(take()), string()) for _ in range(n)]
        else:
            for _ in range(n):
                take(), string()
    return tiers


def clean_cgn_text(text: str) -> str | None:
    """Transcript without CGN markers; None for unintelligible (``xxx``) or empty segments."""
    words = []
    for word in text.split():
        base = re.sub(r"\*[a-z]$", "", word)
        if base.lower().strip(".,?!") in ("xxx",):
            return None
        if base.lower().strip(".,?!") == "ggg":
            continue
        words.append(base)
    return " ".join(words) or None


def prepare_cgn(
    corpus_dir: str | os.PathLike,
    out_root: str | os.PathLike,
    components: Sequence[str] = ("o",),
    regions: Mapping[str, str] = DEFAULT_DOMAINS,
    test_speakers: Sequence[str] | None = None,
    valid_speakers: Sequence[str] | None = None,
    test_fraction: float = 0.1,
    valid_fraction: float = 0.05,
    min_seconds: float = 0.5,
) -> StreamInfo:
    """Cut CGN speaker segments into utterances, manifests per region domain.

    Arguments
    ---------
    corpus_dir : the CGN folder holding ``data/`` (or ``data/`` itself).
    components : CGN components (``a``..``o``; ``o`` is read speech).
    regions : region folder -> domain name, in stream order.
    test_speakers, valid_speakers : explicit speaker lists (default: hash split by fractions).
    min_seconds : shorter segments are left out and counted.
    """
    corpus = require_dir(corpus_dir, "CGN")
    data = corpus / "data" if (corpus / "data").is_dir() else corpus
    out = Path(out_root)
    prepared = PreparedRows()
    for comp in components:
        for region, domain in regions.items():
            ort_dir = data / "annot" / "text" / "ort" / f"comp-{comp}" / region
            wav_dir = data / "audio" / "wav" / f"comp-{comp}" / region
            if not ort_dir.is_dir():
                prepared.drop(f"component {comp}/{region} absent")
                continue
            for ort in sorted(ort_dir.glob("*.ort.gz")):
                fn = ort.name.removesuffix(".ort.gz")
                wav = wav_dir / f"{fn}.wav"
                if not wav.is_file():
                    raise CorpusError(f"CGN: audio {wav} for {ort} not found")
                try:
                    tiers = parse_textgrid(_decode(gzip.decompress(ort.read_bytes())))
                except (ValueError, OSError, EOFError) as err:
                    raise CorpusError(f"CGN: cannot parse {ort}: {err}") from err
                audio, rate = sf.read(str(wav), dtype="float32", always_2d=True)
                mono = audio.mean(axis=1)
                for spk, intervals in tiers.items():
                    if not _SPEAKER_TIER.match(spk):
                        continue
                    if test_speakers is not None or valid_speakers is not None:
                        split = (
                            "test"
                            if spk in (test_speakers or ())
                            else "valid"
                            if spk in (valid_speakers or ())
                            else "train"
                        )
                    else:
                        split = speaker_split(spk, valid_fraction, test_fraction, "cgn")
                    for k, (start, end, raw_text) in enumerate(intervals):
                        if not raw_text.strip():
                            continue
                        text = clean_cgn_text(raw_text)
                        if text is None:
                            prepared.drop("unintelligible (xxx) or empty segment")
                            continue
                        if end - start < min_seconds:
                            prepared.drop(f"segment shorter than {min_seconds} s")
                            continue
                        segment = mono[int(round(start * rate)) : int(round(end * rate))]
                        utt_id = f"{fn}_{spk}_{k:04d}"
                        rel = Path("audio") / "cgn" / f"comp-{comp}" / region / f"{utt_id}.wav"
                        seconds = _write_segment(out / rel, segment, rate)
                        prepared.add(domain, split, utt_id, seconds, rel.as_posix(), spk, text)
    source = {"components": list(components), "regions": dict(regions)}
    return finish(
        out,
        "cgn",
        prepared,
        source,
        [d for d in regions.values() if any(k[0] == d for k in prepared.rows)],
    )


def _write_segment(path: Path, segment: np.ndarray, rate: int) -> float:
    """Write a segment as 16 kHz mono 16-bit wav (resampled if needed); returns its seconds."""
    if rate != 16000:
        import torch
        import torchaudio.functional as AF

        segment = AF.resample(torch.from_numpy(np.ascontiguousarray(segment)), rate, 16000).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(segment, -1.0, 1.0), 16000, subtype="PCM_16")
    return len(segment) / 16000.0
