"""Pretrained folders: SpeechBrain EncoderASR loads and transcribes them offline; our loader goes
through the same path, for our folders and for a user's own SpeechBrain folder."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import soundfile as sf
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.encoder import CTCTextEncoder
from speechbrain.inference.ASR import EncoderASR
from torch import nn

from cl_ssvdo.asr import (
    CTCASR,
    CharTokenizer,
    ExternalEncoderCTC,
    build_asr,
    export_pretrained,
    greedy_decode,
    load_pretrained,
)
from cl_ssvdo.asr.evaluate import UtteranceScore


def espeak_clip(text: str, path: Path) -> Path:
    """A 22.05 kHz espeak-ng recording of ``text``, written back with soundfile."""
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", "en-us+m1", "-w", str(raw), text], check=True)
    data, rate = sf.read(raw, dtype="float32")
    sf.write(path, data, rate)
    return path


def test_encoder_asr_transcribes_a_generated_clip(pretrained_ci: Path, tmp_path: Path) -> None:
    folder = tmp_path / "moved"
    shutil.copytree(pretrained_ci, folder)  # the folder is relocatable: no absolute paths
    text = (folder / "hyperparams.yaml").read_text()
    assert "speechbrain/" not in text and "huggingface" not in text
    asr = EncoderASR.from_hparams(source=str(folder), savedir=str(folder))
    clip = espeak_clip("turn on the kitchen light", tmp_path / "clip.wav")
    said = asr.transcribe_file(str(clip))
    assert isinstance(said, str)
    # the same audio through our own loader and greedy decoder gives the same words
    model, tokenizer, preset = load_pretrained(folder)
    wav = asr.load_audio(str(clip))
    log_probs, out_lens = model(wav.unsqueeze(0), torch.ones(1))
    assert greedy_decode(log_probs, out_lens, tokenizer) == [" ".join(said.split())]
    assert preset is not None and preset.d_model == 96


def test_encoder_asr_recognises_training_audio(pretrained_ci: Path, tiny_stream) -> None:
    from cl_ssvdo.data import read_manifest

    rows = read_manifest(tiny_stream.manifest("adult", "train"))[:6]
    asr = EncoderASR.from_hparams(source=str(pretrained_ci), savedir=str(pretrained_ci))
    scores = [
        UtteranceScore.score(r.ID, r.wrd, asr.transcribe_file(str(tiny_stream.root / r.wav)))
        for r in rows
    ]
    chars = sum(s.char_edits for s in scores) / sum(s.ref_chars for s in scores)
    assert chars < 0.5, [(s.ref, s.hyp) for s in scores]


def test_load_pretrained_round_trip(
    ci_model: CTCASR, char_tokenizer: CharTokenizer, tmp_path
) -> None:
    export_pretrained(ci_model, char_tokenizer, tmp_path)
    model, tokenizer, preset = load_pretrained(tmp_path)
    assert isinstance(model, CTCASR) and preset == ci_model.config
    assert tokenizer.charset == char_tokenizer.charset
    assert all(p.requires_grad for p in model.parameters())
    for (k, a), (k2, b) in zip(
        ci_model.state_dict().items(), model.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(a, b)


def test_export_refuses_models_that_do_not_match_their_preset(
    ci_model: CTCASR, char_tokenizer: CharTokenizer, tmp_path
) -> None:
    ci_model.ctc_head = nn.Sequential(nn.Linear(96, 29))  # e.g. a wrapped layer
    with pytest.raises(ValueError, match="merge or remove adapters"):
        export_pretrained(ci_model, char_tokenizer, tmp_path)
    with pytest.raises(ValueError, match="classes"):
        export_pretrained(build_asr("ci", 5), char_tokenizer, tmp_path)
    with pytest.raises(FileNotFoundError, match="hyperparams.yaml"):
        load_pretrained(tmp_path / "empty")


USER_YAML = """\
sample_rate: 16000
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: 40
enc: !new:speechbrain.nnet.linear.Linear
    input_size: 40
    n_neurons: 5
log_softmax: !new:speechbrain.nnet.activations.Softmax
    apply_log: True
encoder: !new:speechbrain.nnet.containers.LengthsCapableSequential
    compute_features: !ref <compute_features>
    enc: !ref <enc>
    log_softmax: !ref <log_softmax>
tokenizer: !new:speechbrain.dataio.encoder.CTCTextEncoder
decoding_function: !name:speechbrain.decoders.ctc_greedy_decode
    blank_id: 0
modules:
    encoder: !ref <encoder>
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        asr: !ref <encoder>
        tokenizer: !ref <tokenizer>
"""


def test_a_users_own_speechbrain_folder_loads(tmp_path) -> None:
    """A folder in SpeechBrain's own recipe style (no cl_ssvdo classes in it)."""
    (tmp_path / "hyperparams.yaml").write_text(USER_YAML)
    hp = load_hyperpyyaml(USER_YAML)
    torch.nn.init.normal_(hp["enc"].w.weight)
    torch.save(hp["encoder"].state_dict(), tmp_path / "asr.ckpt")
    enc = CTCTextEncoder()
    enc.insert_blank(index=0)
    enc.update_from_iterable("ab c", sequence_input=False)
    enc.save(tmp_path / "tokenizer.ckpt")

    model, tokenizer, preset = load_pretrained(tmp_path, trust_folder=True)
    assert isinstance(model, ExternalEncoderCTC) and preset is None
    assert isinstance(tokenizer, CharTokenizer) and tokenizer.charset == "ab c"
    wavs = torch.randn(2, 8000)
    log_probs, out_lens = model(wavs, torch.tensor([1.0, 0.5]))
    assert log_probs.shape == (2, 51, 5) and torch.equal(out_lens, torch.tensor([1.0, 0.5]))
    expected = hp["encoder"](wavs, torch.tensor([1.0, 0.5]))
    assert torch.allclose(log_probs, expected, atol=1e-5)  # the saved weights were loaded
    hyps = greedy_decode(log_probs, out_lens, tokenizer)
    assert len(hyps) == 2 and all(set(h) <= set("ab c") for h in hyps)
