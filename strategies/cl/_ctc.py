"""Small CTC helpers the continual-learning plugins share (over ``strategies.template.CTCTemplate``).

Kept free of strategy state: they never touch ``strategy.mbatch``/``mb_output``/``loss``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import DataLoader

__all__ = [
    "collate_of",
    "data_loader",
    "batch_forward",
    "batch_loss",
    "frame_mask",
    "minibatch_inputs",
]


def collate_of(dataset) -> Callable:
    """The dataset's ``collate_fn`` (the padded speech collate for benchmark datasets)."""
    collate = getattr(dataset, "collate_fn", None)
    if collate is None:
        raise ValueError(
            f"{type(dataset).__name__} has no collate_fn: build datasets with "
            "benchmarks.stream.make_benchmark (collate_speech)"
        )
    return collate


def data_loader(strategy, dataset, shuffle: bool = False) -> DataLoader:
    """Batches of ``strategy.train_mb_size`` with the dataset's collate, no workers."""
    return DataLoader(
        dataset, batch_size=strategy.train_mb_size, shuffle=shuffle, collate_fn=collate_of(dataset)
    )


def batch_forward(strategy, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log_probs [B, T', V], out_lens [B])`` of ``strategy.model`` on a SpeechBatch."""
    wavs, wav_lens = batch[0].to(strategy.device), batch[1].to(strategy.device)
    return strategy.model(wavs, wav_lens)


def batch_loss(strategy, batch) -> torch.Tensor:
    """Mean CTC loss of ``strategy.model`` on a SpeechBatch (the template's criterion)."""
    return strategy._criterion(batch_forward(strategy, batch), list(batch[2]))


def minibatch_inputs(strategy) -> tuple[torch.Tensor, torch.Tensor]:
    """``(wavs, wav_lens)`` of the strategy's current minibatch."""
    return strategy.mbatch[0], strategy.mbatch[1]


def frame_mask(out_lens: torch.Tensor, max_len: int) -> torch.Tensor:
    """Bool mask [B, max_len]: frame ``t`` of utterance ``b`` is valid when
    ``t < round(out_lens[b] * max_len)`` (relative lengths, SpeechBrain convention).

    Example
    -------
    >>> frame_mask(torch.tensor([1.0, 0.5]), 4).int().tolist()
    [[1, 1, 1, 1], [1, 1, 0, 0]]
    """
    lengths = torch.round(out_lens.float() * max_len).long().clamp(0, max_len)
    steps = torch.arange(max_len, device=out_lens.device)
    return steps[None, :] < lengths[:, None]


def experience_index(strategy) -> int:
    """Stream index of the strategy's current experience (read unmasked: Avalanche hides it
    from the training loop in train mode, not from plugins that schedule by domain)."""
    exp = strategy.experience
    unmask = getattr(exp, "no_attribute_masking", None)
    if unmask is None:
        return int(exp.current_experience)
    with unmask():
        return int(exp.current_experience)
