"""Shared set-up for the plugin tests: a 3-experience stream cut to a few utterances per domain,
a CTC strategy over the ``ci`` model with a step budget, and probe plugins."""

from __future__ import annotations

import functools

import pytest
import torch
from avalanche.core import SupervisedPlugin
from torch import nn

from benchmarks.stream import make_benchmark
from cl_ssvdo.ssvdo import SSVDOLinear
from strategies.template import CTCTemplate

TRAIN_UTTERANCES = 8  # per experience
BATCH = 4
STEPS = 2  # optimizer steps per experience


@pytest.fixture(autouse=True)
def one_thread():
    """The ci model's ops are too small to gain from a second thread, and on a shared 2-core
    machine two OpenMP threads per process were measured 10-30x slower here: use one."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@functools.cache
def _benchmark(root: str):
    return make_benchmark(root, splits=("train", "test"), max_utterances=TRAIN_UTTERANCES)


def small_benchmark(tiny_stream):
    """train/test streams of the tiny stream, ``TRAIN_UTTERANCES`` utterances per experience."""
    return _benchmark(str(tiny_stream.root))


def make_strategy(model, tokenizer, plugins, lr: float = 1e-3, steps: int = STEPS, **kwargs):
    """A CTCTemplate on CPU with ``steps`` optimizer steps per experience; ``lr=0`` builds an
    AdamW with zero learning rate and non-zero weight decay (the template refuses lr=0)."""
    if lr == 0.0:
        kwargs["optimizer_factory"] = lambda ps: torch.optim.AdamW(ps, lr=0.0, weight_decay=0.01)
    else:
        kwargs.setdefault("lr", lr)
    return CTCTemplate(
        model=model,
        tokenizer=tokenizer,
        train_mb_size=BATCH,
        eval_mb_size=8,
        max_steps_per_exp=steps,
        device="cpu",
        plugins=plugins,
        **kwargs,
    )


def train_stream(strategy, bench) -> None:
    for exp in bench.train_stream:
        strategy.train(exp)


def state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class AdapterProbe(SupervisedPlugin):
    """Records, per experience, what the model looked like while the adapter was attached.

    Put it *after* the adapter plugin: ``before_training_exp`` then sees the injected model.
    ``after_training_exp`` runs after the adapter plugin's merge, so the merged weights W' are
    captured earlier, at the last training iteration (the adapter parameters do not change
    after it).
    """

    def __init__(self) -> None:
        super().__init__()
        self.trainable: list[int] = []
        self.optimized: list[int] = []
        self.adapter_modules: list[int] = []
        self.merged: list[dict[str, torch.Tensor]] = []
        self.after_exp_state: list[dict[str, torch.Tensor]] = []

    def before_training_exp(self, strategy, **kwargs) -> None:
        model = strategy.model
        self.trainable.append(sum(p.numel() for p in model.parameters() if p.requires_grad))
        self.adapter_modules.append(
            sum(
                1 for m in model.modules() if isinstance(m, SSVDOLinear) or hasattr(m, "base_layer")
            )
        )

    def before_training_iteration(self, strategy, **kwargs) -> None:
        # the optimizer as the template will use it (rebuilt after plugins' before_training_exp)
        opt = {id(p): p for g in strategy.optimizer.param_groups for p in g["params"]}
        if len(self.optimized) < len(self.trainable):
            self.optimized.append(sum(p.numel() for p in opt.values()))

    def after_update(self, strategy, **kwargs) -> None:
        with torch.no_grad():
            self._last = {
                name: module.merged_weight().detach().clone()
                for name, module in strategy.model.named_modules()
                if isinstance(module, SSVDOLinear)
            }

    def after_training_exp(self, strategy, **kwargs) -> None:
        self.merged.append(getattr(self, "_last", {}))
        self.after_exp_state.append(state_copy(strategy.model))
