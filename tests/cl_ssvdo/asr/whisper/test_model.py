"""Whisper model kinds on a tiny random HF Whisper saved locally (nothing downloaded): audio
window, teacher forcing, bounded decoding, CTC head, SSVD-O exactness on the FFN linears."""

from __future__ import annotations

import copy

import pytest
import torch

from cl_ssvdo.asr.whisper import decode as decode_mod
from cl_ssvdo.asr.whisper.ctc_head import WhisperCTC, load_ctc_head, save_ctc_head
from cl_ssvdo.asr.whisper.decode import beam_decode, greedy_decode, token_limits
from cl_ssvdo.asr.whisper.model import (
    WhisperAudioTooLong,
    WhisperBackbone,
    WhisperFolderError,
    load_speechbrain_whisper,
)
from cl_ssvdo.asr.whisper.seq2seq import WhisperSeq2Seq
from cl_ssvdo.asr.whisper.tiny import save_tiny_whisper
from cl_ssvdo.ssvdo import inject_ssvdo, merge_ssvdo, ssvdo_layers


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return save_tiny_whisper(tmp_path_factory.mktemp("whisper"), d_model=16, layers=1)


@pytest.fixture(scope="module")
def sb_whisper(tiny_folder):
    return load_speechbrain_whisper(tiny_folder)


@pytest.fixture
def seq2seq(sb_whisper) -> WhisperSeq2Seq:
    return WhisperSeq2Seq(WhisperBackbone(copy.deepcopy(sb_whisper), audio_ctx=100)).eval()


def _audio(batch: int = 3, seconds: float = 1.5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    wavs = 0.1 * torch.randn(batch, int(16000 * seconds), generator=g)
    lens = torch.linspace(1.0, 0.5, batch)
    return wavs, lens


def test_full_window_matches_speechbrain_and_transformers(sb_whisper) -> None:
    """With audio_ctx = 1500 our mel + encoder are SpeechBrain's / transformers' (one utterance)."""
    backbone = WhisperBackbone(sb_whisper)
    wav = _audio(1)[0]
    mel = backbone.mel(wav, torch.ones(1))
    assert torch.equal(mel, sb_whisper._get_mel(wav))
    ours = backbone.encode_mel(mel)
    ref = sb_whisper.model.encoder(mel).last_hidden_state
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)


def test_reduced_window_is_the_prefix_of_positions(sb_whisper) -> None:
    """audio_ctx = N: mel has 2N frames, states N positions; padding does not change an utterance."""
    backbone = WhisperBackbone(sb_whisper, audio_ctx=100)
    wavs, lens = _audio(2, seconds=1.0)
    lens = torch.tensor([1.0, 0.5])
    enc = backbone.encode(wavs, lens)
    assert enc.shape == (2, 100, 16)
    alone = backbone.encode(wavs[1:, :8000], torch.ones(1))
    torch.testing.assert_close(enc[1:], alone, rtol=0, atol=1e-5)


def test_audio_longer_than_the_window_is_a_named_error(sb_whisper) -> None:
    backbone = WhisperBackbone(sb_whisper, audio_ctx=50)  # 1 s
    with pytest.raises(WhisperAudioTooLong, match="exceeds the Whisper window of 1.00 s"):
        backbone.encode(torch.zeros(1, 17000), torch.ones(1))
    with pytest.raises(ValueError, match="audio_ctx must be in 1..1500"):
        WhisperBackbone(sb_whisper, audio_ctx=1501)


def test_folder_that_is_not_whisper_is_a_named_error(tmp_path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(WhisperFolderError, match="preprocessor_config.json"):
        load_speechbrain_whisper(tmp_path)


def test_teacher_forcing_targets(seq2seq) -> None:
    """Prefix sot/notimestamps, text, eot; labels skip the prefix and the padding."""
    inputs, labels = seq2seq.targets(["hello world", ""], torch.device("cpu"))
    text = seq2seq.tokenizer.encode(" hello world", add_special_tokens=False)
    assert seq2seq.prefix == [50257, 50362]
    assert inputs[0].tolist() == [50257, 50362, *text]
    assert labels[0].tolist() == [-100, *text, 50256]
    assert labels[1].tolist()[:2] == [-100, 50256] and set(labels[1].tolist()[2:]) == {-100}


def test_loss_equals_transformers_cross_entropy(seq2seq) -> None:
    """Our loss is the HF model's teacher-forced loss on the same tokens (full window)."""
    seq2seq.backbone.audio_ctx = 1500
    wavs, lens = _audio(1)
    out = seq2seq(wavs, lens)
    ours = seq2seq.loss(out, ["turn on the light"])
    inputs, labels = seq2seq.targets(["turn on the light"], torch.device("cpu"))
    hf = seq2seq.backbone.hf
    logits = (
        hf(
            input_features=seq2seq.backbone.mel(wavs, lens), decoder_input_ids=inputs
        ).last_hidden_state
        @ hf.decoder.embed_tokens.weight.t()
    )
    ref = torch.nn.functional.cross_entropy(logits[0], labels[0], ignore_index=-100)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_decoding_stops_at_the_token_limit_without_end_of_text(seq2seq, monkeypatch) -> None:
    """A model that can never end (eot banned: the injected fault) stops at the duration limit."""
    original = decode_mod._suppress

    def never_end(logits, eot):
        logits = original(logits, eot)
        logits[..., eot] = float("-inf")
        return logits

    monkeypatch.setattr(decode_mod, "_suppress", never_end)
    wavs, lens = _audio(3, seconds=2.0)
    seq2seq.min_repeat = 0  # a random model may loop: only the length limit is tested here
    out = seq2seq(wavs, lens)
    limits = seq2seq.limits(out.durations)
    assert limits == token_limits([2.0, 1.5, 1.0])
    tokens = seq2seq.transcribe_tokens(out)
    assert [len(t) for t in tokens] == limits
    seq2seq.beam_size = 2
    assert [len(t) for t in seq2seq.transcribe_tokens(out)] == limits


def test_greedy_with_cache_equals_beam_of_one(seq2seq) -> None:
    wavs, lens = _audio(2)
    out = seq2seq(wavs, lens)
    limits = seq2seq.limits(out.durations)
    args = (seq2seq.decoder, out.enc, seq2seq.prefix, seq2seq.eot, limits)
    assert greedy_decode(*args) == beam_decode(*args, beam_size=1)


def test_transcribe_normalises_hypotheses(seq2seq, monkeypatch) -> None:
    monkeypatch.setattr(seq2seq, "transcribe_tokens", lambda out: [[0], [1]])
    monkeypatch.setattr(
        seq2seq.tokenizer, "decode", lambda toks, **k: "Call 336, now!" if toks == [0] else "25%"
    )
    out = seq2seq(*_audio(2))
    assert seq2seq.transcribe(out, ["call three three six now", "twenty five percent"]) == [
        "call three three six now",
        "twenty five percent",
    ]


def test_ctc_head_shapes_and_round_trip(sb_whisper, tmp_path) -> None:
    enc_only = copy.deepcopy(sb_whisper)
    model = WhisperCTC(WhisperBackbone(enc_only, audio_ctx=100), vocab_size=30)
    wavs, lens = _audio(2, seconds=1.0)
    log_probs, out_lens = model(wavs, lens)
    assert log_probs.shape == (2, 100, 30)
    torch.testing.assert_close(out_lens, lens * 0.5)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(2, 100))
    save_ctc_head(model, tmp_path, {"whisper": "x"})
    other = WhisperCTC(WhisperBackbone(enc_only, audio_ctx=100), vocab_size=30)
    assert load_ctc_head(other, tmp_path)["whisper"] == "x"
    assert torch.equal(other(wavs, lens)[0], log_probs)
    with pytest.raises(ValueError, match="does not fit"):
        load_ctc_head(WhisperCTC(WhisperBackbone(enc_only), vocab_size=31), tmp_path)


def _outputs(model: WhisperSeq2Seq, wavs, lens) -> torch.Tensor:
    out = model(wavs, lens)
    inputs, _ = model.targets(["open the door", "zero one"], torch.device("cpu"))
    return model.decoder(input_ids=inputs, encoder_hidden_states=out.enc).last_hidden_state


@pytest.mark.parametrize("targets", [["*.fc1", "*.fc2"], ["*.fc1", "*.fc2", "*.q_proj"]])
def test_ssvdo_on_whisper_ffns_starts_exactly_and_merges_exactly(sb_whisper, targets) -> None:
    """SSVD-O on encoder+decoder fc1 (outer side) and fc2: same function at init; after the
    adapter parameters move, merging reproduces the adapted function and leaves plain Linears."""
    torch.manual_seed(0)
    model = WhisperSeq2Seq(WhisperBackbone(copy.deepcopy(sb_whisper), audio_ctx=50)).eval()
    wavs, lens = _audio(2, seconds=1.0)
    with torch.no_grad():
        before = _outputs(model, wavs, lens)
        summaries = inject_ssvdo(model, targets, inner_ratio=0.5, outer_rank=4)
        names = {s.name for s in summaries}
        assert {n for n in names if n.endswith("fc1") or n.endswith("fc2")} == {
            f"backbone.whisper.model.{side}.layers.0.{fc}"
            for side in ("encoder", "decoder")
            for fc in ("fc1", "fc2")
        }
        fc1 = next(s for s in summaries if s.name.endswith("encoder.layers.0.fc1"))
        fc2 = next(s for s in summaries if s.name.endswith("encoder.layers.0.fc2"))
        assert fc1.outer_rank == 4 and fc2.outer_rank == 0  # fc2 is wide: no outer side
        torch.testing.assert_close(_outputs(model, wavs, lens), before, rtol=0, atol=1e-6)
        for _, layer in ssvdo_layers(model):
            for p in layer.parameters():
                if p.requires_grad:
                    p.add_(0.05 * torch.randn_like(p))
        adapted = _outputs(model, wavs, lens)
        assert (adapted - before).abs().max() > 1e-3
        merge_ssvdo(model)
        assert not list(ssvdo_layers(model))
        torch.testing.assert_close(_outputs(model, wavs, lens), adapted, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_docstring_examples_run() -> None:
    import doctest

    from cl_ssvdo.asr.whisper import ctc_head, model, seq2seq, tiny

    for module in (model, seq2seq, ctc_head, tiny):
        result = doctest.testmod(module, raise_on_error=False)
        assert result.attempted > 0 and result.failed == 0, module.__name__
