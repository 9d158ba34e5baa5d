"""Glob injection into a real SpeechBrain Transformer encoder, exact merge, and error cases."""

import pytest
import torch
from speechbrain.lobes.models.transformer.Transformer import TransformerEncoder
from torch import nn

from cl_ssvdo import LayerSummary, SSVDOLinear, basis_drift, inject_ssvdo, merge_ssvdo, ssvdo_layers

F64 = torch.float64
D_MODEL, D_FFN = 8, 32


@pytest.fixture
def encoder() -> nn.Module:
    torch.manual_seed(0)
    return (
        TransformerEncoder(num_layers=2, nhead=2, d_ffn=D_FFN, d_model=D_MODEL, dropout=0.0)
        .double()
        .eval()
    )


@pytest.fixture
def inputs() -> torch.Tensor:
    return torch.randn(2, 5, D_MODEL, generator=torch.Generator().manual_seed(1), dtype=F64)


def _randomise(model: nn.Module, scale: float = 0.2) -> None:
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for _, layer in ssvdo_layers(model):
            for param in layer.trainable_parameters:
                param.copy_(scale * torch.randn(param.shape, generator=gen, dtype=param.dtype))


def test_feed_forward_injection_summary_and_identity(encoder, inputs) -> None:
    # Frozen first: torch's attention takes its fused path only when no parameter needs grad,
    # which changes the rounding; the comparison must use the same kernel on both sides.
    encoder.requires_grad_(False)
    before = encoder(inputs)[0]
    summaries = inject_ssvdo(encoder, ["*ffn.0", "*ffn.3"], inner_ratio=0.5, outer_rank=3)
    names = [s.name for s in summaries]
    assert names == [f"layers.{i}.pos_ffn.ffn.{j}" for i in range(2) for j in (0, 3)]
    up, down = summaries[0], summaries[1]
    assert up == LayerSummary(
        "layers.0.pos_ffn.ffn.0", D_FFN, D_MODEL, 4, 3, 6 + 4 + (D_FFN - D_MODEL) * 3
    )
    assert down == LayerSummary("layers.0.pos_ffn.ffn.3", D_MODEL, D_FFN, 4, 0, 6 + 4)
    assert all(isinstance(encoder.get_submodule(n), SSVDOLinear) for n in names)
    trainable = sum(p.numel() for p in encoder.parameters() if p.requires_grad)
    assert trainable == sum(s.trainable for s in summaries)
    assert torch.equal(encoder(inputs)[0], before)


def test_training_step_moves_only_the_adapters(encoder, inputs) -> None:
    inject_ssvdo(encoder, ["*ffn.0", "*ffn.3"], inner_ratio=0.5, outer_rank=2)
    frozen = {n: p.detach().clone() for n, p in encoder.named_parameters() if not p.requires_grad}
    opt = torch.optim.SGD([p for p in encoder.parameters() if p.requires_grad], lr=0.1)
    before = encoder(inputs)[0].detach()
    target = torch.randn(before.shape, generator=torch.Generator().manual_seed(3), dtype=F64)
    (encoder(inputs)[0] - target).pow(2).sum().backward()
    opt.step()
    assert not torch.allclose(encoder(inputs)[0], before)
    assert all(torch.equal(p, frozen[n]) for n, p in encoder.named_parameters() if n in frozen)
    for _, layer in ssvdo_layers(encoder):
        drift = basis_drift(layer)
        assert drift["U"] < 1e-12 and drift["V"] < 1e-12


def test_per_pattern_settings_and_first_match_wins(encoder) -> None:
    summaries = inject_ssvdo(
        encoder,
        {
            "layers.0.*ffn.0": {"inner_ratio": 0.25, "outer_rank": 5},
            "*ffn.0": {"outer_rank": 1},
            "*ffn.3": {},
        },
        inner_ratio=0.5,
        tau=1e-2,
    )
    by_name = {s.name: s for s in summaries}
    assert (
        by_name["layers.0.pos_ffn.ffn.0"].inner_rank,
        by_name["layers.0.pos_ffn.ffn.0"].outer_rank,
    ) == (2, 5)
    assert (
        by_name["layers.1.pos_ffn.ffn.0"].inner_rank,
        by_name["layers.1.pos_ffn.ffn.0"].outer_rank,
    ) == (4, 1)
    assert encoder.get_submodule("layers.1.pos_ffn.ffn.3").tau == 1e-2


def test_merge_is_exact_and_removes_adapters_then_reinjects(encoder, inputs) -> None:
    inject_ssvdo(encoder, ["*ffn.0", "*ffn.3"], inner_ratio=0.5, outer_rank=3)
    _randomise(encoder)
    adapted = encoder(inputs)[0].detach()
    expected_weights = {
        n: layer.merged_weight().detach().clone() for n, layer in ssvdo_layers(encoder)
    }
    merge_ssvdo(encoder)
    assert not list(ssvdo_layers(encoder))
    for name, weight in expected_weights.items():
        module = encoder.get_submodule(name)
        assert type(module) is nn.Linear and torch.equal(module.weight, weight)
    assert torch.allclose(encoder(inputs)[0], adapted, atol=1e-12)
    # Next experience: decompose the merged weights afresh.
    inject_ssvdo(encoder, ["*ffn.0"], inner_ratio=0.25)
    layer = encoder.get_submodule("layers.0.pos_ffn.ffn.0")
    s = torch.linalg.svdvals(expected_weights["layers.0.pos_ffn.ffn.0"])
    assert torch.allclose(layer.svd_s, s[: layer.num_components], atol=1e-12)
    assert torch.allclose(encoder(inputs)[0], adapted, atol=1e-12)


def test_attention_internals_are_never_wrapped(encoder) -> None:
    with pytest.raises(ValueError, match=r"'\*out_proj'.*MultiheadAttention"):
        inject_ssvdo(encoder, ["*out_proj"], inner_ratio=0.5)
    # A pattern matching both: the attention one is skipped with a warning.
    host = nn.Module()
    host.att = nn.MultiheadAttention(8, 2)
    host.out_proj = nn.Linear(8, 8)
    with pytest.warns(UserWarning, match="att.out_proj"):
        summaries = inject_ssvdo(host, ["*out_proj"], inner_ratio=0.5)
    assert [s.name for s in summaries] == ["out_proj"]
    assert type(host.att.out_proj) is not SSVDOLinear


def test_errors_name_the_pattern_and_leave_the_model_untouched(encoder) -> None:
    with pytest.raises(ValueError, match=r"'\*ffn\.9'"):
        inject_ssvdo(encoder, ["*ffn.0", "*ffn.9"], inner_ratio=0.5)
    with pytest.raises(
        TypeError, match=r"'\*pos_ffn'.*layers\.0\.pos_ffn.*PositionalwiseFeedForward"
    ):
        inject_ssvdo(encoder, ["*ffn.0", "*pos_ffn"], inner_ratio=0.5)
    assert not list(ssvdo_layers(encoder))
    with pytest.raises(ValueError, match=r"inner_ratio.*'\*ffn\.0'|'\*ffn\.0'.*inner_ratio"):
        inject_ssvdo(encoder, {"*ffn.0": {"inner_ratio": 2.0}})
    with pytest.raises(ValueError, match="outer_rank"):
        inject_ssvdo(encoder, ["*ffn.0"], inner_ratio=0.5, outer_rank=-1)
    with pytest.raises(ValueError, match="tau"):
        inject_ssvdo(encoder, ["*ffn.0"], inner_ratio=0.5, tau=0.0)
    with pytest.raises(ValueError, match="inner_ratio is required"):
        inject_ssvdo(encoder, ["*ffn.0"])
    with pytest.raises(ValueError, match="unknown setting"):
        inject_ssvdo(encoder, {"*ffn.0": {"inner_ratio": 0.5, "rank": 3}})
    assert not list(ssvdo_layers(encoder))
    inject_ssvdo(encoder, ["*ffn.0"], inner_ratio=0.5)
    with pytest.raises(ValueError, match="already an SSVDOLinear"):
        inject_ssvdo(encoder, ["*ffn.0"], inner_ratio=0.5)


def test_freeze_base_false_keeps_other_parameters_trainable(encoder) -> None:
    inject_ssvdo(encoder, ["*ffn.3"], inner_ratio=0.5, freeze_base=False)
    assert encoder.get_submodule("norm.norm").weight.requires_grad
    assert not encoder.get_submodule("layers.0.pos_ffn.ffn.3").base_layer.weight.requires_grad
