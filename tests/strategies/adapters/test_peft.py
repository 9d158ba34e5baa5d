"""Baseline plugins (LoRA, DoRA, PiSSA, SSVD, full FT): same lifecycle as SSVD-O, budgets
matched to an SSVD-O schedule (closest count not exceeding it)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cl_ssvdo import budget
from cl_ssvdo.schedule import BudgetSchedule
from strategies.adapters.peft import BaselinePlugin, FullFTPlugin
from strategies.adapters.ssvdo import SSVDOPlugin, SSVDPlugin
from tests.strategies.plugin_support import (
    AdapterProbe,
    make_strategy,
    one_thread,  # noqa: F401 (autouse fixture)
    small_benchmark,
    state_copy,
    train_stream,
)

FFN = ("*ffn.0", "*ffn.3")
# ci model FFN layers: 4 x (384, 96) and 4 x (96, 384)
SHAPES = [(384, 96), (96, 384)] * 4
MATCHABLE = BudgetSchedule.constant({"inner_ratio": 0.5, "outer_rank": 32})  # 46272 parameters


def _is_plain(model: nn.Module, names: list[str]) -> bool:
    ffn = [m for n, m in model.named_modules() if n.endswith(("ffn.0", "ffn.3"))]
    return (
        [n for n, _ in model.named_parameters()] == names
        and all(type(m) is nn.Linear for m in ffn)
        and not hasattr(model, "peft_config")
    )


@pytest.mark.parametrize("method", ["lora", "dora", "pissa"])
def test_lora_family_matched_within_5_percent(
    tiny_stream, ci_model, char_tokenizer, method
) -> None:
    bench = small_benchmark(tiny_stream)
    plugin = BaselinePlugin(method, targets=FFN, match=MATCHABLE, max_shortfall=0.05)
    probe = AdapterProbe()
    strategy = make_strategy(ci_model, char_tokenizer, [plugin, probe], lr=5e-3)
    names = [n for n, _ in ci_model.named_parameters()]
    before = state_copy(ci_model)
    ssvdo = sum(budget.ssvdo_params(m, n, 0.5, 32) for m, n in SHAPES)
    train_stream(strategy, bench)
    assert _is_plain(strategy.model, names)
    for i, rec in enumerate(plugin.records):
        assert rec.budget == ssvdo == 46272
        count = sum(
            budget.method_params(
                plugin.adapter_method, lr.out_features, lr.in_features, rank=lr.rank
            )
            for lr in rec.layers
        )
        assert rec.total_trainable == count == probe.trainable[i] == probe.optimized[i]
        # closest not exceeding: one more rank on any layer would exceed the budget
        assert count <= ssvdo < count + min(m + n for m, n in SHAPES)
        assert 0.95 <= rec.settings["matched_ratio"] <= 1.0
    after = state_copy(strategy.model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.endswith(("ffn.0.weight", "ffn.3.weight")) for k in changed)


def test_coarse_match_is_reported_or_rejected(tiny_stream, ci_model, char_tokenizer) -> None:
    """Per-layer ranks move in steps of one layer's m + n = 480 here: a budget just above rank 1
    everywhere (3840) can only be matched coarsely; the ratio is reported and max_shortfall
    rejects it up front."""
    bench = small_benchmark(tiny_stream)
    small = BudgetSchedule.constant({"budget": 4300, "inner_share": 1.0})
    plugin = BaselinePlugin("lora", targets=FFN, match=small)
    ranks, b = plugin.matched_rank(ci_model, 0)
    assert ranks == [1] * 8 and 3840 + 480 > b > 3840 / 0.95
    strict = BaselinePlugin("lora", targets=FFN, match=small, max_shortfall=0.05)
    strategy = make_strategy(ci_model, char_tokenizer, [strict])
    with pytest.raises(
        ValueError, match=r"lora: the closest per-layer ranks .* give 3840 parameters"
    ):
        strategy.train(bench.train_stream[0])
    assert not hasattr(ci_model, "peft_config")


@pytest.mark.parametrize("kind", ["ssvd_matched", "full"])
def test_ssvd_and_full(tiny_stream, ci_model, char_tokenizer, kind) -> None:
    bench = small_benchmark(tiny_stream)
    ssvdo = SSVDOPlugin(
        BudgetSchedule.per_experience(
            [
                {"inner_ratio": 0.5, "outer_rank": 4},
                {"inner_ratio": 0.25, "outer_rank": 8},
                {"budget": 5000, "inner_share": 0.5},
            ]
        ),
        targets=FFN,
    )
    plugin = (
        SSVDPlugin(match=ssvdo, targets=FFN)
        if kind == "ssvd_matched"
        else FullFTPlugin(targets=FFN)
    )
    probe = AdapterProbe()
    strategy = make_strategy(ci_model, char_tokenizer, [plugin, probe], lr=5e-3)
    names = [n for n, _ in ci_model.named_parameters()]
    layers = [
        (n, m.out_features, m.in_features)
        for n, m in ci_model.named_modules()
        if n.endswith(("ffn.0", "ffn.3"))
    ]
    train_stream(strategy, bench)
    assert _is_plain(strategy.model, names)
    assert len(plugin.records) == 3
    for i, rec in enumerate(plugin.records):
        assert rec.total_trainable == probe.trainable[i] == probe.optimized[i]
        if kind == "full":
            assert rec.total_trainable == sum(
                budget.full_params(m, n, bias=True) for m, n in SHAPES
            )
        else:
            target = ssvdo.schedule.total(i, layers)
            assert rec.budget == target and all(r.l == 0 for r in rec.layers)
            assert 0.95 * target <= rec.total_trainable <= target


def test_argument_errors() -> None:
    with pytest.raises(ValueError, match="give exactly one of rank= or match="):
        BaselinePlugin("lora")
    with pytest.raises(ValueError, match="give exactly one of rank= or match="):
        BaselinePlugin("lora", rank=2, match=MATCHABLE)
    with pytest.raises(ValueError, match="method: expected one of"):
        BaselinePlugin("adapterfusion", rank=2)
    with pytest.raises(ValueError, match="rank: must be an int >= 1"):
        BaselinePlugin("dora", rank=0)
    with pytest.raises(ValueError, match="exactly one of inner_ratio=, schedule= or match="):
        SSVDPlugin()
    with pytest.raises(TypeError, match="match: expected an SSVD-O BudgetSchedule"):
        BaselinePlugin("lora", match=3)
