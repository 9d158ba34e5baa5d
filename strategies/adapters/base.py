"""What every adapter plugin shares: :class:`AdapterPlugin` (stream bookkeeping, the
optimizer refresh, the before/after weight change, records and their publication),
:class:`ExperienceRecord` / :class:`LayerRecord`, and :func:`match_schedule` (the SSVD-O
schedule a baseline is matched to).

Lifecycle per training experience (Avalanche callbacks, no forked loop): ``before_training_exp``
validates the stream once, copies the target weights and calls the subclass's ``attach``
(inject, freeze the rest), then rebuilds the optimizer over the adapter's parameters;
``after_training_exp`` calls ``detach`` (merge, remove, restore ``requires_grad``), checks that
the model has its plain parameter names again, measures what moved and publishes the record.

Adapter plugins come first in ``plugins=[...]`` (before weight averaging, which
:mod:`strategies.cl.compat` checks); the other continual-learning plugins are order-independent.

Example
-------
>>> record = ExperienceRecord(0, "lora", [LayerRecord("ffn.0", 64, 16, 160, rank=2)], 160)
>>> record.metrics()
{'lora/trainable': 160.0}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from avalanche.core import SupervisedPlugin
from avalanche.evaluation.metric_results import MetricValue
from torch import nn

from cl_ssvdo.schedule import BudgetSchedule
from cl_ssvdo.ssvdo.diagnostics import weight_change
from cl_ssvdo.ssvdo.targets import resolve_targets

from ..cl._ctc import experience_index

__all__ = [
    "DEFAULT_TARGETS",
    "AdapterPlugin",
    "ExperienceRecord",
    "LayerRecord",
    "match_schedule",
    "refresh_optimizer",
    "trainable_count",
]

DEFAULT_TARGETS = ("*ffn.0", "*ffn.3")


def match_schedule(match: Any) -> tuple[BudgetSchedule, bool]:
    """``(schedule, outer)`` of what a baseline is matched to: an SSVD-O
    :class:`~cl_ssvdo.schedule.BudgetSchedule`, its mapping, or an SSVD-O plugin (anything with
    a ``schedule`` and an ``outer`` flag)."""
    if isinstance(match, BudgetSchedule):
        return match, True
    if isinstance(match, Mapping):
        return BudgetSchedule.from_dict(match, where="match"), True
    if isinstance(getattr(match, "schedule", None), BudgetSchedule):
        return match.schedule, bool(getattr(match, "outer", True))
    raise TypeError(
        f"match: expected an SSVD-O BudgetSchedule, its mapping or an SSVDOPlugin, got "
        f"{type(match).__name__}"
    )


@dataclass(frozen=True)
class LayerRecord:
    """One adapted layer in one experience. ``k``/``l``: inner/outer rank (SSVD-O), ``rank``
    for LoRA-family baselines; ``drift_u``/``drift_v``: SSVD-O basis drift at the end;
    ``subspace``: the inner rotation's subspace (SSVD-O/SSVD); ``diagnostics``: what moved
    (figure -> value, see the module docstring)."""

    name: str
    out_features: int
    in_features: int
    trainable: int
    group: str = ""
    k: int = 0
    l: int = 0  # noqa: E741 (the paper's name)
    rank: int = 0
    drift_u: float = 0.0
    drift_v: float = 0.0
    subspace: str = ""
    diagnostics: dict[str, float] = field(default_factory=dict, hash=False)


@dataclass
class ExperienceRecord:
    """What an adapter plugin did in one training experience (readable by loggers)."""

    experience: int
    method: str
    layers: list[LayerRecord]
    total_trainable: int
    settings: dict[str, Any] = field(default_factory=dict)
    drift_u: float = 0.0
    drift_v: float = 0.0
    budget: int | None = None
    weight_change: float | None = None
    weight_change_total: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def metrics(self, prefix: str | None = None) -> dict[str, float]:
        """Flat scalar metrics, e.g. ``{"ssvdo/trainable": 1234, "ssvdo/drift_u": 1e-7, ...}``."""
        p = prefix or self.method
        out: dict[str, float] = {f"{p}/trainable": float(self.total_trainable)}
        if self.method in ("ssvdo", "ssvd"):
            out[f"{p}/drift_u"] = self.drift_u
            out[f"{p}/drift_v"] = self.drift_v
        if self.budget is not None:
            out[f"{p}/budget"] = float(self.budget)
        if self.weight_change is not None:
            out[f"{p}/weight_change"] = self.weight_change
        if self.weight_change_total is not None:
            out[f"{p}/weight_change_total"] = self.weight_change_total
        return out


def _stacked_change(
    before: Mapping[str, torch.Tensor], after: Mapping[str, torch.Tensor], names: Sequence[str]
) -> float:
    """``weight_change`` of all ``names`` together: sqrt(sum ||dW||^2) / sqrt(sum ||W0||^2)."""
    num = sum(float((after[n].double() - before[n].double()).square().sum()) for n in names)
    den = sum(float(before[n].double().square().sum()) for n in names)
    return (num / den) ** 0.5 if den else 0.0


def refresh_optimizer(strategy) -> None:
    """Rebuild the strategy's optimizer over the parameters that now require grad.

    Stock Avalanche templates keep parameters that left the model in the optimizer unless
    ``remove_params=True`` (removed adapters would pile up: 0 -> 6 -> 12 stale ones over three
    experiences), so they are asked to drop them and reset the state.
    """
    hook = getattr(strategy, "reset_optimizer", None)
    if callable(hook):
        hook()
        return
    try:
        strategy.make_optimizer(reset_optimizer_state=True, remove_params=True)
    except TypeError:  # a template whose make_optimizer has no remove_params
        strategy.make_optimizer(reset_optimizer_state=True)


class AdapterPlugin(SupervisedPlugin):
    """Base of the adapter plugins: stream bookkeeping, optimizer refresh, records, metrics.

    Subclasses implement ``attach(strategy, experience) -> ExperienceRecord`` (inject, freeze the
    rest) and ``detach(strategy, record)`` (merge, remove, restore ``requires_grad``); the base
    rebuilds the optimizer after ``attach``, checks that the model has its plain parameter names
    again after ``detach``, keeps ``records`` and publishes their scalars.
    """

    adapter_method: str = ""

    def __init__(self, targets: Sequence[str] = DEFAULT_TARGETS, log_metrics: bool = True) -> None:
        super().__init__()
        if isinstance(targets, str) or not targets or not all(isinstance(t, str) for t in targets):
            raise ValueError(
                f"targets: expected a non-empty list of glob patterns, got {targets!r}"
            )
        self.targets = tuple(targets)
        self.log_metrics = log_metrics
        self.records: list[ExperienceRecord] = []
        self._current: ExperienceRecord | None = None
        self._plain_names: list[str] | None = None
        self._validated = False
        # Target weights before the current experience and before the first one.
        self._w_before: dict[str, torch.Tensor] | None = None
        self._w_start: dict[str, torch.Tensor] | None = None
        # ``train.save_adapters``: each experience's adapter, unmerged, as a peft folder
        # <save_adapters_to>/exp_<row> written just before the merge (SSVD-O, SSVD, LoRA, DoRA).
        # A str, not a Path: plugin state is checkpointed as data.
        self.save_adapters_to: str | None = None

    # -------------------------------------------------------------- subclass API
    def attach(self, strategy, experience: int) -> ExperienceRecord:
        raise NotImplementedError

    def detach(self, strategy, record: ExperienceRecord) -> None:
        raise NotImplementedError

    def validate_stream(self, model: nn.Module, n_experiences: int) -> None:
        """Fail early (before the first experience trains) when the stream cannot be served."""

    # -------------------------------------------------------------- helpers
    def target_layers(self, model: nn.Module) -> list[tuple[str, int, int]]:
        """``[(name, out_features, in_features), ...]`` of the target linears, model order."""
        names = resolve_targets(model, list(self.targets))
        out = []
        for name in names:
            layer = model.get_submodule(name)
            out.append((name, layer.out_features, layer.in_features))
        return out

    def weights(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Copies of the target layers' weights, layer name -> (out, in) tensor."""
        return {
            name: model.get_submodule(name).weight.detach().clone()
            for name, _, _ in self.target_layers(model)
        }

    def measure_change(self, model: nn.Module, record: ExperienceRecord) -> None:
        """Put ``weight_change`` / ``weight_change_total`` into each layer's diagnostics and
        the all-layer figures into ``record`` (the model is plain again: merged, unwrapped)."""
        before, start = self._w_before or {}, self._w_start or {}
        after = {r.name: model.get_submodule(r.name).weight.detach() for r in record.layers}
        layers = []
        for r in record.layers:
            extra = {}
            if r.name in before:
                extra["weight_change"] = weight_change(before[r.name], after[r.name])
            if r.name in start:
                extra["weight_change_total"] = weight_change(start[r.name], after[r.name])
            layers.append(replace(r, diagnostics={**r.diagnostics, **extra}))
        record.layers = layers
        names = [r.name for r in record.layers]
        if names and all(n in before for n in names):
            record.weight_change = _stacked_change(before, after, names)
        if names and all(n in start for n in names):
            record.weight_change_total = _stacked_change(start, after, names)

    @staticmethod
    def experience_index(strategy) -> int:
        return experience_index(strategy)

    @staticmethod
    def stream_length(strategy) -> int | None:
        stream = getattr(strategy.experience, "origin_stream", None)
        try:
            return len(stream) if stream is not None else None
        except TypeError:
            return None

    # -------------------------------------------------------------- callbacks
    def before_training(self, strategy, **kwargs) -> None:
        from ..cl.compat import check_plugins

        check_plugins(strategy.plugins, model=strategy.model)

    def before_training_exp(self, strategy, **kwargs) -> None:
        if self._current is not None:
            raise RuntimeError(
                f"{type(self).__name__}: an adapter from experience {self._current.experience} is "
                "still attached (the previous experience did not finish)"
            )
        model = strategy.model
        if not self._validated:
            n = self.stream_length(strategy)
            if n is not None:
                self.validate_stream(model, n)
            self._validated = True
        self._plain_names = [n for n, _ in model.named_parameters()]
        self._w_before = self.weights(model)
        if self._w_start is None:
            self._w_start = dict(self._w_before)
        self._current = self.attach(strategy, self.experience_index(strategy))
        refresh_optimizer(strategy)

    def after_training_exp(self, strategy, **kwargs) -> None:
        record = self._current
        if record is None:
            return
        self.detach(strategy, record)
        names = [n for n, _ in strategy.model.named_parameters()]
        if names != self._plain_names:
            extra = sorted(set(names) - set(self._plain_names or []))[:3]
            raise RuntimeError(
                f"{type(self).__name__}: after merging, the model's parameters differ from the "
                f"plain model's (e.g. {extra})"
            )
        self.measure_change(strategy.model, record)
        if not callable(getattr(strategy, "reset_optimizer", None)):
            refresh_optimizer(strategy)  # no removed adapter stays in a stock optimizer
        self._w_before = None
        self._current = None
        self.records.append(record)
        if self.log_metrics:
            self._publish(strategy, record)

    def _publish(self, strategy, record: ExperienceRecord) -> None:
        evaluator = getattr(strategy, "evaluator", None)
        if evaluator is None or not hasattr(evaluator, "publish_metric_value"):
            return
        x = int(strategy.clock.train_iterations)
        suffix = f"/exp{record.experience:03d}"
        for name, value in record.metrics().items():
            evaluator.publish_metric_value(MetricValue(self, name + suffix, value, x))
        step = record.experience + 1  # the WER row this experience produces
        for layer in record.layers:
            for figure, value in layer.diagnostics.items():
                evaluator.publish_metric_value(
                    MetricValue(self, f"diag/{figure}/{layer.name}", value, step)
                )


def trainable_count(model: nn.Module) -> int:
    """Number of parameters with ``requires_grad`` (what the optimizer may update)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
