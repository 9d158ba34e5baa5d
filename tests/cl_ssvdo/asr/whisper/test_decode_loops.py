"""The loop guard of Whisper decoding (``decode.loop_start``): properties of the cut, and
greedy / beam decoding of a decoder forced into a loop (the injected fault) stop after one copy."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cl_ssvdo.asr.whisper import decode as decode_mod
from cl_ssvdo.asr.whisper.decode import MIN_REPEAT, loop_start
from cl_ssvdo.asr.whisper.model import WhisperBackbone, load_speechbrain_whisper
from cl_ssvdo.asr.whisper.seq2seq import WhisperSeq2Seq
from cl_ssvdo.asr.whisper.tiny import save_tiny_whisper

tokens = st.lists(st.integers(0, 5), max_size=40)


def _is_loop_cut(seq: list[int], cut: int) -> bool:
    """seq[cut:] is whole copies of a block that ends seq[:cut]."""
    tail = seq[cut:]
    return any(
        len(tail) % p == 0 and tail == seq[cut - p : cut] * (len(tail) // p)
        for p in range(1, cut + 1)
    )


@given(tokens, st.integers(0, 20))
@settings(max_examples=300, deadline=None)
def test_a_cut_removes_only_repeated_copies(seq, min_repeat) -> None:
    cut = loop_start(seq, min_repeat)
    if cut is not None:
        assert min_repeat > 0 and 0 < cut < len(seq)
        assert _is_loop_cut(seq, cut)
        assert len(seq) >= min_repeat


@given(
    st.lists(st.integers(100, 200), max_size=5),
    st.lists(st.integers(0, 50), min_size=1, max_size=8, unique=True),
    st.integers(2, 6),
    st.integers(1, 20),
)
@settings(max_examples=300, deadline=None)
def test_a_loop_long_enough_is_found_and_kept_once(prefix, block, copies, min_repeat) -> None:
    seq = prefix + block * copies
    cut = loop_start(seq, min_repeat)
    if copies * len(block) >= min_repeat:
        assert cut == len(prefix) + len(block)  # distinct block, prefix from another alphabet
    else:
        assert cut is None


@given(st.lists(st.integers(0, 10_000), max_size=60, unique=True), st.integers(0, 20))
def test_no_repetition_no_cut(seq, min_repeat) -> None:
    assert loop_start(seq, min_repeat) is None


def test_digit_strings_with_commas_are_not_loops() -> None:
    """'1, 2, 1, 2,' (8 tokens) is a plausible reading of four digits, not a loop."""
    assert loop_start([16, 11, 17, 11, 16, 11, 17, 11], MIN_REPEAT) is None
    assert loop_start([16, 16, 16, 16], MIN_REPEAT) is None


@pytest.fixture(scope="module")
def seq2seq(tmp_path_factory) -> WhisperSeq2Seq:
    folder = save_tiny_whisper(tmp_path_factory.mktemp("whisper"), d_model=16, layers=1)
    sb = load_speechbrain_whisper(folder)
    return WhisperSeq2Seq(WhisperBackbone(copy.deepcopy(sb), audio_ctx=100)).eval()


CYCLE = [10, 11, 12, 13, 14]  # 5 tokens: two copies reach MIN_REPEAT


def _force_cycle(monkeypatch) -> None:
    """Injected fault: at step t every hypothesis's best token is CYCLE[t % 5], never eot."""
    calls = {"n": 0}

    def looping(logits, eot):
        logits = torch.full_like(logits, -1e4)
        logits[..., CYCLE[calls["n"] % len(CYCLE)]] = 0.0
        calls["n"] += 1
        return logits

    monkeypatch.setattr(decode_mod, "_suppress", looping)


@pytest.mark.parametrize("beam_size", [1, 2])
def test_a_looping_decoder_stops_after_one_copy(seq2seq, monkeypatch, beam_size) -> None:
    _force_cycle(monkeypatch)
    out = seq2seq(
        0.1 * torch.randn(2, 32000, generator=torch.Generator().manual_seed(0)), torch.ones(2)
    )
    seq2seq.beam_size, seq2seq.min_repeat = beam_size, MIN_REPEAT
    assert min(seq2seq.limits(out.durations)) > 2 * len(CYCLE)  # the guard, not the limit
    assert seq2seq.transcribe_tokens(out) == [CYCLE, CYCLE]


def test_without_the_guard_the_loop_runs_to_the_limit(seq2seq, monkeypatch) -> None:
    _force_cycle(monkeypatch)
    out = seq2seq(torch.zeros(1, 32000), torch.ones(1))
    seq2seq.beam_size, seq2seq.min_repeat = 1, 0
    (limit,) = seq2seq.limits(out.durations)
    assert seq2seq.transcribe_tokens(out) == [(CYCLE * limit)[:limit]]


def test_reduced_window_features_are_the_full_windows_first_frames(seq2seq) -> None:
    """Not a front-end bug: the mel of a short utterance in the N-position window is the first
    2N frames of its 30 s mel (same clamp, same zero padding), so only the encoder context shrinks."""
    wavs = 0.1 * torch.randn(2, 24000, generator=torch.Generator().manual_seed(3))
    lens = torch.tensor([1.0, 0.6])
    full = WhisperBackbone(seq2seq.backbone.whisper).mel(wavs, lens)
    short = seq2seq.backbone.mel(wavs, lens)
    assert short.shape[-1] == 2 * seq2seq.backbone.audio_ctx
    torch.testing.assert_close(short, full[..., : short.shape[-1]], rtol=0, atol=1e-6)
