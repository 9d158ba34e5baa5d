"""Greedy and beam decoding for the Whisper decoder, bounded by the audio duration.

Every utterance gets a token limit ``ceil(tokens_per_second * duration) + margin`` (capped by
the decoder's 448 positions), so decoding stops even when the model never emits end of text (a
reduced audio window or a drifted adapter can make Whisper repeat itself). Special tokens other
than end of text are suppressed (no timestamps, no language tokens): the model writes text.

Shapes: ``enc [B, N, d_model]`` encoder states, ``durations [B]`` seconds.

>>> import math
>>> token_limits([0.5, 2.0], tokens_per_second=6.0, margin=8, cap=440)
[11, 20]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["beam_decode", "greedy_decode", "token_limits"]


def token_limits(
    durations: Sequence[float], tokens_per_second: float = 6.0, margin: int = 8, cap: int = 440
) -> list[int]:
    """Per-utterance maximum number of generated tokens (end of text included)."""
    return [min(cap, math.ceil(tokens_per_second * float(d)) + margin) for d in durations]


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
) -> list[list[int]]:
    """Batched greedy search with the decoder's KV cache; returns the text tokens (no eot)."""
    batch = enc.shape[0]
    device = enc.device
    ids = torch.tensor([list(prefix)] * batch, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    limit = torch.tensor(list(limits), device=device)
    out = torch.full((batch, max(limits, default=0)), eot, dtype=torch.long, device=device)
    cache = None
    step_input = ids
    for step in range(int(max(limits, default=0))):
        res = decoder(input_ids=step_input, encoder_hidden_states=enc, cache=cache, use_cache=True)
        cache = res.cache  # transformers 5: the decoder's KV cache is ``cache``
        logits = _suppress(_logits(decoder, res.last_hidden_state[:, -1]), eot)
        token = logits.argmax(-1)
        token = torch.where(finished | (step >= limit), torch.full_like(token, eot), token)
        out[:, step] = token
        finished |= token == eot
        if bool(finished.all()):
            break
        step_input = token[:, None]
    return [[int(t) for t in row if t != eot] for row in _cut_at_eot(out, eot)]


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
) -> list[list[int]]:
    """Beam search per utterance (beams batched, no KV cache); length-normalised log-probability
    (sum / tokens) picks among finished hypotheses; unfinished ones count at the limit."""
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
                if token == eot:
                    done.append((seq[:-1], value / len(seq)))
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
