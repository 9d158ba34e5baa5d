"""CTC loss on transcripts given as strings (SpeechBrain ``ctc_loss``, blank 0).

Must not depend on avalanche, mlflow or benchmarks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from speechbrain.nnet.losses import ctc_loss

from .tokenizer import BLANK_ID, Tokenizer


def ctc_targets(
    words: Sequence[str], tokenizer: Tokenizer, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids padded with the blank, and their lengths relative to the padded width.

    Empty transcripts give zero-length targets (the loss then rewards all-blank output);
    the padded width is at least 1 so relative lengths stay defined.

    Returns
    -------
    targets : torch.Tensor
        [B, L] long.
    target_lens : torch.Tensor
        [B] relative to L.

    Example
    -------
    >>> from cl_ssvdo.asr.tokenizer import CharTokenizer
    >>> targets, lens = ctc_targets(["ab", ""], CharTokenizer())
    >>> targets.tolist(), lens.tolist()
    ([[3, 4], [0, 0]], [1.0, 0.0])
    """
    seqs = [tokenizer.encode(w) for w in words]
    width = max([len(s) for s in seqs] + [1])
    targets = torch.full((len(seqs), width), BLANK_ID, dtype=torch.long)
    for i, s in enumerate(seqs):
        targets[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    lens = torch.tensor([len(s) / width for s in seqs], dtype=torch.float32)
    return targets.to(device), lens.to(device)


def ctc_batch_loss(
    log_probs: torch.Tensor, out_lens: torch.Tensor, words: Sequence[str], tokenizer: Tokenizer
) -> torch.Tensor:
    """Mean CTC loss of a batch (PyTorch ``reduction="mean"``: per target token, then averaged
    over utterances; infinite losses from too-short inputs are zeroed).

    Arguments
    ---------
    log_probs : torch.Tensor
        [B, T', V] log-probabilities.
    out_lens : torch.Tensor
        [B] relative lengths.
    words : Sequence[str]
        B transcripts.
    tokenizer : Tokenizer
        Encodes them.
    """
    if log_probs.shape[0] != len(words):
        raise ValueError(
            f"ctc_batch_loss: {log_probs.shape[0]} outputs but {len(words)} transcripts"
        )
    targets, target_lens = ctc_targets(words, tokenizer, log_probs.device)
    return ctc_loss(log_probs.float(), targets, out_lens, target_lens, blank_index=BLANK_ID)
