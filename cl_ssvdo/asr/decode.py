"""CTC decoding: greedy (default) and prefix beam search (SpeechBrain ``CTCPrefixBeamSearcher``).

Must not depend on avalanche, mlflow or benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from speechbrain.decoders.ctc import CTCPrefixBeamSearcher, ctc_greedy_decode

from .tokenizer import BLANK_ID, CharTokenizer, SentencePieceTokenizer, Tokenizer

Decoder = Callable[[torch.Tensor, torch.Tensor], list[str]]


def _check(log_probs: torch.Tensor, out_lens: torch.Tensor) -> None:
    if log_probs.dim() != 3:
        raise ValueError(f"log_probs must be [batch, time, vocab], got {tuple(log_probs.shape)}")
    if out_lens.shape != log_probs.shape[:1]:
        raise ValueError(
            f"out_lens must be [batch]={log_probs.shape[0]}, got {tuple(out_lens.shape)}"
        )


def greedy_decode(
    log_probs: torch.Tensor, out_lens: torch.Tensor, tokenizer: Tokenizer
) -> list[str]:
    """Best-path CTC decoding: argmax per frame, merge repeats, drop blanks.

    Arguments
    ---------
    log_probs : torch.Tensor
        [B, T', V] CTC (log-)probabilities, blank = 0.
    out_lens : torch.Tensor
        [B] relative lengths.
    tokenizer : Tokenizer
        Maps ids to text.

    Returns
    -------
    list[str]
        One hypothesis per utterance (whitespace-normalised).

    Example
    -------
    >>> tok = CharTokenizer(["a", "b", " "])
    >>> lp = torch.log(torch.tensor([[[.1, .8, .05, .05], [.1, .8, .05, .05],
    ...                                [.9, .05, .03, .02], [.1, .8, .05, .05],
    ...                                [.1, .05, .8, .05]]]))
    >>> greedy_decode(lp, torch.tensor([1.0]), tok)
    ['aab']
    """
    _check(log_probs, out_lens)
    ids = ctc_greedy_decode(log_probs.detach().float(), out_lens.detach().float(), BLANK_ID)
    return [" ".join(tokenizer.decode(seq).split()) for seq in ids]


class BeamDecoder:
    """CTC prefix beam search without a language model.

    Arguments
    ---------
    tokenizer : CharTokenizer or SentencePieceTokenizer
        Its vocabulary gives the searcher's ``vocab_list``.
    beam_size : int
        Beam width.

    Example
    -------
    >>> tok = CharTokenizer(["a", "b", " "])
    >>> lp = torch.log(torch.tensor([[[.1, .8, .05, .05], [.9, .05, .03, .02],
    ...                                [.1, .8, .05, .05]]]))
    >>> BeamDecoder(tok, beam_size=4)(lp, torch.tensor([1.0]))
    ['aa']
    """

    def __init__(self, tokenizer: Tokenizer, beam_size: int = 10) -> None:
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        self.tokenizer = tokenizer
        self.searcher = CTCPrefixBeamSearcher(
            blank_index=BLANK_ID,
            vocab_list=_vocab_list(tokenizer),
            beam_size=beam_size,
            topk=1,
        )

    def __call__(self, log_probs: torch.Tensor, out_lens: torch.Tensor) -> list[str]:
        """[B, T', V] log-probabilities, [B] relative lengths -> B hypotheses."""
        _check(log_probs, out_lens)
        hyps = self.searcher(log_probs.detach().float().cpu(), out_lens.detach().float().cpu())
        return [" ".join(h[0].text.split()) if h else "" for h in hyps]


def _vocab_list(tokenizer: Tokenizer) -> list[str]:
    if isinstance(tokenizer, CharTokenizer):
        return [tokenizer.ind2lab[i] for i in range(tokenizer.vocab_size)]
    if isinstance(tokenizer, SentencePieceTokenizer):
        proc = tokenizer.processor
        return [proc.id_to_piece(i) for i in range(tokenizer.vocab_size)]
    raise TypeError(
        f"beam search needs a CharTokenizer or SentencePieceTokenizer, got {tokenizer!r}"
    )


def make_decoder(tokenizer: Tokenizer, beam_size: int = 1) -> Decoder:
    """Greedy decoding for ``beam_size == 1``, else a :class:`BeamDecoder`."""
    if beam_size <= 1:
        return lambda log_probs, out_lens: greedy_decode(log_probs, out_lens, tokenizer)
    return BeamDecoder(tokenizer, beam_size)
