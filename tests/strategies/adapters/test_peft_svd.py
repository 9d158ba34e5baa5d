"""peft's SVD-based / continual-learning competitors as plugins (MiCA, CorDA, OSF): matched to the
SSVD-O count by their own trainable count, re-applied and merged per experience; CorDA's
calibration pass runs on the current experience's training batches."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cl_ssvdo import budget
from cl_ssvdo.baselines import corda_covariances
from cl_ssvdo.schedule import BudgetSchedule
from experiments.config import ConfigError, load_config, validate_config
from experiments.factory import build_plugins
from strategies.adapters.peft import BaselinePlugin
from tests.strategies.plugin_support import (
    BATCH,
    TRAIN_UTTERANCES,
    AdapterProbe,
    make_strategy,
    one_thread,  # noqa: F401 (autouse fixture)
    small_benchmark,
    state_copy,
    train_stream,
)

FFN = ("*ffn.0", "*ffn.3")
SHAPES = [(384, 96), (96, 384)] * 4  # the ci model's FFN layers
MATCHABLE = BudgetSchedule.constant({"inner_ratio": 0.5, "outer_rank": 32})  # 46272 parameters
STEP = {"mica": lambda m, n: n, "corda": lambda m, n: m + n, "osf": lambda m, n: m + n + 1}


@pytest.mark.parametrize("method", ["mica", "corda", "osf"])
def test_matched_to_the_ssvdo_count_trained_and_merged(
    tiny_stream, ci_model, char_tokenizer, method
) -> None:
    bench = small_benchmark(tiny_stream)
    extra = {"calibration_batches": 2} if method == "corda" else {}
    plugin = BaselinePlugin(method, targets=FFN, match=MATCHABLE, max_shortfall=0.05, **extra)
    probe = AdapterProbe()
    strategy = make_strategy(ci_model, char_tokenizer, [plugin, probe], lr=5e-3)
    names = [n for n, _ in ci_model.named_parameters()]
    before = state_copy(ci_model)
    ssvdo = sum(budget.ssvdo_params(m, n, 0.5, 32) for m, n in SHAPES)
    train_stream(strategy, bench)
    model = strategy.model
    assert [n for n, _ in model.named_parameters()] == names
    assert all(type(m) is nn.Linear for n, m in model.named_modules() if n.endswith(FFN[0][1:]))
    assert not hasattr(model, "peft_config") and len(plugin.records) == 3
    for i, rec in enumerate(plugin.records):
        assert rec.budget == ssvdo
        count = sum(
            budget.method_params(method, r.out_features, r.in_features, rank=r.rank)
            for r in rec.layers
        )
        # the trainable count is the method's own formula, what the optimizer sees, and the
        # closest to the SSVD-O count: one more rank on any layer would exceed it
        assert rec.total_trainable == count == probe.trainable[i] == probe.optimized[i]
        assert count <= ssvdo < count + min(STEP[method](m, n) for m, n in SHAPES)
        assert all(
            r.rank <= budget.rank_cap(method, r.out_features, r.in_features) for r in rec.layers
        )
        if method == "corda":
            assert rec.settings["calibration_batches"] == 2
            assert rec.settings["calibration_utterances"] == min(2 * BATCH, TRAIN_UTTERANCES)
            assert "calibration" not in rec.settings  # a callable: records hold data only
    after = state_copy(model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.endswith(("ffn.0.weight", "ffn.3.weight")) for k in changed)


def test_corda_calibration_runs_on_the_experience_without_touching_the_training_rng(
    tiny_stream, ci_model, char_tokenizer
) -> None:
    """The calibration pass feeds the current experience's utterances one at a time (cropped to
    their length) in eval mode, restores the training mode and leaves the global RNG (hence the
    training order and dropout) alone."""
    bench = small_benchmark(tiny_stream)
    plugin = BaselinePlugin("corda", targets=FFN, rank=2, calibration_batches=1)
    strategy = make_strategy(ci_model, char_tokenizer, [plugin])
    strategy.experience = bench.train_stream[0]
    strategy.adapted_dataset = bench.train_stream[0].dataset
    seen: list[tuple[tuple[int, ...], bool]] = []
    hook = ci_model.register_forward_pre_hook(
        lambda mod, args: seen.append((tuple(args[0].shape), mod.training))
    )
    ci_model.train()
    rng = torch.random.get_rng_state()
    counts: dict[str, int] = {}
    layers = plugin.target_layers(ci_model)
    names = [name for name, _, _ in layers]
    covariances = corda_covariances(ci_model, names, plugin._calibration(strategy, 0, counts))
    hook.remove()
    assert torch.equal(rng, torch.random.get_rng_state())
    assert ci_model.training and all(m.training for m in ci_model.modules())
    assert counts == {"calibration_batches": 1, "calibration_utterances": BATCH}
    assert len(seen) == BATCH and all(shape[0] == 1 and not train for shape, train in seen)
    assert len({shape for shape, _ in seen}) > 1  # cropped to each utterance's own length
    for name, _, n in layers:
        cov = covariances[name]
        assert cov.shape == (n, n) and torch.allclose(cov, cov.t())
        eig = torch.linalg.eigvalsh(cov.double())
        assert eig.min() > -1e-6 * eig.max()  # a covariance: PSD (up to float32 rounding)


def test_plugin_and_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="calibration_batches: corda needs"):
        BaselinePlugin("corda", rank=2)
    with pytest.raises(ValueError, match="calibration_batches: only corda"):
        BaselinePlugin("mica", rank=2, calibration_batches=2)
    with pytest.raises(ValueError, match="calibration: the plugin runs"):
        BaselinePlugin("corda", rank=2, calibration_batches=2, calibration=print)
    config = load_config("corda")
    del config["strategy"]["adapter"]["calibration_batches"]
    with pytest.raises(ConfigError, match="strategy.adapter.calibration_batches"):
        validate_config(config)
    config = load_config("osf")
    config["strategy"]["adapter"]["alpha"] = 2.0  # OSF has no LoRA scale
    with pytest.raises(ConfigError, match="strategy.adapter.alpha"):
        validate_config(config)


@pytest.mark.parametrize("name", ["mica", "corda", "osf"])
def test_shipped_configs_build_matched_plugins(name: str) -> None:
    config = load_config(name)
    validate_config(config)
    (plugin,) = build_plugins(config)
    assert isinstance(plugin, BaselinePlugin) and plugin.adapter_method == name
    assert plugin.match is not None and plugin.rank is None
    assert plugin.calibration_batches == (4 if name == "corda" else None)
