"""Reading and writing SpeechBrain-style CSV manifests (``ID,duration,wav,spk_id,wrd,domain``).

Depends on the standard library only. ``wav`` is relative to the stream root (absolute paths are
accepted too); ``$data_root`` / ``{data_root}`` placeholders, as in SpeechBrain recipes, are
replaced by the root.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> path = write_manifest(folder / "manifests" / "adult_test.csv",
...                       [ManifestRow("u1", 1.5, "audio/u1.wav", "spk", "hello there", "adult")])
>>> rows = read_manifest(path)
>>> rows[0].wrd, rows[0].duration, resolve_wav(rows[0].wav, default_root(path)) == folder.resolve() / "audio/u1.wav"
('hello there', 1.5, True)
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MANIFEST_COLUMNS",
    "ManifestError",
    "ManifestRow",
    "default_root",
    "read_manifest",
    "resolve_wav",
    "write_manifest",
]

MANIFEST_COLUMNS = ("ID", "duration", "wav", "spk_id", "wrd", "domain")
_REQUIRED = ("ID", "duration", "wav", "wrd")


class ManifestError(ValueError):
    """A manifest or one of its rows is unusable.

    Attributes ``path`` (the manifest), ``row_id`` (or None), ``field`` (or None) and ``reason``
    say what is wrong where.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        reason: str,
        row_id: str | None = None,
        field: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.row_id = row_id
        self.field = field
        self.reason = reason
        where = str(self.path)
        if row_id is not None:
            where += f": row ID {row_id!r}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class ManifestRow:
    """One manifest row, with ``duration`` in seconds."""

    ID: str
    duration: float
    wav: str
    spk_id: str
    wrd: str
    domain: str

    def as_csv(self) -> dict[str, str]:
        """The row as CSV fields (``duration`` with 4 decimals).

        >>> ManifestRow("u1", 1.23456, "a.wav", "s", "hi", "adult").as_csv()["duration"]
        '1.2346'
        """
        return {
            "ID": self.ID,
            "duration": f"{self.duration:.4f}",
            "wav": self.wav,
            "spk_id": self.spk_id,
            "wrd": self.wrd,
            "domain": self.domain,
        }


def default_root(manifest_csv: str | os.PathLike) -> Path:
    """The stream root a manifest's ``wav`` paths are relative to.

    ``<root>/manifests/<name>.csv`` -> ``<root>``; a manifest anywhere else -> its own folder.
    """
    parent = Path(manifest_csv).resolve().parent
    return parent.parent if parent.name == "manifests" else parent


def resolve_wav(wav: str, root: str | os.PathLike) -> Path:
    """Absolute path of a manifest ``wav`` entry (placeholders replaced, relative to ``root``).

    >>> resolve_wav("$data_root/audio/a.wav", "/data/s").as_posix()
    '/data/s/audio/a.wav'
    """
    root = Path(root)
    for placeholder in ("$data_root", "{data_root}"):
        if wav.startswith(placeholder):
            return root / wav[len(placeholder) :].lstrip("/\\")
    path = Path(wav)
    return path if path.is_absolute() else root / path


def read_manifest(path: str | os.PathLike) -> list[ManifestRow]:
    """Read a manifest; raises :class:`ManifestError` naming the file, row and field on bad input.

    UTF-8 only (a byte-order mark is fine); another encoding is a :class:`ManifestError` naming
    the line. ``spk_id`` and ``domain`` may be missing (they default to ``""``); ``ID``, ``duration``,
    ``wav`` and ``wrd`` are required. Row checks here are syntactic only (see
    ``benchmarks.validate`` for audio and transcript checks).
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(path, "manifest file not found")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")  # a UTF-8 byte-order mark is accepted and dropped
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ManifestError(
            path,
            f"not UTF-8: byte 0x{data[exc.start]:02x} on line {line} (e.g. a Latin-1 file); "
            "re-save it as UTF-8",
        ) from None
    with io.StringIO(text, newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in _REQUIRED if c not in header]
        if missing:
            raise ManifestError(
                path, f"missing column(s) {missing} (header: {header})", field=missing[0]
            )
        rows: list[ManifestRow] = []
        seen: set[str] = set()
        for line_no, raw in enumerate(reader, start=2):
            utt_id = (raw.get("ID") or "").strip()
            if not utt_id:
                raise ManifestError(path, f"empty ID on line {line_no}", field="ID")
            if utt_id in seen:
                raise ManifestError(path, "duplicate ID", row_id=utt_id, field="ID")
            seen.add(utt_id)
            try:
                duration = float(raw.get("duration") or "nan")
            except ValueError:
                duration = float("nan")
            if not duration == duration:  # NaN: missing or unparsable
                raise ManifestError(
                    path, f"duration {raw.get('duration')!r} is not a number", utt_id, "duration"
                )
            wav = (raw.get("wav") or "").strip()
            if not wav:
                raise ManifestError(path, "empty wav path", utt_id, "wav")
            rows.append(
                ManifestRow(
                    ID=utt_id,
                    duration=duration,
                    wav=wav,
                    spk_id=(raw.get("spk_id") or "").strip(),
                    wrd=raw.get("wrd") or "",
                    domain=(raw.get("domain") or "").strip(),
                )
            )
    return rows


def write_manifest(path: str | os.PathLike, rows: Iterable[ManifestRow]) -> Path:
    """Write rows atomically (temporary file + rename) in the column order of the contract."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(row.as_csv())
    os.replace(tmp, path)
    return path
