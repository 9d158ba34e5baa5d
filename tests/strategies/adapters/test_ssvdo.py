"""SSVDOPlugin on the tiny stream and the ci model: inject per experience with the schedule's
settings, train only the adapter, merge exactly, leave a plain model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cl_ssvdo import budget
from cl_ssvdo.schedule import BudgetSchedule, ScheduleError
from cl_ssvdo.ssvdo import SSVDOLinear
from strategies.adapters.ssvdo import SSVDOPlugin
from tests.strategies.plugin_support import (
    AdapterProbe,
    make_strategy,
    one_thread,  # noqa: F401 (autouse fixture)
    small_benchmark,
    state_copy,
)

SCHEDULE = {
    "groups": {"up": "*ffn.0", "down": "*ffn.3"},
    "per_experience": [
        {"up": {"inner_ratio": 0.5, "outer_rank": 4}, "down": {"inner_ratio": 0.25}},
        {"up": {"inner_ratio": 0.125, "outer_rank": 16}, "down": {"inner_ratio": 0.5}},
        {"up": {"budget": 4000, "inner_share": 0.3}, "down": {"budget": 1500, "inner_share": 1.0}},
    ],
}
FFN = ("*ffn.0", "*ffn.3")


def ffn_linears(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if n.endswith(("ffn.0", "ffn.3"))]


def test_three_experiences_inject_train_merge(tiny_stream, ci_model, char_tokenizer) -> None:
    bench = small_benchmark(tiny_stream)
    plugin = SSVDOPlugin(SCHEDULE, targets=FFN)
    probe = AdapterProbe()
    strategy = make_strategy(ci_model, char_tokenizer, [plugin, probe], lr=5e-3)
    names = [n for n, _ in ci_model.named_parameters()]
    flags = {n: p.requires_grad for n, p in ci_model.named_parameters()}
    layers = [(n, m.out_features, m.in_features) for n, m in ffn_linears(ci_model)]
    expected = [plugin.schedule.resolve(i, layers) for i in range(3)]

    states = [state_copy(ci_model)]
    for exp in bench.train_stream:
        strategy.train(exp)
        model = strategy.model
        # a plain model again: no adapter module, same parameter names and flags
        assert not any(isinstance(m, SSVDOLinear) for m in model.modules())
        assert all(type(m) is nn.Linear for _, m in ffn_linears(model))
        assert [n for n, _ in model.named_parameters()] == names
        assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
        states.append(state_copy(model))

    for i in range(3):
        rec = plugin.records[i]
        want = expected[i]
        # trainable counts equal the schedule: per layer, in total, and what the optimizer got
        assert [(r.name, r.k, r.l, r.trainable) for r in rec.layers] == [
            (s.name, s.inner_rank, s.outer_rank, s.trainable) for s in want
        ]
        assert (
            rec.total_trainable
            == sum(s.trainable for s in want)
            == probe.trainable[i]
            == probe.optimized[i]
        )
        assert all(
            r.trainable
            == budget.ssvdo_params(r.out_features, r.in_features, s.inner_ratio, s.outer_rank)
            for r, s in zip(rec.layers, want, strict=True)
        )
        assert probe.adapter_modules[i] == len(want) == 8
        # the merged weights are exactly the adapters' W' (captured after the last update)
        for name, w_prime in probe.merged[i].items():
            assert torch.equal(states[i + 1][name + ".weight"], w_prime)
        # only the target layers' weights changed; they did change (the adapter trained)
        changed = {k for k in states[i] if not torch.equal(states[i][k], states[i + 1][k])}
        assert changed and changed <= {n + ".weight" for n, _, _ in layers}
        # the adapted bases stay orthonormal (cayley + Cholesky rotation: exact up to rounding)
        assert 0.0 <= rec.drift_u < 1e-4 and 0.0 <= rec.drift_v < 1e-4
    assert plugin.records[2].settings == {
        "up": {"budget": 4000, "inner_share": 0.3},
        "down": {"budget": 1500, "inner_share": 1.0},
    }
    assert sum(r.trainable for r in plugin.records[2].layers if r.group == "up") <= 4000

    # the records also reach Avalanche's evaluator (what loggers receive)
    last = strategy.evaluator.get_last_metrics()
    assert last["ssvdo/trainable/exp001"] == plugin.records[1].total_trainable
    assert "ssvdo/drift_u/exp002" in last


@pytest.mark.parametrize(
    ("options", "outer_ranks"),
    [({"subspace": "tail", "rotation": "linear"}, {4}), ({"outer": False}, {0})],
)
def test_variants_one_experience(
    tiny_stream, ci_model, char_tokenizer, options, outer_ranks
) -> None:
    bench = small_benchmark(tiny_stream)
    plugin = SSVDOPlugin(
        BudgetSchedule.constant({"inner_ratio": 0.25, "outer_rank": 4}),
        targets=("*ffn.0",),
        **options,
    )
    strategy = make_strategy(ci_model, char_tokenizer, [plugin], lr=5e-3)
    before = state_copy(ci_model)
    strategy.train(bench.train_stream[0])
    rec = plugin.records[0]
    assert {r.l for r in rec.layers} == outer_ranks and {r.k for r in rec.layers} == {24}
    assert rec.method == ("ssvd" if options.get("outer") is False else "ssvdo")
    after = state_copy(strategy.model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.endswith("ffn.0.weight") for k in changed)
    if options.get("rotation") == "linear":
        assert rec.drift_v > 0  # G = I + 2K is only near-orthogonal


def test_bad_schedule_fails_before_training(tiny_stream, ci_model, char_tokenizer) -> None:
    bench = small_benchmark(tiny_stream)
    short = BudgetSchedule.per_experience([{"inner_ratio": 0.5}, {"inner_ratio": 0.5}])
    strategy = make_strategy(ci_model, char_tokenizer, [SSVDOPlugin(short, targets=FFN)])
    before = state_copy(ci_model)
    with pytest.raises(
        ScheduleError, match="the schedule has 2 entries but the stream has 3 experiences"
    ):
        strategy.train(bench.train_stream[0])
    assert all(torch.equal(before[k], v) for k, v in state_copy(strategy.model).items())
    assert not any(isinstance(m, SSVDOLinear) for m in strategy.model.modules())
    with pytest.raises(ValueError, match="pattern 'nothing.here' matches no module"):
        make_strategy(
            ci_model, char_tokenizer, [SSVDOPlugin(short, targets=("nothing.here",))]
        ).train(bench.train_stream[0])
    with pytest.raises(ValueError, match="rotation"):
        SSVDOPlugin(short, rotation="givens")
