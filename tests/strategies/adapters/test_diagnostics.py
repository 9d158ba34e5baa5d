"""What moved, per layer and experience, as the adapter plugins record and publish it; and the
schedule's per-group, per-experience ``subspace`` reaching the injected layers."""

from __future__ import annotations

import pytest
import torch
from avalanche.core import SupervisedPlugin

from cl_ssvdo.ssvdo import SSVDOLinear
from cl_ssvdo.ssvdo.diagnostics import choose_subspace, weight_change
from strategies.adapters.peft import BaselinePlugin
from strategies.adapters.ssvdo import SSVDOPlugin
from tests.strategies.plugin_support import (
    make_strategy,
    one_thread,  # noqa: F401 (autouse fixture)
    small_benchmark,
    state_copy,
)

FFN = ("*ffn.0", "*ffn.3")
SCHEDULE = {
    "groups": {"up": "*ffn.0", "down": "*ffn.3"},
    "per_experience": [
        {
            "up": {"inner_ratio": 0.25, "outer_rank": 4, "subspace": "tail"},
            "down": {"inner_ratio": 0.25},
        },
        {
            "up": {"inner_ratio": 0.25, "outer_rank": 4, "subspace": "auto"},
            "down": {"inner_ratio": 0.25},
        },
        {
            "up": {"inner_ratio": 0.25, "outer_rank": 4},
            "down": {"inner_ratio": 0.25, "subspace": "tail"},
        },
    ],
}


class SubspaceProbe(SupervisedPlugin):
    """The ``subspace`` of every injected SSVD-O layer, per experience (put after the adapter)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, str]] = []

    def before_training_exp(self, strategy, **kwargs) -> None:
        self.seen.append(
            {n: m.subspace for n, m in strategy.model.named_modules() if isinstance(m, SSVDOLinear)}
        )


def test_ssvdo_records_what_moved_and_the_scheduled_subspace(
    tiny_stream, ci_model, char_tokenizer
) -> None:
    bench = small_benchmark(tiny_stream)
    plugin = SSVDOPlugin(SCHEDULE, targets=FFN, subspace="top")
    probe = SubspaceProbe()
    strategy = make_strategy(ci_model, char_tokenizer, [plugin, probe], lr=5e-3)
    states = [state_copy(ci_model)]
    for exp in bench.train_stream[:2]:
        strategy.train(exp)
        states.append(state_copy(strategy.model))

    # the subspace: the schedule's per group and experience, "auto" decided on the weight
    for i, rec in enumerate(plugin.records):
        for layer in rec.layers:
            if layer.group == "down":
                want = "top"  # no subspace in the schedule: the plugin's
            elif i == 0:
                want = "tail"
            else:
                want = choose_subspace(states[1][layer.name + ".weight"], layer.k)
            assert layer.subspace == probe.seen[i][layer.name] == want, (i, layer.name)

    for i, rec in enumerate(plugin.records):
        for layer in rec.layers:
            d = layer.diagnostics
            w = layer.name + ".weight"
            assert d["weight_change"] == pytest.approx(
                weight_change(states[i][w], states[i + 1][w])
            )
            assert d["weight_change_total"] == pytest.approx(
                weight_change(states[0][w], states[i + 1][w])
            )
            assert d["weight_change"] > 0.0 and d["inner_angle"] > 0.0 and d["inner_dev"] > 0.0
            assert d["sv_shift"] > 0.0
            if layer.l:  # up-projections rotate their top left singular vectors
                assert 0.0 < d["outer_angle_mean"] <= d["outer_angle_max"] <= torch.pi / 2 + 1e-6
            else:
                assert d["outer_angle_max"] == 0.0
        stacked = torch.cat([states[i + 1][r.name + ".weight"].flatten() for r in rec.layers])
        start = torch.cat([states[i][r.name + ".weight"].flatten() for r in rec.layers])
        assert rec.weight_change == pytest.approx(weight_change(start, stacked))
    assert plugin.records[0].weight_change == pytest.approx(plugin.records[0].weight_change_total)

    # what the loggers receive: per layer at step = experience (1-based), and the total
    values = strategy.evaluator.get_all_metrics()
    name = plugin.records[1].layers[0].name
    steps, inner = values[f"diag/inner_angle/{name}"]
    assert steps == [1, 2]
    assert inner == [r.layers[0].diagnostics["inner_angle"] for r in plugin.records]
    assert values["ssvdo/weight_change/exp001"][1] == [plugin.records[1].weight_change]


@pytest.mark.parametrize("method", ["lora", "full"])
def test_baselines_record_the_same_weight_change(
    method, tiny_stream, ci_model, char_tokenizer
) -> None:
    bench = small_benchmark(tiny_stream)
    kwargs = {"rank": 2} if method == "lora" else {}
    plugin = BaselinePlugin(method, targets=FFN, **kwargs)
    strategy = make_strategy(ci_model, char_tokenizer, [plugin], lr=5e-3)
    before = state_copy(ci_model)
    strategy.train(bench.train_stream[0])
    after = state_copy(strategy.model)
    rec = plugin.records[0]
    assert len(rec.layers) == 8
    for layer in rec.layers:
        w = layer.name + ".weight"
        assert layer.diagnostics["weight_change"] == pytest.approx(
            weight_change(before[w], after[w])
        )
        assert layer.diagnostics["weight_change"] > 0.0
        assert "inner_angle" not in layer.diagnostics  # rotation figures are SSVD-O's only
    assert rec.weight_change > 0.0
    assert f"diag/weight_change/{rec.layers[0].name}" in strategy.evaluator.get_last_metrics()
