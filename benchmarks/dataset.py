"""A torch Dataset over one manifest, and the collate that pads a batch (SpeechBrain convention).

Depends on torch, torchaudio (resampling only) and soundfile (file I/O); never on models.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from torch.utils.data import Dataset

from benchmarks.manifest import ManifestError, ManifestRow, default_root, read_manifest, resolve_wav
from benchmarks.text import normalize_transcript

__all__ = ["ManifestDataset", "SpeechBatch", "collate_speech", "load_audio"]


def load_audio(path: str | os.PathLike, sample_rate: int = 16000) -> torch.Tensor:
    """Read an audio file as mono float32 at ``sample_rate``.

    Multi-channel audio is averaged; other rates are resampled with
    ``torchaudio.functional.resample``.

    Returns
    -------
    torch.Tensor
        Shape ``[T]``, float32, nominally in ``[-1, 1]``.
    """
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    wav = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    if rate != sample_rate:
        wav = AF.resample(wav, orig_freq=rate, new_freq=sample_rate)
    return wav


class ManifestDataset(Dataset):
    """Utterances of one manifest: item ``(wav: FloatTensor[T], wrd: str, utt_id: str)``.

    Arguments
    ---------
    manifest_csv : path
        A CSV with columns ``ID,duration,wav,spk_id,wrd,domain``.
    root : path, optional
        Folder the ``wav`` paths are relative to; by default the stream root
        (``<root>/manifests/x.csv`` -> ``<root>``) or the manifest's folder.
    sample_rate : int
        Rate of the returned audio; files at other rates are resampled.
    exclude_ids : iterable of str, optional
        IDs to leave out (e.g. those a ``skip`` validation listed).

    Example
    -------
    >>> ds = ManifestDataset(info.manifest("adult", "test"))  # doctest: +SKIP
    >>> wav, wrd, utt_id = ds[0]  # doctest: +SKIP
    """

    def __init__(
        self,
        manifest_csv: str | os.PathLike,
        root: str | os.PathLike | None = None,
        sample_rate: int = 16000,
        exclude_ids: Iterable[str] | None = None,
    ) -> None:
        self.manifest = Path(manifest_csv)
        self.root = Path(root) if root is not None else default_root(self.manifest)
        self.sample_rate = int(sample_rate)
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
            wav = load_audio(path, self.sample_rate)
        except (sf.LibsndfileError, RuntimeError, OSError) as err:
            raise ManifestError(
                self.manifest, f"cannot read audio {path}: {err}", row.ID, "wav"
            ) from err
        if wav.numel() == 0:  # would reach the model as a 0/0 relative length
            raise ManifestError(
                self.manifest, f"no audio frames (a header only): {path}", row.ID, "wav"
            )
        return wav, normalize_transcript(row.wrd), row.ID

    @property
    def ids(self) -> list[str]:
        return [r.ID for r in self.rows]

    @property
    def durations(self) -> list[float]:
        """Manifest durations in seconds (for sorting/bucketing without reading audio)."""
        return [r.duration for r in self.rows]

    @property
    def speakers(self) -> list[str]:
        return [r.spk_id for r in self.rows]

    def hours(self) -> float:
        return sum(self.durations) / 3600.0


class SpeechBatch(NamedTuple):
    """A padded batch; a tuple ``(wavs, wav_lens, words, ids)``.

    wavs : FloatTensor ``[B, T_max]``, zero-padded at the end.
    wav_lens : FloatTensor ``[B]``, relative lengths (longest = 1.0), SpeechBrain convention.
    words : list of B normalised transcripts.
    ids : list of B utterance IDs.
    """

    wavs: torch.Tensor
    wav_lens: torch.Tensor
    words: list[str]
    ids: list[str]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> SpeechBatch:
        """A copy with the tensors on ``device`` (strings stay on the host)."""
        return SpeechBatch(
            self.wavs.to(device, non_blocking=non_blocking),
            self.wav_lens.to(device, non_blocking=non_blocking),
            self.words,
            self.ids,
        )


def collate_speech(items: Sequence[Sequence]) -> SpeechBatch:
    """Pad ``(wav[T], wrd, utt_id, ...)`` items into a :class:`SpeechBatch`.

    Extra trailing fields (e.g. task labels Avalanche appends) are ignored.

    Example
    -------
    >>> b = collate_speech([(torch.ones(4), "a", "u1"), (torch.ones(2), "b", "u2")])
    >>> b.wavs.shape, b.wav_lens.tolist(), b.words, b.ids
    (torch.Size([2, 4]), [1.0, 0.5], ['a', 'b'], ['u1', 'u2'])
    >>> b.wavs[1].tolist()
    [1.0, 1.0, 0.0, 0.0]
    """
    if len(items) == 0:
        raise ValueError("collate_speech got an empty batch")
    wavs = [torch.as_tensor(item[0], dtype=torch.float32).reshape(-1) for item in items]
    lengths = torch.tensor([w.numel() for w in wavs], dtype=torch.float32)
    t_max = int(lengths.max().item())
    padded = torch.zeros(len(wavs), max(t_max, 1), dtype=torch.float32)
    for i, w in enumerate(wavs):
        padded[i, : w.numel()] = w
    rel = lengths / max(t_max, 1)
    return SpeechBatch(
        padded, rel, [str(item[1]) for item in items], [str(item[2]) for item in items]
    )
