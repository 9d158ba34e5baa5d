"""Padding utterances into a batch (SpeechBrain convention: relative lengths).

Depends on torch only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

__all__ = ["SpeechBatch", "collate_speech"]


class SpeechBatch(NamedTuple):
    """A padded batch; a tuple ``(wavs, wav_lens, words, ids)``.

    wavs : FloatTensor ``[B, T_max]``, zero-padded at the end.
    wav_lens : FloatTensor ``[B]``, relative lengths (longest = 1.0), SpeechBrain convention.
    words : list of B normalised transcripts.
    ids : list of B utterance IDs.

    >>> b = SpeechBatch(torch.zeros(1, 3), torch.ones(1), ["a"], ["u1"]).to("cpu")
    >>> wavs, wav_lens, words, ids = b
    >>> wavs.shape, ids
    (torch.Size([1, 3]), ['u1'])
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
    t_max = max(int(lengths.max().item()), 1)
    padded = torch.zeros(len(wavs), t_max, dtype=torch.float32)
    for i, w in enumerate(wavs):
        padded[i, : w.numel()] = w
    return SpeechBatch(
        padded, lengths / t_max, [str(item[1]) for item in items], [str(item[2]) for item in items]
    )
