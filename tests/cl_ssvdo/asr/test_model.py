"""CTCASR presets: sizes, layer names, shapes, gradients, augmentation, input checks."""

from __future__ import annotations

import fnmatch

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cl_ssvdo.asr.model import CTCASR, ConvSubsampling, build_asr, count_parameters
from cl_ssvdo.asr.presets import PRESETS, ASRConfig, resolve_preset
from cl_ssvdo.data import collate_speech

V = 29


@pytest.mark.parametrize(
    ("preset", "low", "high"),
    [("ci", 0.45e6, 0.6e6), ("small", 1.9e6, 2.2e6), ("medium", 7e6, 10e6), ("large", 10e6, 30e6)],
)
def test_preset_sizes(preset: str, low: float, high: float) -> None:
    assert low < count_parameters(build_asr(preset, V)) < high


def test_small_is_the_measured_recipe() -> None:
    cfg = resolve_preset("small")
    assert (cfg.d_model, cfg.num_layers, cfg.d_ffn, cfg.nhead, cfg.kernel_size) == (
        144,
        4,
        576,
        4,
        15,
    )
    assert cfg.attention_type == "regularMHA" and cfg.frontend_channels == (32, 32)
    assert count_parameters(build_asr("small", V)) == 2_039_997  # 2.04M, as in the design note


@pytest.mark.parametrize("preset", ["ci", "small"])
def test_feed_forward_layers_are_named_for_adapters(preset: str) -> None:
    model = build_asr(preset, V)
    cfg = model.config
    linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    up = {n: m for n, m in linears.items() if fnmatch.fnmatch(n, "*ffn.0")}
    down = {n: m for n, m in linears.items() if fnmatch.fnmatch(n, "*ffn.3")}
    assert len(up) == len(down) == 2 * cfg.num_layers  # macaron: two FFNs per conformer block
    assert all((m.in_features, m.out_features) == (cfg.d_model, cfg.d_ffn) for m in up.values())
    assert all((m.in_features, m.out_features) == (cfg.d_ffn, cfg.d_model) for m in down.values())
    assert "transformer.encoder.layers.0.ffn_module1.1.ffn.0" in up


def test_transformer_encoder_option() -> None:
    model = build_asr({"base": "ci", "arch": "transformer"}, V).eval()
    assert any(n.endswith("pos_ffn.ffn.0") for n, _ in model.named_modules())
    log_probs, _ = model(torch.randn(1, 8000), torch.ones(1))
    assert log_probs.shape[-1] == V


def test_crdnn_option() -> None:
    model = build_asr("crdnn", V).eval()
    log_probs, out_lens = model(torch.randn(2, 16000), torch.tensor([1.0, 0.6]))
    assert log_probs.shape[0] == 2 and log_probs.shape[-1] == V
    assert torch.equal(out_lens, torch.tensor([1.0, 0.6]))


def test_forward_shapes_and_log_probs(ci_model: CTCASR) -> None:
    ci_model.eval()
    wavs, lens = torch.randn(3, 24000), torch.tensor([1.0, 0.5, 0.25])
    log_probs, out_lens = ci_model(wavs, lens)
    # 24000 samples -> 151 Fbank frames -> 38 after two stride-2 convolutions
    assert log_probs.shape == (3, 38, V)
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(3, 38), atol=1e-5)
    # exact output frames of each utterance alone: 6000 samples -> 38 Fbank frames -> 19 -> 10
    assert (out_lens * 38).round().tolist() == [38, 19, 10]


@pytest.fixture(scope="module")
def eval_models() -> dict[str, CTCASR]:
    torch.manual_seed(0)
    return {
        "conformer": build_asr("ci", V).eval(),
        "transformer": build_asr({"base": "ci", "arch": "transformer"}, V).eval(),
    }


@given(
    st.lists(st.integers(1600, 24000), min_size=2, max_size=4),
    st.sampled_from(["conformer", "transformer"]),
)
@settings(max_examples=12, deadline=None)
def test_outputs_do_not_depend_on_the_batch(eval_models, lengths: list[int], arch: str) -> None:
    """Each utterance decodes the same alone or padded in any batch (exact frame counts too)."""
    model = eval_models[arch]
    gen = torch.Generator().manual_seed(sum(lengths))
    wavs = [0.1 * torch.randn(n, generator=gen) for n in lengths]
    batch, rel, _, _ = collate_speech([(w, "", str(i)) for i, w in enumerate(wavs)])
    with torch.no_grad():
        log_probs, out_lens = model(batch, rel)
        for i, w in enumerate(wavs):
            alone, alone_lens = model(w.unsqueeze(0), torch.ones(1))
            frames = alone.shape[1]
            assert alone_lens.item() == 1.0
            assert round(out_lens[i].item() * log_probs.shape[1]) == frames
            assert torch.allclose(log_probs[i, :frames], alone[0], atol=1e-4)


def test_every_trainable_parameter_gets_a_gradient(ci_model: CTCASR) -> None:
    ci_model.train()
    log_probs, _ = ci_model(torch.randn(2, 12000), torch.tensor([1.0, 0.7]))
    log_probs.mean().backward()
    missing = [n for n, p in ci_model.named_parameters() if p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in ci_model.parameters())


def test_conv_subsampling_output_size() -> None:
    sub = ConvSubsampling(80, (32, 16, 8))
    out, lens = sub(torch.randn(2, 100, 80), torch.tensor([100, 9]))
    assert out.shape == (2, 13, sub.out_dim) and sub.out_dim == 8 * 10
    assert lens.tolist() == [13, 2] and out[1, 2:].abs().sum() == 0


def test_augmentation_only_in_training() -> None:
    torch.manual_seed(0)
    model = build_asr({"base": "ci", "augment": {"speeds": [90, 110], "prob": 1.0}}, V)
    wavs = torch.randn(2, 16000)
    model.eval()
    a, _ = model(wavs, torch.ones(2))
    b, _ = model(wavs, torch.ones(2))
    assert torch.equal(a, b)
    model.train()
    lengths = {model(wavs, torch.ones(2))[0].shape[1] for _ in range(6)}
    assert lengths <= {23, 28} and len(lengths) >= 1  # 110 % speed or 90 %
    assert resolve_preset("ci").augment is None and resolve_preset("medium").augment is not None


@pytest.mark.parametrize(
    ("preset", "match"),
    [
        ("tiny", "unknown ASR preset"),
        ({"base": "ci", "d_modle": 3}, "d_modle"),
        ({"d_model": 100, "nhead": 3}, "divisible"),
        ({"arch": "lstm"}, "preset.arch"),
        ({"augment": {"speed": [90]}}, "augment: unknown keys"),
    ],
)
def test_bad_presets_raise_naming_the_field(preset, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_asr(preset, V)


def test_bad_inputs_raise(ci_model: CTCASR) -> None:
    with pytest.raises(ValueError, match="wavs"):
        ci_model(torch.randn(2, 1, 100), torch.ones(2))
    with pytest.raises(ValueError, match="wav_lens"):
        ci_model(torch.randn(2, 1000), torch.ones(3))
    with pytest.raises(ValueError, match="relative"):
        ci_model(torch.randn(2, 1000), torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="vocab_size"):
        build_asr("ci", 1)


def test_preset_dict_round_trip() -> None:
    for name, cfg in PRESETS.items():
        assert resolve_preset(dict(cfg.to_dict())) == cfg, name
    assert isinstance(resolve_preset({"base": "small"}), ASRConfig)
