"""Check a manifest before training: audio, transcripts and durations, with an explicit policy.

Checks per row (``field`` named in every error):

- ``wav``: the file is missing, unreadable or corrupt; it has no audio frames (a header
  only); it is not mono or its sample rate is not ``sample_rate`` (when given), unless
  ``convert`` allows the conversion (then counted in ``report.converted``); the clip is silent
  (RMS below ``silence_dbfs``), shorter than ``min_duration`` or longer than ``max_duration``
  seconds;
- ``wrd``: the transcript is empty after normalisation, has characters outside ``charset``, or
  is too long for its audio (more than ``max_chars_per_second`` characters per second, clips
  under 2 s counted as 2 s: the transcript of another clip, or thousands of words on 2 s);
- ``duration``: the manifest's duration differs from the audio's by more than
  ``max(duration_tolerance, 1 %)``.

Policy ``"error"`` (default) raises :class:`~cl_ssvdo.data.manifest.ManifestError` at the first bad
row, naming the manifest, row ID and field. Policy ``"skip"`` checks every row, writes the bad
IDs with their field and reason to ``<manifest>.skipped.tsv`` in ``skipped_dir`` (default: next
to the manifest; a folder that cannot be written gets a warning), and returns
a report whose ``skipped`` lists them: rows are never dropped silently.
Structural problems (missing columns, duplicate IDs) always raise.

Depends on numpy, soundfile and ``cl_ssvdo.data`` only.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from cl_ssvdo.data import (
    ManifestError,
    ManifestRow,
    StreamInfo,
    default_root,
    normalize_transcript,
    read_manifest,
    resolve_wav,
)

__all__ = [
    "SkippedRow",
    "ValidationReport",
    "skipped_ids_path",
    "validate_manifest",
    "validate_stream",
]

POLICIES = ("error", "skip")


@dataclass(frozen=True)
class SkippedRow:
    row_id: str
    field: str
    reason: str


@dataclass
class ValidationReport:
    """Outcome for one manifest: ``n_rows`` checked, ``skipped`` rows (policy ``skip``), hours kept."""

    manifest: Path
    n_rows: int
    skipped: list[SkippedRow] = field(default_factory=list)
    hours_kept: float = 0.0
    skipped_file: Path | None = None
    converted: int = 0  # rows kept that need resampling or down-mixing (``convert=True``)

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)

    @property
    def n_kept(self) -> int:
        return self.n_rows - self.n_skipped

    @property
    def skipped_ids(self) -> list[str]:
        return [s.row_id for s in self.skipped]

    @property
    def ok(self) -> bool:
        return not self.skipped

    def summary(self) -> str:
        text = (
            f"{self.manifest.name}: {self.n_kept}/{self.n_rows} rows kept ({self.hours_kept:.3f} h)"
        )
        if self.skipped:
            reasons: dict[str, int] = {}
            for s in self.skipped:
                key = f"{s.field}: {s.reason.split(' (')[0].split(':')[0]}"
                reasons[key] = reasons.get(key, 0) + 1
            text += f", {self.n_skipped} skipped -> {self.skipped_file}: " + "; ".join(
                f"{n} x {k}" for k, n in sorted(reasons.items())
            )
        return text


def skipped_ids_path(manifest: str | os.PathLike) -> Path:
    """``<manifest>.skipped.tsv`` (columns ID, field, reason)."""
    manifest = Path(manifest)
    return manifest.with_name(manifest.stem + ".skipped.tsv")


def _check_row(
    row: ManifestRow,
    root: Path,
    allowed: frozenset[str] | None,
    min_duration: float,
    silence_dbfs: float,
    duration_tolerance: float,
    sample_rate: int | None = None,
    max_duration: float | None = None,
    max_chars_per_second: float | None = None,
    convert: bool = False,
) -> tuple[str, str] | None:
    """``(field, reason)`` of the first problem in a row, or None."""
    text = normalize_transcript(row.wrd)
    if not text:
        return "wrd", f"empty transcript (raw: {row.wrd!r})"
    if allowed is not None:
        bad = sorted({c for c in text if c != " " and c not in allowed})
        if bad:
            return "wrd", f"characters outside the charset: {''.join(bad)!r} in {text!r}"
    path = resolve_wav(row.wav, root)
    if not path.is_file():
        return "wav", f"audio file not found: {path}"
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # libsndfile raises several types for corrupt files
        return "wav", f"unreadable or corrupt audio {path}: {err}"
    if audio.shape[0] == 0:
        return "wav", f"no audio frames (a header only): {path}"
    if audio.shape[1] != 1 and not convert:
        return "wav", f"{audio.shape[1]} channels, expected mono (or allow conversion): {path}"
    if sample_rate is not None and rate != sample_rate and not convert:
        return "wav", (
            f"sample rate {rate} Hz, the stream's is {sample_rate} Hz (or allow conversion): {path}"
        )
    actual = audio.shape[0] / float(rate)
    if max_duration is not None and actual > max_duration:
        return "wav", f"too long: {actual:.1f} s > {max_duration} s ({path})"
    if max_chars_per_second is not None and len(text) > max_chars_per_second * max(actual, 2.0):
        return "wrd", (
            f"transcript too long for its audio: {len(text)} characters in {actual:.2f} s "
            f"(more than {max_chars_per_second:g} per second)"
        )
    if actual < min_duration:
        return "wav", f"too short: {actual:.3f} s < {min_duration} s ({path})"
    rms = float(np.sqrt(np.mean(np.square(audio.mean(axis=1), dtype=np.float64))))
    level = 20.0 * math.log10(rms) if rms > 0 else -math.inf
    if level < silence_dbfs:
        return "wav", f"silent: RMS {level:.1f} dBFS < {silence_dbfs} dBFS ({path})"
    tolerance = max(duration_tolerance, 0.01 * actual)
    if abs(actual - row.duration) > tolerance:
        return "duration", f"duration mismatch: manifest {row.duration:.3f} s, audio {actual:.3f} s"
    return None


def _needs_conversion(path: Path, sample_rate: int | None) -> bool:
    info = sf.info(str(path))
    return info.channels != 1 or (sample_rate is not None and info.samplerate != sample_rate)


def validate_manifest(
    path: str | os.PathLike,
    charset: Iterable[str] | str | None = None,
    policy: str = "error",
    root: str | os.PathLike | None = None,
    min_duration: float = 0.2,
    silence_dbfs: float = -60.0,
    duration_tolerance: float = 0.05,
    sample_rate: int | None = None,
    max_duration: float | None = 60.0,
    max_chars_per_second: float | None = 40.0,
    skipped_dir: str | os.PathLike | None = None,
    convert: bool = False,
) -> ValidationReport:
    """Validate every row of a manifest (see the module docstring for the checks).

    Arguments
    ---------
    path : the manifest CSV.
    charset : characters a transcript may contain (e.g. a tokenizer's ``charset``); the space
        is always allowed. None: only the normalisation check.
    policy : "error" (raise on the first bad row) or "skip" (count, list, keep going).
    root : folder ``wav`` paths are relative to (default: the stream root).
    sample_rate : the rate every clip must have (None: any).
    max_duration, max_chars_per_second : upper limits (None: no limit).
    convert : allow clips that need resampling to ``sample_rate`` or down-mixing to mono (the
        dataset converts them on load); they are counted in ``report.converted``.
    skipped_dir : where ``<manifest stem>.skipped.tsv`` goes with policy ``skip`` (e.g. the
        run folder; default: next to the manifest). A folder that cannot be written gets a
        warning, never an error: the report still lists the rows.

    Returns
    -------
    ValidationReport
    """
    if policy not in POLICIES:
        raise ValueError(f"validate_manifest: policy must be one of {POLICIES}, got {policy!r}")
    path = Path(path)
    rows = read_manifest(path)
    root_dir = Path(root) if root is not None else default_root(path)
    allowed = frozenset(charset) if charset is not None else None
    report = ValidationReport(manifest=path, n_rows=len(rows))
    kept_seconds = 0.0
    for row in rows:
        problem = _check_row(
            row,
            root_dir,
            allowed,
            min_duration,
            silence_dbfs,
            duration_tolerance,
            sample_rate,
            max_duration,
            max_chars_per_second,
            convert,
        )
        if problem is None:
            kept_seconds += row.duration
            if convert and _needs_conversion(resolve_wav(row.wav, root_dir), sample_rate):
                report.converted += 1
            continue
        fld, reason = problem
        if policy == "error":
            raise ManifestError(path, reason, row_id=row.ID, field=fld)
        report.skipped.append(SkippedRow(row.ID, fld, reason))
    report.hours_kept = kept_seconds / 3600.0
    listing = skipped_ids_path(path)
    if skipped_dir is not None:
        listing = Path(skipped_dir) / listing.name
    try:
        if report.skipped:
            lines = ["ID\tfield\treason"] + [
                f"{s.row_id}\t{s.field}\t{s.reason.replace(chr(9), ' ').replace(chr(10), ' ')}"
                for s in report.skipped
            ]
            listing.parent.mkdir(parents=True, exist_ok=True)
            listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
            report.skipped_file = listing
        elif listing.exists():
            listing.unlink()  # stale listing from an earlier run of a since-fixed manifest
    except OSError as exc:  # e.g. a read-only stream folder: the report still has the rows
        warnings.warn(
            f"{path}: cannot write the skipped-rows listing {listing} ({exc}); "
            f"{len(report.skipped)} rows skipped",
            RuntimeWarning,
            stacklevel=2,
        )
    return report


def validate_stream(
    info,
    charset: Iterable[str] | str | None = None,
    policy: str = "error",
    splits: Iterable[str] | None = None,
    **kwargs,
) -> dict[str, ValidationReport]:
    """Validate every manifest of a stream; returns ``{"<domain>_<split>": report}``.

    Clips must have the stream's sample rate unless the stream resamples (``sample_rate`` and
    ``convert`` default to ``info.sample_rate`` and ``info.resample``). The reports'
    ``skipped_ids`` can be passed to :func:`benchmarks.stream.make_benchmark` as
    ``exclude_ids``.
    """
    if not isinstance(info, StreamInfo):
        info = StreamInfo.load(info)
    kwargs.setdefault("sample_rate", info.sample_rate)
    kwargs.setdefault("convert", info.resample)
    reports: dict[str, ValidationReport] = {}
    for domain in info.domains:
        for split in splits or info.splits:
            reports[f"{domain}_{split}"] = validate_manifest(
                info.manifest(domain, split),
                charset=charset,
                policy=policy,
                root=info.root,
                **kwargs,
            )
    return reports
