"""Any CSV or JSONL manifest -> the stream layout.

Each record needs an audio path and a transcript; ID, speaker, duration, domain and split are
optional (defaults: a stable ID from the path, speaker ``unknown``, duration read from the
file header, ``default_domain`` and ``default_split``). Column names are configurable.
Relative audio paths are relative to the manifest's folder, which is linked into the stream as
``audio/<name>``; absolute paths stay absolute.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.corpora.common import CorpusError, PreparedRows, audio_duration, finish, link_corpus
from cl_ssvdo.data import DEFAULT_SPLITS, StreamInfo

__all__ = ["DEFAULT_COLUMNS", "prepare_generic"]

DEFAULT_COLUMNS = {
    "wav": ("wav", "path", "audio", "audio_filepath", "file"),
    "wrd": ("wrd", "text", "transcript", "sentence"),
    "ID": ("ID", "id", "utt_id"),
    "spk_id": ("spk_id", "speaker", "speaker_id", "client_id"),
    "duration": ("duration",),
    "domain": ("domain",),
    "split": ("split",),
}


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        with path.open(encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise CorpusError(f"{path}:{line_no}: invalid JSON: {err}") from err
                if not isinstance(record, dict):
                    raise CorpusError(f"{path}:{line_no}: expected a JSON object per line")
                yield line_no, record
    else:
        with path.open(newline="", encoding="utf-8") as fh:
            sample = fh.read(4096)
            fh.seek(0)
            delimiter = "\t" if sample.count("\t") > sample.count(",") else ","
            for line_no, record in enumerate(csv.DictReader(fh, delimiter=delimiter), 2):
                yield line_no, record


def _field(record: Mapping[str, Any], names: Sequence[str]) -> Any:
    for name in names:
        if name in record and record[name] not in (None, ""):
            return record[name]
    return None


def prepare_generic(
    manifest: str | os.PathLike,
    out_root: str | os.PathLike,
    default_domain: str | None = None,
    default_split: str | None = None,
    columns: Mapping[str, Sequence[str]] | None = None,
    domains: Sequence[str] | None = None,
    name: str | None = None,
) -> StreamInfo:
    """Manifests per (domain, split) from a CSV/TSV or JSONL file.

    Raises :class:`CorpusError` naming the file, line and field when a record has no audio
    path, no domain/split (and no default), or a missing audio file.
    """
    src = Path(manifest)
    if not src.is_file():
        raise CorpusError(f"generic manifest not found: {src}")
    cols = {
        **DEFAULT_COLUMNS,
        **{k: tuple([v] if isinstance(v, str) else v) for k, v in (columns or {}).items()},
    }
    out = Path(out_root)
    name = name or src.stem
    base = src.parent
    linked = link_corpus(out, name, base) is not None
    prepared = PreparedRows()
    splits: list[str] = []
    for line_no, record in _records(src):
        wav = _field(record, cols["wav"])
        if wav is None:
            raise CorpusError(f"{src}:{line_no}: no audio path (field one of {list(cols['wav'])})")
        text = _field(record, cols["wrd"])
        if text is None:
            raise CorpusError(f"{src}:{line_no}: no transcript (field one of {list(cols['wrd'])})")
        domain = _field(record, cols["domain"]) or default_domain
        split = _field(record, cols["split"]) or default_split
        if domain is None or split is None:
            missing = "domain" if domain is None else "split"
            raise CorpusError(
                f"{src}:{line_no}: no {missing} (field {list(cols[missing])}) and no default_{missing}"
            )
        audio = Path(str(wav))
        audio_abs = audio if audio.is_absolute() else base / audio
        if not audio_abs.is_file():
            raise CorpusError(f"{src}:{line_no}: audio file not found: {audio_abs}")
        if linked and not audio.is_absolute():
            entry = (Path("audio") / name / audio).as_posix()
        else:
            entry = str(audio_abs.resolve())
        duration = _field(record, cols["duration"])
        try:
            seconds = float(duration) if duration is not None else audio_duration(audio_abs)
        except ValueError as err:
            raise CorpusError(
                f"{src}:{line_no}: field 'duration' {duration!r} is not a number"
            ) from err
        utt_id = _field(record, cols["ID"]) or hashlib.sha1(str(wav).encode()).hexdigest()[:16]
        spk = _field(record, cols["spk_id"]) or "unknown"
        if split not in splits:
            splits.append(str(split))
        prepared.add(str(domain), str(split), str(utt_id), seconds, entry, str(spk), str(text))
    ordered_splits = [s for s in DEFAULT_SPLITS if s in splits] + [
        s for s in splits if s not in DEFAULT_SPLITS
    ]
    return finish(out, name, prepared, {"manifest": src.name}, domains, ordered_splits)
