"""Continual-learning plugins for CTC: the maths on small modules, the composition rules, and
every strategy end to end on the tiny stream (alone and with adapters)."""

from __future__ import annotations

import copy

import pytest
import torch
from avalanche.training.plugins import EWCPlugin as AvalancheEWC
from avalanche.training.plugins import ReplayPlugin
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cl_ssvdo.baselines import apply_adapter
from cl_ssvdo.data import collate_speech
from cl_ssvdo.schedule import BudgetSchedule
from cl_ssvdo.ssvdo import SSVDOLinear, inject_ssvdo, merge_ssvdo
from strategies.adapters.peft import BaselinePlugin, FullFTPlugin
from strategies.adapters.ssvdo import SSVDOPlugin, SSVDPlugin
from strategies.cl import (
    CTCAGEMPlugin,
    CTCReplayPlugin,
    EWCPlugin,
    IncompatiblePlugins,
    LwFPlugin,
    MASPlugin,
    SIPlugin,
    SynapticIntelligencePlugin,
    WeightAveragingPlugin,
    average_into,
    check_plugins,
    effective_weights,
    fisher_diagonal,
    mas_importance,
    masked_kd_loss,
    project_gradient,
    quadratic_penalty,
)
from strategies.cl._ctc import frame_mask
from tests.strategies.plugin_support import (
    make_strategy,
    one_thread,  # noqa: F401 (autouse fixture)
    small_benchmark,
    state_copy,
    train_stream,
)

FFN = ("*ffn.0", "*ffn.3")
SCHEDULE = BudgetSchedule.constant({"inner_ratio": 0.25, "outer_rank": 4})


def ssvdo() -> SSVDOPlugin:
    return SSVDOPlugin(SCHEDULE, targets=FFN)


def small_net(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 24), nn.Tanh(), nn.Linear(24, 6))


# ----------------------------------------------------------------------------- penalties


tensors = st.integers(min_value=1, max_value=12).flatmap(
    lambda n: st.tuples(
        *[st.lists(st.floats(-3, 3, allow_nan=False, width=32), min_size=n, max_size=n)] * 3
    )
)


@settings(max_examples=50, deadline=None)
@given(data=tensors)
def test_quadratic_penalty_zero_at_anchor_positive_away(data) -> None:
    w, a, imp = (torch.tensor(x) for x in data)
    imp = imp.abs()
    assert float(quadratic_penalty({"w": a.clone()}, {"w": a}, {"w": imp})) == 0.0
    value = quadratic_penalty({"w": w}, {"w": a}, {"w": imp})
    assert float(value) == pytest.approx(float((imp * (w - a) ** 2).sum()), rel=1e-5, abs=1e-6)
    # positive wherever a term is representable (tiny imp * (w - a)^2 underflows to 0 in float32)
    if bool((imp * (w - a) ** 2 > 0).any()):
        assert float(value) > 0


@pytest.mark.parametrize("cls", [EWCPlugin, MASPlugin])
def test_penalty_plugins_on_a_plain_module(cls) -> None:
    net = small_net()
    plugin = cls(penalty_weight=1.0)
    importance = {n: torch.rand_like(p) + 0.1 for n, p in net.named_parameters()}
    plugin.add_entry(0, net, importance)
    assert float(plugin.penalty(net)) == 0.0  # at the anchor
    with torch.no_grad():
        net[0].weight[0, 0] += 0.5
    value = plugin.penalty(net)
    assert float(value) == pytest.approx(float(importance["0.weight"][0, 0]) * 0.25, rel=1e-5)
    value.backward()
    grad = net[0].weight.grad
    assert grad[0, 0] == pytest.approx(2 * 0.5 * float(importance["0.weight"][0, 0]), rel=1e-5)
    assert int((grad != 0).sum()) == 1


def test_penalty_on_merged_weights_through_adapters() -> None:
    """EWC/MAS with an adapter: the penalty reads the adapter's merged weight W'(theta), is ~0 at
    injection (W' = W0) and positive once the adapter moves, with gradients into the adapter."""
    net = small_net()
    plugin = EWCPlugin(penalty_weight=1.0)
    plugin.add_entry(0, net, {n: torch.ones_like(p) for n, p in net.named_parameters()})
    inject_ssvdo(net, ["0", "2"], inner_ratio=0.5, outer_rank=2)
    assert float(plugin.penalty(net)) < 1e-10
    layer = net[0]
    with torch.no_grad():
        layer.inner_skew.normal_(0, 0.1)
        layer.outer_L.normal_(0, 0.01)
    eff = effective_weights(net, ["0.weight", "0.bias", "2.weight"])
    assert torch.equal(eff["0.weight"], layer.merged_weight())
    value = plugin.penalty(net)
    assert float(value) > 1e-6
    value.backward()
    assert layer.inner_skew.grad.abs().sum() > 0 and layer.outer_L.grad.abs().sum() > 0
    merged_w = layer.merged_weight().detach()
    merge_ssvdo(net)
    assert torch.allclose(net[0].weight, merged_w)
    assert float(plugin.penalty(net)) == 0.0  # frozen after merge: nothing can change


@pytest.mark.parametrize("method", ["lora", "dora", "pissa"])
def test_effective_weights_of_peft_layers_by_probing(method: str) -> None:
    net = small_net()
    handle = apply_adapter(net, method, ["0", "2"], rank=2)
    with torch.no_grad():
        for p in net.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    eff = effective_weights(net, ["0.weight", "0.bias", "2.weight", "2.bias"])
    assert eff["0.weight"].requires_grad
    eff = {k: v.detach() for k, v in eff.items()}
    handle.merge()
    for name, value in eff.items():
        torch.testing.assert_close(
            value, dict(net.named_parameters())[name].detach(), rtol=1e-5, atol=1e-6
        )


# ----------------------------------------------------------------------------- LwF


@settings(max_examples=40, deadline=None)
@given(
    b=st.integers(1, 3),
    t=st.integers(1, 7),
    v=st.integers(2, 6),
    temp=st.floats(0.5, 4.0),
    seed=st.integers(0, 10_000),
)
def test_kd_loss_zero_iff_equal_and_masked(b, t, v, temp, seed) -> None:
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(b, t, v, generator=g).log_softmax(-1)
    lens = torch.rand(b, generator=g).clamp_min(0.2)
    lens[0] = 1.0
    assert float(masked_kd_loss(student, student.clone(), lens, temp)) == 0.0
    teacher = torch.randn(b, t, v, generator=g).log_softmax(-1)
    loss = masked_kd_loss(student, teacher, lens, temp)
    assert float(loss) >= 0.0
    # frames past each length do not count
    mask = frame_mask(lens, t)
    noisy = torch.where(mask[..., None], teacher, torch.randn(b, t, v, generator=g).log_softmax(-1))
    assert float(masked_kd_loss(student, noisy, lens, temp)) == pytest.approx(
        float(loss), rel=1e-5, abs=1e-7
    )


def test_kd_loss_gradient_reaches_student_only() -> None:
    student = torch.randn(2, 5, 4, requires_grad=True)
    teacher = torch.randn(2, 5, 4, requires_grad=True)
    masked_kd_loss(
        student.log_softmax(-1), teacher.log_softmax(-1), torch.tensor([1.0, 0.4]), 2.0
    ).backward()
    assert student.grad.abs().sum() > 0 and teacher.grad is None
    assert student.grad[1, 2:].abs().sum() == 0  # padded frames (round(0.4 * 5) = 2 valid)
    with pytest.raises(ValueError, match="shapes differ"):
        masked_kd_loss(torch.zeros(1, 2, 3), torch.zeros(1, 3, 3), torch.ones(1))


# ----------------------------------------------------------------------------- A-GEM, averaging


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-5, 5, allow_nan=False, width=32), min_size=6, max_size=6))
def test_agem_projection(values) -> None:
    g, ref = torch.tensor(values[:3]), torch.tensor(values[3:])
    out = project_gradient(g, ref)
    if float(torch.dot(g, ref)) >= 0 or float(torch.dot(ref, ref)) == 0:
        assert out is g
    else:
        assert abs(float(torch.dot(out, ref))) <= 1e-4 * (1 + float(g.norm() * ref.norm()))
        # the smallest change that removes the conflict: out - g is parallel to ref
        diff = out - g
        assert torch.allclose(diff, (diff @ ref) / (ref @ ref) * ref, atol=1e-5)


def test_weight_averaging_maths() -> None:
    net = small_net(0)
    prev = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    new = {k: v.clone() for k, v in net.state_dict().items()}
    average_into(net, prev, 0.25)
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, 0.25 * prev[k] + 0.75 * new[k])
    average_into(net, {k: v.clone() for k, v in net.state_dict().items()}, 0.3)  # equal: bit-exact
    plugin = WeightAveragingPlugin("running")
    weights = []
    for _ in range(3):
        weights.append(plugin.weight())
        plugin.models_averaged += 1
    assert weights == pytest.approx([1 / 2, 2 / 3, 3 / 4])
    with pytest.raises(RuntimeError, match="put WeightAveragingPlugin after the adapter plugin"):
        inject_ssvdo(net, ["0"], inner_ratio=0.5)
        average_into(net, prev, 0.5)
    with pytest.raises(ValueError, match="previous_weight"):
        WeightAveragingPlugin(1.5)


# ----------------------------------------------------------------------------- composition rules


@pytest.mark.parametrize(
    ("plugins", "reason"),
    [
        (lambda: [ssvdo(), BaselinePlugin("lora", rank=2)], "several adapter plugins"),
        (lambda: [ssvdo(), SynapticIntelligencePlugin(0.1)], "SI accumulates importance"),
        (
            lambda: [BaselinePlugin("lora", rank=2), SynapticIntelligencePlugin(0.1)],
            "SI accumulates importance",
        ),
        (
            lambda: [WeightAveragingPlugin(), ssvdo()],
            "WeightAveragingPlugin is listed before SSVDOPlugin",
        ),
        (
            lambda: [AvalancheEWC(1.0)],
            r"avalanche EWCPlugin assumes classification.*use strategies.cl.EWCPlugin",
        ),
        (lambda: [EWCPlugin(1.0), EWCPlugin(2.0)], "2 instances of EWCPlugin"),
        (
            lambda: [FullFTPlugin(), SynapticIntelligencePlugin(0.1)],
            "list it first or use strategies.cl.SIPlugin",
        ),
        (
            lambda: [SIPlugin(0.1), SynapticIntelligencePlugin(0.1)],
            "2 instances of SynapticIntelligencePlugin",
        ),
    ],
)
def test_incompatible_combinations_fail_with_a_reason(plugins, reason) -> None:
    with pytest.raises(IncompatiblePlugins, match=reason):
        check_plugins(plugins())


def test_compatible_combinations() -> None:
    check_plugins(
        [
            ssvdo(),
            CTCReplayPlugin(mem_size=8),
            EWCPlugin(1.0),
            LwFPlugin(),
            CTCAGEMPlugin(4, 2),
            WeightAveragingPlugin(),
        ]
    )
    check_plugins([FullFTPlugin(), SIPlugin(0.1), MASPlugin(1.0)])
    check_plugins([SynapticIntelligencePlugin(0.1), FullFTPlugin()])
    check_plugins([SynapticIntelligencePlugin(0.1), ReplayPlugin(mem_size=8)])


def test_incompatible_combination_fails_before_training(
    tiny_stream, ci_model, char_tokenizer
) -> None:
    bench = small_benchmark(tiny_stream)
    before = state_copy(ci_model)
    strategy = make_strategy(ci_model, char_tokenizer, [ssvdo(), SynapticIntelligencePlugin(0.1)])
    with pytest.raises(IncompatiblePlugins, match="SynapticIntelligencePlugin with SSVDOPlugin"):
        strategy.train(bench.train_stream[0])
    assert all(torch.equal(before[k], v) for k, v in state_copy(ci_model).items())


# ----------------------------------------------------------------------------- importances on real batches


def test_fisher_and_mas_from_real_ctc_batches(tiny_stream, ci_model, char_tokenizer) -> None:
    bench = small_benchmark(tiny_stream)
    strategy = make_strategy(ci_model, char_tokenizer, [])
    dataset = bench.train_stream[0].dataset
    ci_model.train()
    ci_model.ctc_head.requires_grad_(False)
    flags = {n: p.requires_grad for n, p in ci_model.named_parameters()}
    before = state_copy(ci_model)
    fisher = fisher_diagonal(strategy, dataset, max_batches=1)
    # equals the squared gradient of the CTC loss of the first real batch (eval mode)
    batch = collate_speech([dataset[i] for i in range(strategy.train_mb_size)])
    model = copy.deepcopy(ci_model).eval().requires_grad_(True)
    loss = strategy._criterion(model(batch.wavs, batch.wav_lens), batch.words)
    loss.backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(fisher[name], p.grad**2, rtol=1e-4, atol=1e-10)
    assert fisher["ctc_head.weight"].sum() > 0  # frozen parameters get an importance too
    omega = mas_importance(strategy, dataset, max_batches=2)
    assert (
        all(bool((o >= 0).all()) for o in omega.values())
        and sum(float(o.sum()) for o in omega.values()) > 0
    )
    # no side effects: weights, buffers, requires_grad flags, train mode, no grads left
    assert all(torch.equal(before[k], v) for k, v in state_copy(ci_model).items())
    assert {n: p.requires_grad for n, p in ci_model.named_parameters()} == flags
    assert ci_model.training and all(p.grad is None for p in ci_model.parameters())


# ----------------------------------------------------------------------------- end to end


class BatchProbe:
    """Collects the utterance ids of every training batch, per experience (a plugin)."""

    def __init__(self) -> None:
        self.ids: list[list[str]] = []
        self.merged_state = []

    def before_training_exp(self, strategy, **kwargs) -> None:
        self.ids.append([])

    def after_training_iteration(self, strategy, **kwargs) -> None:
        self.ids[-1].extend(strategy.mb_ids)

    def after_training_exp(self, strategy, **kwargs) -> None:
        self.merged_state.append(state_copy(strategy.model))


CL_PLUGINS = {
    "naive": lambda: [],
    "replay": lambda: [CTCReplayPlugin(mem_size=8, batch_size_mem=2)],
    "ewc": lambda: [EWCPlugin(penalty_weight=1e4, max_batches=1)],
    "mas": lambda: [MASPlugin(penalty_weight=1e3, max_batches=1)],
    "lwf": lambda: [LwFPlugin(alpha=1.0, temperature=2.0)],
    "agem": lambda: [CTCAGEMPlugin(patterns_per_experience=4, sample_size=2)],
    "wa": lambda: [WeightAveragingPlugin(previous_weight=0.5)],
}


@pytest.mark.parametrize("name", list(CL_PLUGINS))
def test_each_cl_plugin_with_ssvdo_three_experiences(
    tiny_stream, ci_model, char_tokenizer, name
) -> None:
    bench = small_benchmark(tiny_stream)
    adapter = ssvdo()
    probe = BatchProbe()
    cl = CL_PLUGINS[name]()
    # order: adapter first, then the probe (sees the merged model), then the CL plugins
    strategy = make_strategy(ci_model, char_tokenizer, [adapter, probe, *cl], lr=5e-3)
    start = state_copy(ci_model)
    train_stream(strategy, bench)
    assert len(adapter.records) == 3
    assert not any(isinstance(m, SSVDOLinear) for m in strategy.model.modules())
    end = state_copy(strategy.model)
    assert any(not torch.equal(start[k], end[k]) for k in start)
    plugin = cl[0] if cl else None
    if name == "replay":
        own = [set(bench.train_stream[i].dataset[j][2] for j in range(8)) for i in range(3)]
        assert set(probe.ids[0]) <= own[0]
        assert set(probe.ids[2]) & (own[0] | own[1])  # replayed utterances in the last experience
        assert plugin.storage_policy.buffer.collate_fn is collate_speech
    elif name in ("ewc", "mas"):
        assert len(plugin.entries) == (2 if name == "ewc" else 1)
        assert plugin.last_penalty > 0  # the adapter moved the merged weights off the anchor
    elif name == "lwf":
        assert plugin.last_loss > 0
    elif name == "agem":
        assert len(plugin.buffers) == 3 and plugin.reference is not None
    elif name == "wa":  # the exact averages: test_weight_averaging_is_exact
        assert plugin.weights_used == [0.5, 0.5, 0.5]


def test_weight_averaging_is_exact(tiny_stream, ci_model, char_tokenizer) -> None:
    bench = small_benchmark(tiny_stream)
    probe = BatchProbe()
    wa = WeightAveragingPlugin(previous_weight="running")
    strategy = make_strategy(ci_model, char_tokenizer, [ssvdo(), probe, wa], lr=5e-3)
    prev = state_copy(ci_model)
    for i, exp in enumerate(bench.train_stream):
        strategy.train(exp)
        w = (i + 1) / (i + 2)
        merged = probe.merged_state[i]
        now = state_copy(strategy.model)
        for k in now:
            if now[k].is_floating_point():
                torch.testing.assert_close(now[k], torch.lerp(merged[k], prev[k], w))
        prev = now
    assert wa.weights_used == pytest.approx([1 / 2, 2 / 3, 3 / 4])


def test_si_as_shipped_with_full_finetuning(tiny_stream, ci_model, char_tokenizer) -> None:
    bench = small_benchmark(tiny_stream)
    si = SIPlugin(si_lambda=0.1)
    strategy = make_strategy(ci_model, char_tokenizer, [FullFTPlugin(targets=FFN), si], lr=5e-3)
    train_stream(strategy, bench)
    importance = si.ewc_data[1]
    assert importance and all(
        k.endswith(("ffn.0.weight", "ffn.0.bias", "ffn.3.weight", "ffn.3.bias")) for k in importance
    )


ZERO_LR = {
    "naive": lambda: [],
    "ssvdo": lambda: [ssvdo()],
    "ssvdo+replay": lambda: [ssvdo(), CTCReplayPlugin(mem_size=8, batch_size_mem=2)],
    "ssvdo+ewc": lambda: [ssvdo(), EWCPlugin(1e4, max_batches=1)],
    "ssvdo+mas": lambda: [ssvdo(), MASPlugin(1e3, max_batches=1)],
    "ssvdo+lwf": lambda: [ssvdo(), LwFPlugin()],
    "ssvdo+agem": lambda: [ssvdo(), CTCAGEMPlugin(4, 2)],
    "ssvdo+wa": lambda: [ssvdo(), WeightAveragingPlugin("running")],
    "si": lambda: [SynapticIntelligencePlugin(0.1)],
    "ewc": lambda: [EWCPlugin(1e4, max_batches=1)],
    "lora+ewc": lambda: [
        BaselinePlugin("lora", targets=FFN, rank=2),
        EWCPlugin(1e4, max_batches=1),
    ],
    "dora": lambda: [BaselinePlugin("dora", targets=FFN, rank=2)],
    "pissa": lambda: [BaselinePlugin("pissa", targets=FFN, rank=2)],
    "mica": lambda: [BaselinePlugin("mica", targets=FFN, rank=2)],
    "corda": lambda: [BaselinePlugin("corda", targets=FFN, rank=2, calibration_batches=1)],
    "osf": lambda: [BaselinePlugin("osf", targets=FFN, rank=2)],
    "ssvd": lambda: [SSVDPlugin(0.25, targets=FFN)],
    "full+si": lambda: [FullFTPlugin(targets=FFN), SIPlugin(0.1)],
    "si(avalanche)+full": lambda: [SynapticIntelligencePlugin(0.1), FullFTPlugin(targets=FFN)],
}
# Merges that recompute the weight from factors in float32 round: peft's DoRA (norm rescaling),
# PiSSA and CorDA (residual + B A) change weights by ~1e-7; every other strategy is bit-exact
# (MiCA: B @ 0; OSF: W + (U S V - U0 S0 V0) with unchanged factors).
INEXACT = {"dora", "pissa", "corda"}


@pytest.mark.parametrize("name", list(ZERO_LR))
def test_zero_learning_rate_leaves_the_model_unchanged(
    tiny_stream, ci_model, char_tokenizer, name
) -> None:
    """Parameters *and* buffers compared (the ci model has no batch norm; its input
    normalisation is per utterance), so any hidden side effect of a plugin would show."""
    bench = small_benchmark(tiny_stream)
    strategy = make_strategy(ci_model, char_tokenizer, ZERO_LR[name](), lr=0.0)
    before = state_copy(ci_model)
    flags = {n: p.requires_grad for n, p in ci_model.named_parameters()}
    train_stream(strategy, bench)
    after = state_copy(strategy.model)
    assert after.keys() == before.keys()
    for k in before:
        if name in INEXACT:
            torch.testing.assert_close(after[k], before[k], rtol=1e-5, atol=1e-6)
        else:
            assert torch.equal(after[k], before[k]), k
    assert {n: p.requires_grad for n, p in strategy.model.named_parameters()} == flags
