"""Minimal data plumbing for pretraining and evaluation, duck-typed so ``cl_ssvdo`` stays free
of ``benchmarks``: any map-style dataset whose items are ``(wav [T], words, utt_id)`` works
(e.g. ``benchmarks.dataset.ManifestDataset``), and so does any iterable of ready batches
``(wavs [B, T], wav_lens [B], words, ids)`` (e.g. a DataLoader).

:class:`ManifestSpeech` reads the manifest CSV format of ``docs/architecture.md`` directly
(columns ``ID,duration,wav,spk_id,wrd,domain``, ``wav`` relative to the stream root) for the
command-line entry points.

Must not depend on avalanche, mlflow or benchmarks.
"""

from __future__ import annotations

import csv
import random
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader

Batch = tuple[torch.Tensor, torch.Tensor, list[str], list[str]]

REQUIRED_COLUMNS = ("ID", "duration", "wav", "wrd")

_NOT_CHARSET = re.compile(r"[^a-z' ]+")


def normalize_text(text: str) -> str:
    """Lower-case, characters outside a-z/apostrophe/space become spaces, single spaces.

    The identity on transcripts already normalised by ``benchmarks.text.normalize_transcript``.

    >>> normalize_text("  Turn OFF the light, please! ")
    'turn off the light please'
    """
    return " ".join(_NOT_CHARSET.sub(" ", text.lower()).split())


def pad_batch(items: Sequence[Sequence[Any]]) -> Batch:
    """Pads ``(wav [T], words, utt_id, ...)`` items into ``(wavs [B, T_max], wav_lens [B]
    relative, words, ids)``.

    Example
    -------
    >>> wavs, lens, words, ids = pad_batch([(torch.ones(4), "a", "u1"), (torch.ones(2), "b", "u2")])
    >>> wavs.shape, lens.tolist(), words, ids
    (torch.Size([2, 4]), [1.0, 0.5], ['a', 'b'], ['u1', 'u2'])
    """
    if not items:
        raise ValueError("pad_batch: empty batch")
    wavs = [torch.as_tensor(item[0], dtype=torch.float32).reshape(-1) for item in items]
    lengths = torch.tensor([w.numel() for w in wavs], dtype=torch.float32)
    t_max = max(int(lengths.max()), 1)
    padded = torch.zeros(len(wavs), t_max)
    for i, w in enumerate(wavs):
        padded[i, : w.numel()] = w
    return padded, lengths / t_max, [str(it[1]) for it in items], [str(it[2]) for it in items]


def is_item_dataset(data: Any) -> bool:
    """True for a map-style dataset of single utterances (not an iterable of batches)."""
    return (
        not isinstance(data, DataLoader)
        and hasattr(data, "__getitem__")
        and hasattr(data, "__len__")
    )


def durations_of(data: Any, sample_rate: int = 16000) -> list[float]:
    """Per-item durations (s): ``data.durations`` when present, else measured once by loading."""
    durations = getattr(data, "durations", None)
    if durations is not None:
        durations = [float(d) for d in durations]
        if len(durations) != len(data):
            raise ValueError(
                f"dataset.durations has {len(durations)} entries for {len(data)} items"
            )
        return durations
    return [torch.as_tensor(data[i][0]).numel() / sample_rate for i in range(len(data))]


def sorted_batches(
    durations: Sequence[float], batch_size: int, shuffle: bool = True, seed: int = 0
) -> list[list[int]]:
    """Indices grouped into batches of similar duration; batch order shuffled with ``seed``.

    Example
    -------
    >>> sorted_batches([3.0, 1.0, 2.0, 4.0], batch_size=2, shuffle=False)
    [[1, 2], [0, 3]]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(durations)), key=lambda i: (durations[i], i))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if shuffle:
        random.Random(seed).shuffle(batches)
    return batches


def iterate_batches(
    data: Any,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    skip: int = 0,
    durations: Sequence[float] | None = None,
    num_workers: int = 0,
) -> Iterator[Batch]:
    """Batches of ``data`` (an item dataset or an iterable of batches), skipping the first ``skip``.

    Item datasets are batched by duration (:func:`sorted_batches`) with the dataset's own
    ``collate_fn`` when it has one, else :func:`pad_batch`; iterables of batches are used as
    they are.
    """
    if is_item_dataset(data):
        if durations is None:
            durations = durations_of(data)
        batches = sorted_batches(durations, batch_size, shuffle=shuffle, seed=seed)[skip:]
        if not batches:
            return iter(())
        collate = getattr(data, "collate_fn", None) or pad_batch
        loader = DataLoader(
            data, batch_sampler=batches, collate_fn=collate, num_workers=num_workers
        )
        return (tuple(b) for b in loader)  # type: ignore[misc]
    return (tuple(b) for b in islice(iter(data), skip, None))  # type: ignore[misc]


def num_batches(data: Any, batch_size: int) -> int | None:
    """How many batches :func:`iterate_batches` yields per pass (None if unknown)."""
    if is_item_dataset(data):
        return (len(data) + batch_size - 1) // batch_size
    try:
        return len(data)
    except TypeError:
        return None


@dataclass(frozen=True)
class Utterance:
    """One manifest row (``duration`` in seconds, ``wav`` as a resolved path)."""

    ID: str
    duration: float
    wav: Path
    spk_id: str
    wrd: str
    domain: str


class ManifestSpeech(torch.utils.data.Dataset):
    """Map-style dataset over a manifest CSV: item ``(wav [T], words, utt_id)``.

    Arguments
    ---------
    manifest_csv : str or Path
        CSV with columns ``ID,duration,wav,wrd`` (+ optional ``spk_id``, ``domain``).
    root : str or Path, optional
        Folder ``wav`` paths are relative to; default: the stream root (the manifest's
        grand-parent when it lives in ``manifests/``, else its folder).
    sample_rate : int
        Required file sampling rate (files at other rates raise; resample when generating).
    """

    def __init__(
        self, manifest_csv: str | Path, root: str | Path | None = None, sample_rate: int = 16000
    ) -> None:
        self.manifest = Path(manifest_csv)
        if not self.manifest.is_file():
            raise FileNotFoundError(f"manifest not found: {self.manifest}")
        if root is None:
            parent = self.manifest.resolve().parent
            root = parent.parent if parent.name == "manifests" else parent
        self.root = Path(root)
        self.sample_rate = sample_rate
        self.rows = self._read()

    def _read(self) -> list[Utterance]:
        with self.manifest.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"manifest {self.manifest}: missing columns {missing}")
            rows = []
            for line, rec in enumerate(reader, start=2):
                try:
                    duration = float(rec["duration"])
                except ValueError:
                    raise ValueError(
                        f"manifest {self.manifest} line {line}: field 'duration' is not a number: "
                        f"{rec['duration']!r}"
                    ) from None
                wav = Path(rec["wav"].replace("$data_root", str(self.root)))
                rows.append(
                    Utterance(
                        ID=rec["ID"],
                        duration=duration,
                        wav=wav if wav.is_absolute() else self.root / wav,
                        spk_id=rec.get("spk_id") or "",
                        wrd=rec["wrd"],
                        domain=rec.get("domain") or "",
                    )
                )
        return rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str, str]:
        row = self.rows[index]
        try:
            data, rate = sf.read(str(row.wav), dtype="float32", always_2d=True)
        except Exception as err:
            raise ValueError(
                f"manifest {self.manifest}: row {row.ID!r}: cannot read wav {row.wav}: {err}"
            ) from err
        if rate != self.sample_rate:
            raise ValueError(
                f"manifest {self.manifest}: row {row.ID!r}: {row.wav} is {rate} Hz, "
                f"expected {self.sample_rate}"
            )
        wav = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
        return wav, normalize_text(row.wrd), row.ID

    @property
    def ids(self) -> list[str]:
        """Utterance IDs, in item order."""
        return [r.ID for r in self.rows]

    @property
    def durations(self) -> list[float]:
        """Durations from the manifest, seconds."""
        return [r.duration for r in self.rows]

    @property
    def speakers(self) -> list[str]:
        """``spk_id`` per item."""
        return [r.spk_id for r in self.rows]

    @property
    def domains(self) -> list[str]:
        """``domain`` per item."""
        return [r.domain for r in self.rows]


def concat_manifests(
    manifests: Iterable[str | Path], **kwargs: Any
) -> torch.utils.data.ConcatDataset:
    """Several manifests as one dataset that keeps ``ids``/``durations``/``speakers``/``domains``."""
    parts = [ManifestSpeech(m, **kwargs) for m in manifests]
    if not parts:
        raise ValueError("concat_manifests: no manifests given")
    data = torch.utils.data.ConcatDataset(parts)
    data.ids = [i for p in parts for i in p.ids]  # type: ignore[attr-defined]
    data.durations = [d for p in parts for d in p.durations]  # type: ignore[attr-defined]
    data.speakers = [s for p in parts for s in p.speakers]  # type: ignore[attr-defined]
    data.domains = [d for p in parts for d in p.domains]  # type: ignore[attr-defined]
    return data
