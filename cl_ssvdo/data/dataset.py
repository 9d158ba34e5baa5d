"""A torch Dataset over one manifest, and several manifests as one dataset.

Item: ``(wav: FloatTensor[T], wrd: str, utt_id: str)``, the transcript normalised by
:func:`~cl_ssvdo.data.text.normalize_transcript`; batch them with
:func:`~cl_ssvdo.data.batch.collate_speech`. The one reader used by pretraining, the continual
run (``benchmarks.stream.make_benchmark``) and evaluation.

Depends on torch and the rest of ``cl_ssvdo.data``; never on models.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import soundfile as sf
import torch
from torch.utils.data import ConcatDataset, Dataset

from .audio import SampleRateError, read_audio
from .manifest import ManifestError, ManifestRow, default_root, read_manifest, resolve_wav
from .text import normalize_transcript

__all__ = ["ManifestDataset", "concat_manifests"]


class ManifestDataset(Dataset):
    """Utterances of one manifest: item ``(wav: FloatTensor[T], wrd: str, utt_id: str)``.

    Arguments
    ---------
    manifest_csv : path
        A CSV with columns ``ID,duration,wav,spk_id,wrd,domain`` (``spk_id``, ``domain``
        optional).
    root : path, optional
        Folder the ``wav`` paths are relative to; by default the stream root
        (``<root>/manifests/x.csv`` -> ``<root>``) or the manifest's folder.
    sample_rate : int
        Rate of the returned audio.
    resample : bool
        Resample files at another rate (counted in :attr:`resampled_ids`); when False (the
        default) such a file is a :class:`~cl_ssvdo.data.manifest.ManifestError` naming the
        manifest, row, file and both rates.
    exclude_ids : iterable of str, optional
        IDs to leave out (e.g. those a ``skip`` validation listed).

    Every unreadable or empty (header-only) file is a ``ManifestError`` naming the row.

    Example
    -------
    >>> import tempfile, numpy as np
    >>> from cl_ssvdo.data.manifest import write_manifest
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "audio").mkdir()
    >>> sf.write(root / "audio" / "u1.wav", np.zeros(1600, dtype="float32"), 16000)
    >>> csv = write_manifest(root / "manifests" / "adult_test.csv",
    ...                      [ManifestRow("u1", 0.1, "audio/u1.wav", "s1", "Hi, There!", "adult")])
    >>> ds = ManifestDataset(csv)
    >>> wav, wrd, utt_id = ds[0]
    >>> wav.shape, wrd, utt_id, ds.durations, ds.domains
    (torch.Size([1600]), 'hi there', 'u1', [0.1], ['adult'])
    """

    def __init__(
        self,
        manifest_csv: str | os.PathLike,
        root: str | os.PathLike | None = None,
        sample_rate: int = 16000,
        exclude_ids: Iterable[str] | None = None,
        resample: bool = False,
    ) -> None:
        self.manifest = Path(manifest_csv)
        self.root = Path(root) if root is not None else default_root(self.manifest)
        self.sample_rate = int(sample_rate)
        self.resample = bool(resample)
        self.resampled_ids: set[str] = set()
        excluded = set(exclude_ids or ())
        self.rows: list[ManifestRow] = [
            r for r in read_manifest(self.manifest) if r.ID not in excluded
        ]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str, str]:
        row = self.rows[index]
        path = resolve_wav(row.wav, self.root)
        try:
            wav, resampled = read_audio(path, self.sample_rate, self.resample)
        except SampleRateError as err:
            raise ManifestError(self.manifest, str(err), row.ID, "wav") from None
        except (sf.LibsndfileError, RuntimeError, OSError) as err:
            raise ManifestError(
                self.manifest, f"cannot read audio {path}: {err}", row.ID, "wav"
            ) from err
        if wav.numel() == 0:  # would reach the model as a 0/0 relative length
            raise ManifestError(
                self.manifest, f"no audio frames (a header only): {path}", row.ID, "wav"
            )
        if resampled:
            self.resampled_ids.add(row.ID)
        return wav, normalize_transcript(row.wrd), row.ID

    def other_rate_ids(self) -> list[str]:
        """IDs whose file is not at ``sample_rate`` (read from the headers, no audio decoded):
        what this dataset resamples when ``resample`` is on, known before any item is read."""
        return [
            r.ID
            for r in self.rows
            if sf.info(str(resolve_wav(r.wav, self.root))).samplerate != self.sample_rate
        ]

    @property
    def ids(self) -> list[str]:
        """Utterance IDs, in item order."""
        return [r.ID for r in self.rows]

    @property
    def durations(self) -> list[float]:
        """Manifest durations in seconds (for sorting/bucketing without reading audio)."""
        return [r.duration for r in self.rows]

    @property
    def speakers(self) -> list[str]:
        """``spk_id`` per item."""
        return [r.spk_id for r in self.rows]

    @property
    def domains(self) -> list[str]:
        """``domain`` per item."""
        return [r.domain for r in self.rows]

    def hours(self) -> float:
        """Total manifest duration, hours."""
        return sum(self.durations) / 3600.0


def concat_manifests(manifests: Iterable[str | os.PathLike], **kwargs: Any) -> ConcatDataset:
    """Several manifests as one dataset that keeps ``ids``/``durations``/``speakers``/``domains``
    (``kwargs`` go to each :class:`ManifestDataset`).

    >>> concat_manifests([])
    Traceback (most recent call last):
    ...
    ValueError: concat_manifests: no manifests given
    """
    parts = [ManifestDataset(m, **kwargs) for m in manifests]
    if not parts:
        raise ValueError("concat_manifests: no manifests given")
    data = ConcatDataset(parts)
    data.ids = [i for p in parts for i in p.ids]  # type: ignore[attr-defined]
    data.durations = [d for p in parts for d in p.durations]  # type: ignore[attr-defined]
    data.speakers = [s for p in parts for s in p.speakers]  # type: ignore[attr-defined]
    data.domains = [d for p in parts for d in p.domains]  # type: ignore[attr-defined]
    return data
