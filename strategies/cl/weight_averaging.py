"""Weight averaging between the model before and after an experience (Vander Eeckt and
Van hamme's strong, cheap baseline against forgetting in ASR).

After each training experience (and after an adapter plugin merged its adapter), every
floating-point parameter and buffer becomes

    theta <- w * theta_previous + (1 - w) * theta_adapted

with ``w = previous_weight``, or ``w = t / (t + 1)`` for ``previous_weight="running"`` where
``t`` counts the models already averaged into theta_previous (the base model counts 1: after the
first experience w = 1/2, after the second 2/3, ... an equal-weight average of every model the
stream produced). ``torch.lerp`` is used, so equal weights stay bit-identical.

theta_previous is copied in ``before_train_dataset_adaptation`` (plain model: before any
adapter is injected). The averaging needs the plain model too, so this plugin must come after
an adapter plugin in ``plugins=[...]``: :func:`strategies.cl.compat.check_plugins` rejects the
other order, and the callback raises if it still finds adapter parameters.

Example
-------
>>> plugin = WeightAveragingPlugin(previous_weight=0.5)
"""

from __future__ import annotations

import torch
from avalanche.core import SupervisedPlugin

from .compat import check_plugins

__all__ = ["WeightAveragingPlugin", "average_into"]


@torch.no_grad()
def average_into(model: torch.nn.Module, previous: dict[str, torch.Tensor], weight: float) -> None:
    """``model <- weight * previous + (1 - weight) * model`` for the floating tensors named in
    ``previous`` (parameters and buffers of ``model.state_dict()``)."""
    state = model.state_dict(keep_vars=True)
    missing = sorted(set(previous) - set(state))
    if missing:
        raise RuntimeError(
            f"weight averaging: the model lacks {missing[:3]}... it had at the experience start "
            "(an adapter is still attached: put WeightAveragingPlugin after the adapter plugin)"
        )
    for name, prev in previous.items():
        cur = state[name]
        if cur.shape != prev.shape:
            raise RuntimeError(
                f"weight averaging: {name} changed shape {tuple(prev.shape)} -> {tuple(cur.shape)}"
            )
        cur.data.copy_(torch.lerp(cur.data, prev.to(cur.device, cur.dtype), weight))


class WeightAveragingPlugin(SupervisedPlugin):
    """Average the previous and the adapted model after each experience.

    Arguments
    ---------
    previous_weight : float or "running"
        Weight of the previous model in [0, 1] (0 = no averaging, 1 = discard the update), or
        "running" for the equal-weight average over the stream.
    include_buffers : bool
        Also average floating-point buffers (e.g. batch-norm running statistics).
    """

    #: :func:`strategies.cl.compat.check_plugins` requires it after any adapter plugin.
    needs_merged_model = True

    def __init__(self, previous_weight: float | str = 0.5, include_buffers: bool = True) -> None:
        super().__init__()
        if previous_weight != "running" and (
            isinstance(previous_weight, bool)
            or not isinstance(previous_weight, int | float)
            or not 0.0 <= previous_weight <= 1.0
        ):
            raise ValueError(
                f"previous_weight: must be a number in [0, 1] or 'running', got {previous_weight!r}"
            )
        self.previous_weight = previous_weight
        self.include_buffers = include_buffers
        self._previous: dict[str, torch.Tensor] | None = None
        self.models_averaged = 1  # the base model
        self.weights_used: list[float] = []

    def weight(self) -> float:
        if self.previous_weight == "running":
            return self.models_averaged / (self.models_averaged + 1)
        return float(self.previous_weight)

    def before_training(self, strategy, **kwargs) -> None:
        check_plugins(strategy.plugins)

    def before_train_dataset_adaptation(self, strategy, **kwargs) -> None:
        params = {n for n, _ in strategy.model.named_parameters()}
        self._previous = {
            n: t.detach().clone()
            for n, t in strategy.model.state_dict().items()
            if t.is_floating_point() and (n in params or self.include_buffers)
        }

    def after_training_exp(self, strategy, **kwargs) -> None:
        if self._previous is None:
            raise RuntimeError("weight averaging: no snapshot of the model before the experience")
        w = self.weight()
        average_into(strategy.model, self._previous, w)
        self.weights_used.append(w)
        self.models_averaged += 1
        self._previous = None
