"""SSVD-O as an Avalanche strategy plugin, re-applied for every training experience.

Lifecycle per training experience (Avalanche callbacks, no forked loop):

- ``before_training_exp``: find the target ``nn.Linear`` layers (glob ``targets``, never inside
  ``nn.MultiheadAttention``), resolve the experience's settings from the
  :class:`~strategies.schedule.BudgetSchedule` (experience = the stream index,
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
(per layer: group, shape, k, l, trainable count; the total; max ``|U'^T U' - I|`` and
``|V'^T V' - I|``), and publishes the scalars through the strategy's ``EvaluationPlugin``
(``publish_metric_value``) so Avalanche loggers receive them.

Example
-------
>>> from strategies.schedule import BudgetSchedule
>>> plugin = SSVDOPlugin(BudgetSchedule.constant({"inner_ratio": 0.25, "outer_rank": 4}))
>>> # CTCTemplate(model=model, tokenizer=tokenizer, plugins=[plugin, ...]).train(experience)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from avalanche.core import SupervisedPlugin
from avalanche.evaluation.metric_results import MetricValue
from torch import nn

from cl_ssvdo.baselines import resolve_targets
from cl_ssvdo.ssvdo import basis_drift, inject_ssvdo, merge_ssvdo
from cl_ssvdo.ssvdo.inject import ssvdo_layers
from cl_ssvdo.ssvdo.layer import validate_settings

from .cl._ctc import experience_index
from .schedule import BudgetSchedule, LayerSetting

__all__ = ["AdapterPlugin", "SSVDOPlugin", "LayerRecord", "ExperienceRecord"]

DEFAULT_TARGETS = ("*ffn.0", "*ffn.3")


@dataclass(frozen=True)
class LayerRecord:
    """One adapted layer in one experience. ``k``/``l``: inner/outer rank (SSVD-O), ``rank``
    for LoRA-family baselines; ``drift_u``/``drift_v``: SSVD-O basis drift at the end."""

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
        return out


def _exact_pattern(name: str) -> str:
    """An ``fnmatch`` pattern matching exactly ``name``."""
    return re.sub(r"([\[\]*?])", r"[\1]", name)


def refresh_optimizer(strategy) -> None:
    """Rebuild the strategy's optimizer over the parameters that now require grad."""
    hook = getattr(strategy, "reset_optimizer", None)
    if callable(hook):
        hook()
        return
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
        from .cl.compat import check_plugins

        check_plugins(strategy.plugins)

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
        ``"top"`` or ``"tail"`` singular vectors for the inner rotation.
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
        log_metrics: bool = True,
    ) -> None:
        super().__init__(targets, log_metrics)
        if isinstance(schedule, Mapping):
            schedule = BudgetSchedule.from_dict(schedule)
        if not isinstance(schedule, BudgetSchedule):
            raise TypeError(
                f"schedule: expected a BudgetSchedule or a mapping, got {type(schedule).__name__}"
            )
        validate_settings(0.0, 0, tau, rotation, subspace)
        self.schedule = schedule
        self.tau = float(tau)
        self.rotation = rotation
        self.subspace = subspace
        self.outer = bool(outer)
        self._flags: dict[str, bool] = {}
        self._resolved: list[LayerSetting] = []

    def validate_stream(self, model: nn.Module, n_experiences: int) -> None:
        self.schedule.validate(n_experiences, self.target_layers(model), outer=self.outer)

    def resolve(self, model: nn.Module, experience: int) -> list[LayerSetting]:
        """The per-layer settings this plugin will inject at ``experience``."""
        return self.schedule.resolve(experience, self.target_layers(model), outer=self.outer)

    def attach(self, strategy, experience: int) -> ExperienceRecord:
        model = strategy.model
        resolved = self.resolve(model, experience)
        self._flags = {n: p.requires_grad for n, p in model.named_parameters()}
        summaries = inject_ssvdo(
            model,
            {
                _exact_pattern(s.name): {"inner_ratio": s.inner_ratio, "outer_rank": s.outer_rank}
                for s in resolved
            },
            tau=self.tau,
            rotation=self.rotation,
            subspace=self.subspace,
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
        record.layers = [
            LayerRecord(
                **{**asdict(r), "drift_u": drifts[r.name]["U"], "drift_v": drifts[r.name]["V"]}
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
