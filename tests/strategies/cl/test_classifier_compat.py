"""SSVD-O with Avalanche's own plugins on a classifier: the speech-only compatibility rules do not
apply, and removed adapters never stay in the stock template's optimizer."""

from __future__ import annotations

import pytest
import torch
from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
from avalanche.benchmarks.utils.classification_dataset import (
    _make_taskaware_tensor_classification_dataset as tensor_dataset,
)
from avalanche.training import Naive
from avalanche.training.plugins import EvaluationPlugin
from avalanche.training.plugins import EWCPlugin as AvalancheEWC
from torch import nn

from cl_ssvdo.schedule import BudgetSchedule
from strategies import SSVDOPlugin
from strategies.cl.compat import IncompatiblePlugins, check_plugins, is_speech_model


def _classifier() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))


def _benchmark(n: int = 3):
    gen = torch.Generator().manual_seed(1)
    train = []
    for k in range(n):
        x = torch.randn(24, 6, generator=gen) + k
        y = torch.randint(0, 3, (24,), generator=gen)
        train.append(tensor_dataset(x, y, task_labels=0))
    return benchmark_from_datasets(train=train, test=train)


def _stale(strategy) -> int:
    live = {id(p) for p in strategy.model.parameters()}
    return sum(
        1 for group in strategy.optimizer.param_groups for p in group["params"] if id(p) not in live
    )


def test_ssvdo_with_stock_ewc_trains_a_classifier_without_stale_parameters() -> None:
    model = _classifier()
    plugin = SSVDOPlugin(
        BudgetSchedule.constant({"inner_ratio": 0.5, "outer_rank": 2}), targets=["0", "2"]
    )
    strategy = Naive(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
        criterion=nn.CrossEntropyLoss(),
        train_mb_size=8,
        train_epochs=1,
        eval_mb_size=24,
        device="cpu",
        plugins=[plugin, AvalancheEWC(ewc_lambda=1.0)],
        evaluator=EvaluationPlugin(loggers=[]),
    )
    bench = _benchmark()
    before = model[0].weight.detach().clone()
    stale = []
    for exp in bench.train_stream:
        strategy.train(exp)
        stale.append(_stale(strategy))
    assert stale == [0, 0, 0]
    assert len(plugin.records) == 3 and plugin.records[-1].total_trainable > 0
    assert not torch.equal(model[0].weight, before)  # the merged adapters moved the weights
    assert all(isinstance(m, nn.Linear) for m in (model[0], model[2]))  # plain again


def test_classification_plugins_are_refused_only_on_speech_models(ci_model) -> None:
    assert is_speech_model(ci_model) and not is_speech_model(_classifier())
    check_plugins([AvalancheEWC(1.0)], model=_classifier())
    with pytest.raises(IncompatiblePlugins, match="cannot train a speech"):
        check_plugins([AvalancheEWC(1.0)], model=ci_model)
    flagged = _classifier()
    flagged.is_speech_model = True  # a user's own recogniser can say so
    with pytest.raises(IncompatiblePlugins):
        check_plugins([AvalancheEWC(1.0)], model=flagged)
