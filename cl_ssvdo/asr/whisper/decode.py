"""Greedy and beam decoding for the Whisper decoder, bounded by the audio duration.

Every utterance gets a token limit ``ceil(tokens_per_second * duration) + margin`` (capped by
the decoder's 448 positions), so decoding stops even when the model never emits end of text (a
reduced audio window or a drifted adapter can make Whisper repeat itself). A hypothesis whose
tail becomes a loop (the same block of tokens twice or more in a row, ``min_repeat`` tokens or
more in all) stops there and keeps one copy of the block (:func:`loop_start`): the cheap,
deterministic stand-in for the compression-ratio check of Whisper's own decoding. Special
tokens other than end of text are suppressed (no timestamps, no language tokens): the model
writes text.

Shapes: ``enc [B, N, d_model]`` encoder states, ``durations [B]`` seconds.

>>> token_limits([0.5, 2.0], tokens_per_second=6.0, margin=8, cap=440)
[11, 20]
>>> loop_start([7, 1, 2, 3, 4, 5, 1, 2, 3, 4, 5], min_repeat=10)  # keep [7, 1, 2, 3, 4, 5]
6
>>> loop_start([3, 3, 6, 5, 9, 3], min_repeat=10) is None
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MIN_REPEAT", "beam_decode", "greedy_decode", "loop_start", "token_limits"]

#: Default loop length in tokens: a 5-token sentence said twice ("Turn on the lights. Turn on
#: the lights.") is a loop; a digit pair said twice with commas ("1, 2, 1, 2,": 8 tokens) is not.
MIN_REPEAT = 10


def token_limits(
    durations: Sequence[float], tokens_per_second: float = 6.0, margin: int = 8, cap: int = 440
) -> list[int]:
    """Per-utterance maximum number of generated tokens (end of text included)."""
    return [min(cap, math.ceil(tokens_per_second * float(d)) + margin) for d in durations]


def loop_start(tokens: Sequence[int], min_repeat: int = MIN_REPEAT) -> int | None:
    """Where the loop at the end of ``tokens`` starts repeating, or None.

    The tail of ``tokens`` is a loop when it is ``k >= 2`` consecutive copies of a block of
    ``L`` tokens with ``k * L >= min_repeat``; the returned length keeps everything before the
    loop and one copy of the block. ``min_repeat <= 0`` disables the check.
    """
    n = len(tokens)
    if min_repeat <= 0 or n < max(2, min_repeat):
        return None
    for block in range(1, n // 2 + 1):
        copies = 1
        while (copies + 1) * block <= n and list(
            tokens[n - (copies + 1) * block : n - copies * block]
        ) == list(tokens[n - block :]):
            copies += 1
        if copies >= 2 and copies * block >= min_repeat:
            return n - (copies - 1) * block
    return None


def _logits(decoder: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    return (hidden @ decoder.embed_tokens.weight.to(hidden.dtype).t()).float()


def _suppress(logits: torch.Tensor, eot: int) -> torch.Tensor:
    """Only text tokens (< eot) and eot itself can be produced."""
    logits[..., eot + 1 :] = float("-inf")
    return logits


@torch.no_grad()
def greedy_decode(
    decoder: nn.Module,
    enc: torch.Tensor,
    prefix: Sequence[int],
    eot: int,
    limits: Sequence[int],
    min_repeat: int = MIN_REPEAT,
) -> list[list[int]]:
    """Batched greedy search with the decoder's KV cache; returns the text tokens (no eot),
    a looping hypothesis cut by :func:`loop_start`."""
    batch = enc.shape[0]
    device = enc.device
    ids = torch.tensor([list(prefix)] * batch, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    limit = torch.tensor(list(limits), device=device)
    out = torch.full((batch, max(limits, default=0)), eot, dtype=torch.long, device=device)
    cache = None
    step_input = ids
    kept: list[int | None] = [None] * batch  # length kept when a loop stopped it
    texts: list[list[int]] = [[] for _ in range(batch)]
    for step in range(int(max(limits, default=0))):
        res = decoder(input_ids=step_input, encoder_hidden_states=enc, cache=cache, use_cache=True)
        cache = res.cache  # transformers 5: the decoder's KV cache is ``cache``
        logits = _suppress(_logits(decoder, res.last_hidden_state[:, -1]), eot)
        token = logits.argmax(-1)
        token = torch.where(finished | (step >= limit), torch.full_like(token, eot), token)
        out[:, step] = token
        finished |= token == eot
        if min_repeat > 0:
            for b, (t, done) in enumerate(zip(token.tolist(), finished.tolist(), strict=True)):
                if done:
                    continue
                texts[b].append(t)
                cut = loop_start(texts[b], min_repeat)
                if cut is not None:
                    kept[b] = cut
                    finished[b] = True
        if bool(finished.all()):
            break
        step_input = token[:, None]
    rows = _cut_at_eot(out, eot)
    return [
        [int(t) for t in (row if cut is None else row[:cut]) if t != eot]
        for row, cut in zip(rows, kept, strict=True)
    ]


def _cut_at_eot(out: torch.Tensor, eot: int) -> list[list[int]]:
    rows = []
    for row in out.tolist():
        rows.append(row[: row.index(eot)] if eot in row else row)
    return rows


@torch.no_grad()
def beam_decode(
    decoder: nn.Module,
    enc: torch.Tensor,
    prefix: Sequence[int],
    eot: int,
    limits: Sequence[int],
    beam_size: int = 4,
    min_repeat: int = MIN_REPEAT,
) -> list[list[int]]:
    """Beam search per utterance (beams batched, no KV cache); length-normalised log-probability
    (sum / tokens) picks among finished hypotheses; unfinished ones count at the limit; a beam
    that loops (:func:`loop_start`) finishes with one copy of its loop."""
    results = []
    for b in range(enc.shape[0]):
        mem = enc[b : b + 1]
        beams: list[tuple[list[int], float]] = [([], 0.0)]
        done: list[tuple[list[int], float]] = []
        for _ in range(int(limits[b])):
            inputs = torch.tensor([list(prefix) + toks for toks, _ in beams], device=enc.device)
            hidden = decoder(
                input_ids=inputs,
                encoder_hidden_states=mem.expand(len(beams), -1, -1),
                use_cache=False,
            ).last_hidden_state[:, -1]
            logp = _suppress(_logits(decoder, hidden), eot).log_softmax(-1)
            scores = torch.tensor([s for _, s in beams], device=enc.device)[:, None] + logp
            top = scores.flatten().topk(min(beam_size * 2, scores.numel()))
            candidates = []
            for value, index in zip(top.values.tolist(), top.indices.tolist(), strict=True):
                src, token = divmod(index, logp.shape[1])
                seq = beams[src][0] + [token]
                cut = None if token == eot else loop_start(seq, min_repeat)
                if token == eot:
                    done.append((seq[:-1], value / len(seq)))
                elif cut is not None:
                    done.append((seq[:cut], value / len(seq)))
                else:
                    candidates.append((seq, value))
                if len(candidates) == beam_size:
                    break
            beams = candidates
            if len(done) >= beam_size or not beams:
                break
        done += [(toks, s / max(1, len(toks))) for toks, s in beams]
        results.append(max(done, key=lambda d: d[1])[0] if done else [])
    return results
