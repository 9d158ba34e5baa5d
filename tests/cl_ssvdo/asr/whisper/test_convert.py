"""CTranslate2 -> HF Whisper import: exact round trip against CTranslate2's own converter.

A tiny random ``WhisperForConditionalGeneration`` (d_model 16, 2+2 layers, the real tiny.en
vocabulary of 51864 tokens) is saved as an HF folder, converted by
``ctranslate2.converters.TransformersConverter`` (float32 and float16), read back by our importer
and compared tensor by tensor; the exported folder must load in transformers and SpeechBrain.
"""

from __future__ import annotations

import functools
import shutil
import struct
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cl_ssvdo.asr.whisper.convert import ct2_to_hf_state_dict, split_fused
from cl_ssvdo.asr.whisper.ct2 import CT2Model, read_model_bin, write_model_bin
from cl_ssvdo.asr.whisper.hf_folder import build_ct2_tokenizer
from cl_ssvdo.asr.whisper.registry import MODELS, export_model

ctranslate2 = pytest.importorskip("ctranslate2")

VOCAB = 51864


@functools.cache
def tiny_folders(root: Path) -> dict[str, Path]:
    """``{"hf", "ct2_f32", "ct2_f16"}`` folders of one tiny random Whisper (built once)."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    hf = root / "hf"
    tokenizer = build_ct2_tokenizer(MODELS["whisper-tiny.en"].folder(), VOCAB)
    config = WhisperConfig(
        vocab_size=VOCAB,
        num_mel_bins=80,
        d_model=16,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=24,
        max_source_positions=1500,
        max_target_positions=64,
        decoder_start_token_id=50257,
        begin_suppress_tokens=[220, 50256],
    )
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    with torch.no_grad():  # random everything (biases, norms): a zero or one would hide a swap
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    model.save_pretrained(hf)
    tokenizer.save_pretrained(hf)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(hf)
    out = {"hf": hf}
    for q, name in ((None, "ct2_f32"), ("float16", "ct2_f16")):
        conv = ctranslate2.converters.TransformersConverter(str(hf), copy_files=["tokenizer.json"])
        conv.convert(str(root / name), quantization=q, force=True)
        out[name] = root / name
    return out


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tiny_folders(tmp_path_factory.getbasetemp() / "tiny_whisper")


def _hf_state(folder: Path) -> dict[str, torch.Tensor]:
    from transformers import WhisperForConditionalGeneration

    return WhisperForConditionalGeneration.from_pretrained(folder).state_dict()


def test_round_trip_float32_is_exact(tiny):
    ours = ct2_to_hf_state_dict(read_model_bin(tiny["ct2_f32"] / "model.bin"))
    ref = _hf_state(tiny["hf"])
    assert set(ours) == set(ref)
    for k, v in ref.items():
        assert ours[k].dtype == torch.float32
        assert torch.equal(ours[k], v), k


def test_round_trip_float16_is_exact_rounding(tiny):
    ct2 = read_model_bin(tiny["ct2_f16"] / "model.bin")
    assert ct2.variables["decoder/embeddings/weight"].dtype == torch.float16
    ours = ct2_to_hf_state_dict(ct2)
    for k, v in _hf_state(tiny["hf"]).items():
        assert torch.equal(ours[k], v.half().float()), k


def test_projection_is_tied_to_embedding(tiny):
    ours = ct2_to_hf_state_dict(read_model_bin(tiny["ct2_f32"] / "model.bin"))
    assert ours["proj_out.weight"] is ours["model.decoder.embed_tokens.weight"]


def test_exported_folder_is_the_same_function_in_transformers(tiny, tmp_path):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    out = export_model(tiny["ct2_f32"], tmp_path / "export")
    ours = WhisperForConditionalGeneration.from_pretrained(out).eval()
    ref = WhisperForConditionalGeneration.from_pretrained(tiny["hf"]).eval()
    assert ours.proj_out.weight.data_ptr() == ours.model.decoder.embed_tokens.weight.data_ptr()
    mel = torch.randn(1, 80, 3000, generator=torch.Generator().manual_seed(1))
    dec = torch.tensor([[50257, 50362, 383, 2068]])
    with torch.no_grad():
        a = ours(input_features=mel, decoder_input_ids=dec).logits
        b = ref(input_features=mel, decoder_input_ids=dec).logits
    assert a.shape == (1, 4, VOCAB)
    assert torch.equal(a, b)

    proc = WhisperProcessor.from_pretrained(out)
    ids = proc.tokenizer("The quick brown fox.").input_ids
    assert ids[:2] == [50257, 50362] and ids[-1] == 50256
    assert proc.tokenizer.decode(ids, skip_special_tokens=True) == "The quick brown fox."
    assert proc.tokenizer.convert_ids_to_tokens(VOCAB - 1) == "<|30.00|>"
    assert proc.feature_extractor.feature_size == 80


def test_exported_folder_loads_in_speechbrain_whisper_asr(tiny, tmp_path, monkeypatch):
    from speechbrain.inference.ASR import WhisperASR

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = export_model(tiny["ct2_f16"], tmp_path / "export")
    asr = WhisperASR.from_hparams(
        source=str(out), savedir=str(out), overrides={"whisper_source": str(out)}
    )
    sb = asr.mods.whisper.model.state_dict()
    ref = _hf_state(tiny["hf"])
    for k, v in sb.items():
        assert torch.equal(v, ref[f"model.{k}"].half().float()), k
    wav = torch.randn(1, 8000, generator=torch.Generator().manual_seed(2)) * 0.1
    tokens = torch.tensor([[50257, 50362]])
    _, logits, _ = asr.mods.whisper(wav, tokens)
    assert logits.shape == (1, 2, VOCAB) and torch.isfinite(logits).all()


def test_hf_folder_is_accepted_by_path(tiny, tmp_path):
    out = export_model(tiny["hf"], tmp_path / "from_hf")
    assert (out / "hyperparams.yaml").is_file()
    ref, ours = _hf_state(tiny["hf"]), _hf_state(out)
    assert all(torch.equal(ours[k], v) for k, v in ref.items())


def test_vocabulary_txt_and_json_agree(tiny, tmp_path):
    """faster-whisper folders carry vocabulary.txt, CTranslate2 >= 4 writes vocabulary.json."""
    import json

    src = tmp_path / "txt"
    shutil.copytree(tiny["ct2_f32"], src)
    tokens = json.loads((src / "vocabulary.json").read_text(encoding="utf-8"))
    (src / "vocabulary.json").unlink()
    (src / "vocabulary.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    a = build_ct2_tokenizer(src, VOCAB)
    b = build_ct2_tokenizer(tiny["ct2_f32"], VOCAB)
    assert a.get_vocab() == b.get_vocab()


_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.int8, torch.int16, torch.int32]


@settings(max_examples=25, deadline=None)
@given(
    shapes=st.lists(st.lists(st.integers(0, 4), max_size=3), min_size=1, max_size=5),
    dtypes=st.lists(st.sampled_from(_DTYPES), min_size=5, max_size=5),
    seed=st.integers(0, 2**16),
)
def test_model_bin_write_read_round_trip(tmp_path_factory, shapes, dtypes, seed):
    g = torch.Generator().manual_seed(seed)
    variables = {}
    for i, (shape, dtype) in enumerate(zip(shapes, dtypes, strict=False)):
        t = torch.randn(shape, generator=g) * 50
        variables[f"layer_{i}/w"] = t.to(dtype)
    aliases = {"alias/w": "layer_0/w"}
    path = tmp_path_factory.mktemp("bin") / "model.bin"
    write_model_bin(path, CT2Model("WhisperSpec", 3, variables, aliases))
    back = read_model_bin(path)
    assert (back.spec, back.revision, back.aliases) == ("WhisperSpec", 3, aliases)
    assert list(back.variables) == list(variables)
    for k, v in variables.items():
        assert back.variables[k].dtype == v.dtype and torch.equal(back.variables[k], v)
    assert back.get("alias/w") is back.variables["layer_0/w"]


@given(d=st.integers(1, 8), parts=st.sampled_from([2, 3]), cols=st.integers(1, 4))
def test_split_fused_inverts_concatenation(d, parts, cols):
    blocks = [torch.randn(d, cols) for _ in range(parts)]
    got = split_fused(torch.cat(blocks), parts)
    assert all(torch.equal(a, b) for a, b in zip(got, blocks, strict=True))


def test_real_package_header_matches_the_documented_layout():
    """The shipped tiny.en: v6, WhisperSpec rev 3, 148 variables, projection tied (no copy)."""
    path = MODELS["whisper-tiny.en"].folder() / "model.bin"
    with open(path, "rb") as fh:
        version, n = struct.unpack("<IH", fh.read(6))
        assert (version, fh.read(n)) == (6, b"WhisperSpec\0")
    m = read_model_bin(path)
    assert (m.revision, len(m.variables)) == (3, 148)
    assert m.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    sd = ct2_to_hf_state_dict(m)
    n_params = sum(v.numel() for k, v in sd.items() if k != "proj_out.weight")
    assert n_params == 37_760_256


def test_docstring_examples_run():
    import doctest

    from cl_ssvdo.asr.whisper import convert, ct2, hf_folder, registry
    from experiments import models_cli

    for module in (ct2, convert, hf_folder, registry, models_cli):
        result = doctest.testmod(module, raise_on_error=False)
        assert result.attempted > 0 and result.failed == 0, module.__name__
