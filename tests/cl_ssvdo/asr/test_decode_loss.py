"""Greedy/beam CTC decoding and the string-target CTC loss."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cl_ssvdo.asr.decode import BeamDecoder, greedy_decode, make_decoder
from cl_ssvdo.asr.loss import ctc_batch_loss, ctc_targets
from cl_ssvdo.asr.tokenizer import BLANK_ID, CharTokenizer

TOK = CharTokenizer()
WORDS = st.lists(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz'", min_size=1, max_size=8), max_size=5
)


def path_log_probs(text: str, frames_per_token: int = 2, vocab: int = 29) -> torch.Tensor:
    """A peaked [T, V] log-probability path spelling ``text`` (blank between tokens)."""
    path: list[int] = [BLANK_ID]
    for i in TOK.encode(text):
        path += [i] * frames_per_token + [BLANK_ID]
    probs = torch.full((len(path), vocab), 0.01 / (vocab - 1))
    probs[torch.arange(len(path)), torch.tensor(path)] = 0.99
    return probs.log()


@given(WORDS, st.integers(1, 3))
@settings(max_examples=60, deadline=None)
def test_greedy_recovers_the_spelled_text(words: list[str], reps: int) -> None:
    text = " ".join(words)
    lp = path_log_probs(text, reps).unsqueeze(0)
    assert greedy_decode(lp, torch.ones(1), TOK) == [text]


def test_greedy_respects_relative_lengths() -> None:
    a, b = path_log_probs("ab"), path_log_probs("ba")
    lp = torch.stack([a, b])
    # the second utterance only keeps its first 4 frames: blank, b, b, blank
    assert greedy_decode(lp, torch.tensor([1.0, 4 / a.shape[0]]), TOK) == ["ab", "b"]


@given(WORDS)
@settings(max_examples=20, deadline=None)
def test_beam_equals_greedy_on_peaked_paths(words: list[str]) -> None:
    text = " ".join(words)
    lp = path_log_probs(text).unsqueeze(0)
    assert BeamDecoder(TOK, beam_size=4)(lp, torch.ones(1)) == [text]
    assert make_decoder(TOK, beam_size=1)(lp, torch.ones(1)) == [text]


def test_decoders_check_shapes() -> None:
    with pytest.raises(ValueError, match="log_probs"):
        greedy_decode(torch.zeros(3, 29), torch.ones(3), TOK)
    with pytest.raises(ValueError, match="out_lens"):
        greedy_decode(torch.zeros(2, 3, 29), torch.ones(3), TOK)
    with pytest.raises(ValueError, match="beam_size"):
        BeamDecoder(TOK, beam_size=0)


def test_targets_handle_empty_transcripts() -> None:
    targets, lens = ctc_targets(["", ""], TOK)
    assert targets.shape == (2, 1) and lens.tolist() == [0.0, 0.0]
    targets, lens = ctc_targets(["ab c", ""], TOK)
    assert targets[0].tolist() == TOK.encode("ab c") and lens.tolist() == [1.0, 0.0]


@given(WORDS, WORDS)
@settings(max_examples=25, deadline=None)
def test_loss_equals_torch_ctc_loss(a: list[str], b: list[str]) -> None:
    torch.manual_seed(0)
    texts = [" ".join(a), " ".join(b)]
    T = 40
    log_probs = torch.randn(2, T, 29).log_softmax(-1)
    out_lens = torch.tensor([1.0, 0.75])
    expected = torch.nn.functional.ctc_loss(
        log_probs.transpose(0, 1),
        torch.tensor([i for t in texts for i in TOK.encode(t)], dtype=torch.long),
        torch.tensor([T, 30]),
        torch.tensor([len(t) for t in texts]),
        blank=0,
        zero_infinity=True,
    )
    assert torch.allclose(ctc_batch_loss(log_probs, out_lens, texts, TOK), expected, atol=1e-5)


def test_loss_gradient_is_finite_with_empty_targets() -> None:
    logits = torch.randn(2, 20, 29, requires_grad=True)
    loss = ctc_batch_loss(logits.log_softmax(-1), torch.ones(2), ["", "hi"], TOK)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError, match="transcripts"):
        ctc_batch_loss(logits.log_softmax(-1), torch.ones(2), ["a"], TOK)
