"""Other pretrained families through the same door (issue 15 item 5), on tiny random configs.

HF wav2vec2 / HuBERT / WavLM folders saved locally load through SpeechBrain's integrations with a
CTC head; user SpeechBrain folders of the EncoderASR, EncoderDecoderASR and WhisperASR
interfaces load through ``load_speechbrain_asr``. Nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cl_ssvdo.asr.pretrained import (
    export_pretrained,
    load_speechbrain_asr,
    speechbrain_interface,
)
from cl_ssvdo.asr.ssl_ctc import hf_encoder_family, load_hf_encoder_ctc

VOCAB = 29


def _save_ssl(folder: Path, family: str) -> dict[str, torch.Tensor]:
    import transformers as tf

    common = dict(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(8, 8),
        conv_kernel=(10, 3),
        conv_stride=(5, 2),
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2,
        do_stable_layer_norm=True,
        feat_extract_norm="layer",
    )
    config_cls, model_cls = {
        "wav2vec2": (tf.Wav2Vec2Config, tf.Wav2Vec2Model),
        "hubert": (tf.HubertConfig, tf.HubertModel),
        "wavlm": (tf.WavLMConfig, tf.WavLMModel),
    }[family]
    torch.manual_seed(0)
    model = model_cls(config_cls(**common))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(folder)
    tf.Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(folder)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("family", ["wav2vec2", "hubert", "wavlm"])
def test_hf_ssl_encoder_with_ctc_head_loads_and_trains(tmp_path, family):
    saved = _save_ssl(tmp_path, family)
    assert hf_encoder_family(tmp_path) == family
    model = load_hf_encoder_ctc(tmp_path, VOCAB)
    loaded = model.encoder.model.state_dict()
    assert set(loaded) == set(saved)
    assert all(torch.equal(loaded[k], v) for k, v in saved.items())
    assert not any(p.requires_grad for p in model.encoder.model.feature_extractor.parameters())

    g = torch.Generator().manual_seed(1)
    wavs, lens = torch.randn(2, 4000, generator=g) * 0.1, torch.tensor([1.0, 0.6])
    log_probs, out_lens = model(wavs, lens)
    assert log_probs.shape[0] == 2 and log_probs.shape[2] == VOCAB
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(log_probs.shape[:2]), atol=1e-5)
    assert torch.equal(out_lens, lens)

    targets, target_lens = torch.tensor([[3, 4, 5], [6, 7, 0]]), torch.tensor([3, 2])
    model.train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)

    def loss() -> torch.Tensor:
        lp, ln = model(wavs, lens)
        t_lens = (ln * lp.shape[1]).round().long()
        return torch.nn.functional.ctc_loss(lp.transpose(0, 1), targets, t_lens, target_lens)

    first = loss()
    for _ in range(5):
        opt.zero_grad()
        value = loss()
        value.backward()
        opt.step()
    assert loss().item() < first.item()


def test_folder_of_another_family_is_named(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match=r"config\.json: model_type 'bert' is not one of"):
        load_hf_encoder_ctc(tmp_path, VOCAB)


_ENC_DEC_YAML = """\
sample_rate: 16000
vocab: 12
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: 20
enc: !new:speechbrain.nnet.linear.Linear
    input_size: 20
    n_neurons: 16
encoder: !new:speechbrain.nnet.containers.LengthsCapableSequential
    - !ref <compute_features>
    - !ref <enc>
emb: !new:speechbrain.nnet.embedding.Embedding
    num_embeddings: !ref <vocab>
    embedding_dim: 8
dec: !new:speechbrain.nnet.RNN.AttentionalRNNDecoder
    enc_dim: 16
    input_size: 8
    rnn_type: gru
    attn_type: content
    hidden_size: 16
    attn_dim: 16
    num_layers: 1
    dropout: 0.0
seq_lin: !new:speechbrain.nnet.linear.Linear
    input_size: 16
    n_neurons: !ref <vocab>
decoder: !new:speechbrain.decoders.seq2seq.S2SRNNGreedySearcher
    embedding: !ref <emb>
    decoder: !ref <dec>
    linear: !ref <seq_lin>
    bos_index: 1
    eos_index: 2
    min_decode_ratio: 0.0
    max_decode_ratio: 0.1
tokenizer: !new:sentencepiece.SentencePieceProcessor
model: !new:torch.nn.ModuleList
    - [!ref <enc>, !ref <emb>, !ref <dec>, !ref <seq_lin>]
modules:
    encoder: !ref <encoder>
    decoder: !ref <decoder>
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        model: !ref <model>
        tokenizer: !ref <tokenizer>
"""


def test_user_encoder_decoder_asr_folder(tmp_path):
    import sentencepiece as spm
    from hyperpyyaml import load_hyperpyyaml

    (tmp_path / "hyperparams.yaml").write_text(_ENC_DEC_YAML)
    (tmp_path / "text.txt").write_text("turn on the light\nopen the door\n" * 20)
    spm.SentencePieceTrainer.train(
        input=str(tmp_path / "text.txt"),
        model_prefix=str(tmp_path / "spm"),
        vocab_size=12,
        model_type="char",
        hard_vocab_limit=False,
        minloglevel=2,
    )
    (tmp_path / "spm.model").rename(tmp_path / "tokenizer.ckpt")
    torch.manual_seed(0)
    hp = load_hyperpyyaml(_ENC_DEC_YAML)
    saved = {k: v.clone() for k, v in hp["model"].state_dict().items()}
    torch.save(saved, tmp_path / "model.ckpt")

    assert speechbrain_interface(tmp_path) == "EncoderDecoderASR"
    torch.manual_seed(123)  # a different init: equality below proves the weights were loaded
    asr = load_speechbrain_asr(tmp_path)
    loaded = asr.hparams.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in saved.items())
    words, tokens = asr.transcribe_batch(torch.randn(2, 8000) * 0.1, torch.tensor([1.0, 0.5]))
    assert len(words) == 2 and all(isinstance(w, str) for w in words)


def test_our_encoder_asr_folder_and_an_exported_whisper_folder(tmp_path, tmp_path_factory):
    from cl_ssvdo.asr.model import build_asr
    from cl_ssvdo.asr.tokenizer import CharTokenizer
    from cl_ssvdo.asr.whisper.registry import export_model

    from .whisper.test_convert import tiny_folders

    ours = export_pretrained(build_asr("ci", VOCAB), CharTokenizer(), tmp_path / "ctc")
    assert speechbrain_interface(ours) == "EncoderASR"
    assert type(load_speechbrain_asr(ours)).__name__ == "EncoderASR"

    tiny = tiny_folders(tmp_path_factory.getbasetemp() / "tiny_whisper")
    whisper = export_model(tiny["ct2_f32"], tmp_path / "whisper")
    assert speechbrain_interface(whisper) == "WhisperASR"
    asr = load_speechbrain_asr(whisper)
    assert type(asr).__name__ == "WhisperASR"
    assert all(p.requires_grad for p in asr.mods.whisper.model.parameters())  # trainable


def test_folder_with_unknown_modules_is_named(tmp_path):
    (tmp_path / "hyperparams.yaml").write_text("modules:\n    lm: null\n")
    with pytest.raises(ValueError, match=r"hyperparams\.yaml: modules \['lm'\] fit none of"):
        speechbrain_interface(tmp_path)
