"""SSVD-O as an Avalanche strategy plugin, re-applied for every training experience.

Lifecycle per training experience (Avalanche callbacks, no forked loop):

- ``before_training_exp``: find the target ``nn.Linear`` layers (glob ``targets``, never inside
  ``nn.MultiheadAttention``), resolve the experience's settings from the
  :class:`~cl_ssvdo.schedule.BudgetSchedule` (experience = the stream index,
  ``strategy.experience.current_experience``), decompose the *current* weights (the previous
  experiences' adapters are already merged into them) and inject ``SSVDOLinear`` layers; every
  other parameter is frozen and the strategy's optimizer is rebuilt over the adapter
  parameters only. The first call validates the whole schedule against the stream length and
  the layer shapes, so a bad schedule fails before any training.
- ``after_training_exp``: measure the adapted bases' drift, merge exactly (each layer's weight
  becomes its W'), remove the adapters and restore every parameter's ``requires_grad``:
  evaluation and the next experience see a plain model with the same parameter names.

Adapter plugins come first in ``plugins=[...]`` (before weight averaging, which
:mod:`strategies.cl.compat` checks); the other continual-learning plugins here are
order-independent.

Per experience the plugin appends an :class:`ExperienceRecord` to ``plugin.records``
(per layer: group, shape, k, l, subspace, trainable count; the total; max ``|U'^T U' - I|`` and
``|V'^T V' - I|``), and publishes the scalars through the strategy's ``EvaluationPlugin``
(``publish_metric_value``) so Avalanche loggers receive them.

What moved (every adapter plugin, :mod:`cl_ssvdo.ssvdo.diagnostics`): per layer
``weight_change`` = ||W_after - W_before||_F / ||W_before||_F of the experience and
``weight_change_total`` against the weights before the plugin's first experience (LoRA/DoRA/
PiSSA via their merged weight, full fine-tuning directly); SSVD-O/SSVD layers add the inner
rotation (``inner_dev`` = ||G - I||_F, ``inner_angle``), the outer principal angles
(``outer_angle_max``, ``outer_angle_mean``) and ``sv_shift`` = ||s' - s|| / ||s||. They sit in
``LayerRecord.diagnostics`` and are published as ``diag/<figure>/<layer>`` at step = the
1-based experience index (the WER rows' step); the all-layer weight change of the experience
goes out as ``<method>/weight_change`` with the other per-experience scalars.

Example
-------
>>> from cl_ssvdo.schedule import BudgetSchedule
>>> plugin = SSVDOPlugin(BudgetSchedule.constant({"inner_ratio": 0.25, "outer_rank": 4}))
>>> # CTCTemplate(model=model, tokenizer=tokenizer, plugins=[plugin, ...]).train(experience)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from avalanche.core import SupervisedPlugin
from avalanche.evaluation.metric_results import MetricValue
from torch import nn

from cl_ssvdo.baselines import resolve_targets
from cl_ssvdo.schedule import BudgetSchedule, LayerSetting
from cl_ssvdo.ssvdo import basis_drift, inject_ssvdo, merge_ssvdo
from cl_ssvdo.ssvdo.diagnostics import choose_subspace, ssvdo_diagnostics, weight_change
from cl_ssvdo.ssvdo.inject import ssvdo_layers
from cl_ssvdo.ssvdo.layer import validate_settings

from ..cl._ctc import experience_index

__all__ = ["AdapterPlugin", "SSVDOPlugin", "LayerRecord", "ExperienceRecord"]

DEFAULT_TARGETS = ("*ffn.0", "*ffn.3")


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


def _exact_pattern(name: str) -> str:
    """An ``fnmatch`` pattern matching exactly ``name``."""
    return re.sub(r"([\[\]*?])", r"[\1]", name)


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


class SSVDOPlugin(AdapterPlugin):
    """SSVD-O adapters with a per-experience, per-group budget schedule.

    Arguments
    ---------
    schedule : BudgetSchedule or mapping
        The budget schedule (a mapping is parsed by ``BudgetSchedule.from_dict``).
    targets : sequence of str
        Glob patterns over module names of the ``nn.Linear`` layers to adapt.
    tau : float
        Outer-rotation sensitivity (> 0).
    rotation : str
        ``"cayley"`` or ``"linear"``.
    subspace : str
        ``"top"`` or ``"tail"`` singular vectors for the inner rotation, or ``"auto"``
        (per layer, from its current weight: :func:`cl_ssvdo.ssvdo.diagnostics.choose_subspace`).
        A schedule setting's ``subspace`` overrides it for its group and experience.
    parameterisation : str
        ``"v2"`` (step-size calibrated, default) or ``"v1"`` (the earlier maths), see
        ``SSVDOLinear``.
    outer : bool
        False: no outer transform (``l = 0`` everywhere, i.e. SSVD).
    log_metrics : bool
        Publish the per-experience scalars through the strategy's evaluator.
    """

    adapter_method = "ssvdo"

    def __init__(
        self,
        schedule: BudgetSchedule | Mapping[str, Any],
        targets: Sequence[str] = DEFAULT_TARGETS,
        tau: float = 1e-3,
        rotation: str = "cayley",
        subspace: str = "top",
        outer: bool = True,
        parameterisation: str = "v2",
        log_metrics: bool = True,
    ) -> None:
        super().__init__(targets, log_metrics)
        if isinstance(schedule, Mapping):
            schedule = BudgetSchedule.from_dict(schedule)
        if not isinstance(schedule, BudgetSchedule):
            raise TypeError(
                f"schedule: expected a BudgetSchedule or a mapping, got {type(schedule).__name__}"
            )
        validate_settings(
            0.0, 0, tau, rotation, "top" if subspace == "auto" else subspace, parameterisation
        )
        self.schedule = schedule
        self.tau = float(tau)
        self.rotation = rotation
        self.subspace = subspace
        self.parameterisation = parameterisation
        self.outer = bool(outer)
        self._flags: dict[str, bool] = {}
        self._resolved: list[LayerSetting] = []

    def validate_stream(self, model: nn.Module, n_experiences: int) -> None:
        self.schedule.validate(n_experiences, self.target_layers(model), outer=self.outer)

    def resolve(self, model: nn.Module, experience: int) -> list[LayerSetting]:
        """The per-layer settings this plugin will inject at ``experience``."""
        return self.schedule.resolve(experience, self.target_layers(model), outer=self.outer)

    def layer_subspace(self, model: nn.Module, setting: LayerSetting) -> str:
        """``top``/``tail`` for one resolved layer: the schedule's choice, else the plugin's;
        ``auto`` is decided on the layer's current weight."""
        choice = setting.subspace or self.subspace
        if choice == "auto":
            weight = model.get_submodule(setting.name).weight
            return choose_subspace(weight, setting.inner_rank)
        return choice

    def attach(self, strategy, experience: int) -> ExperienceRecord:
        model = strategy.model
        resolved = self.resolve(model, experience)
        self._flags = {n: p.requires_grad for n, p in model.named_parameters()}
        subspaces = {s.name: self.layer_subspace(model, s) for s in resolved}
        summaries = inject_ssvdo(
            model,
            {
                _exact_pattern(s.name): {
                    "inner_ratio": s.inner_ratio,
                    "outer_rank": s.outer_rank,
                    "subspace": subspaces[s.name],
                }
                for s in resolved
            },
            tau=self.tau,
            rotation=self.rotation,
            subspace=self.subspace,
            parameterisation=self.parameterisation,
            freeze_base=True,
        )
        by_name = {s.name: s for s in resolved}
        layers = []
        for summ in summaries:
            want = by_name[summ.name]
            got = (summ.inner_rank, summ.outer_rank, summ.trainable)
            if got != (want.inner_rank, want.outer_rank, want.trainable):
                raise RuntimeError(
                    f"SSVDOPlugin: layer {summ.name} got (k, l, trainable) = {got}, the schedule "
                    f"says {(want.inner_rank, want.outer_rank, want.trainable)}"
                )
            layers.append(
                LayerRecord(
                    name=summ.name,
                    out_features=summ.out_features,
                    in_features=summ.in_features,
                    trainable=summ.trainable,
                    group=want.group,
                    k=summ.inner_rank,
                    l=summ.outer_rank,
                    subspace=subspaces[summ.name],
                )
            )
        self._resolved = resolved
        return ExperienceRecord(
            experience=experience,
            method="ssvdo" if self.outer else "ssvd",
            layers=layers,
            total_trainable=sum(layer.trainable for layer in layers),
            settings={g: s.to_dict() for g, s in self.schedule.settings_for(experience).items()},
        )

    def detach(self, strategy, record: ExperienceRecord) -> None:
        model = strategy.model
        drifts = {name: basis_drift(layer) for name, layer in ssvdo_layers(model)}
        moved = {
            name: {
                k: v for k, v in ssvdo_diagnostics(layer).to_dict().items() if k != "weight_change"
            }
            for name, layer in ssvdo_layers(model)
        }  # weight_change is measured for every plugin after the merge (measure_change)
        record.layers = [
            LayerRecord(
                **{
                    **asdict(r),
                    "drift_u": drifts[r.name]["U"],
                    "drift_v": drifts[r.name]["V"],
                    "diagnostics": {**r.diagnostics, **moved[r.name]},
                }
            )
            for r in record.layers
        ]
        record.drift_u = max((d["U"] for d in drifts.values()), default=0.0)
        record.drift_v = max((d["V"] for d in drifts.values()), default=0.0)
        merge_ssvdo(model)
        for n, p in model.named_parameters():
            if n in self._flags:
                p.requires_grad_(self._flags[n])
        if any(True for _ in ssvdo_layers(model)):
            raise RuntimeError("SSVDOPlugin: adapters remain after merge_ssvdo")


def trainable_count(model: nn.Module) -> int:
    """Number of parameters with ``requires_grad`` (what the optimizer may update)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
