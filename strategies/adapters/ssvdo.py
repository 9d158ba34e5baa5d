"""SSVD-O (and SSVD, its inner transform alone) as Avalanche strategy plugins, re-applied for
every training experience (shared lifecycle: :mod:`strategies.adapters.base`).

Lifecycle per training experience (Avalanche callbacks, no forked loop):

- ``before_training_exp``: find the target ``nn.Linear`` layers (glob ``targets``, never inside
  ``nn.MultiheadAttention``), resolve the experience's settings from the
  :class:`~cl_ssvdo.schedule.BudgetSchedule` (experience = the stream index,
  ``strategy.experience.current_experience``), decompose the *current* weights (the previous
  experiences' adapters are already merged into them) and inject ``SSVDOLinear`` layers (by
  exact layer name, one :class:`~cl_ssvdo.ssvdo.settings.SSVDOSettings` each); every
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

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch import nn

from cl_ssvdo.schedule import SUBSPACE_CHOICES, BudgetSchedule, LayerSetting
from cl_ssvdo.ssvdo import basis_drift, inject_layers, merge_ssvdo
from cl_ssvdo.ssvdo.diagnostics import choose_subspace, ssvdo_diagnostics
from cl_ssvdo.ssvdo.inject import ssvdo_layers
from cl_ssvdo.ssvdo.save import save_ssvdo_adapters
from cl_ssvdo.ssvdo.settings import DEFAULTS, SSVDOSettings

from .base import (
    DEFAULT_TARGETS,
    AdapterPlugin,
    ExperienceRecord,
    LayerRecord,
    match_schedule,
)

__all__ = ["SSVDOPlugin", "SSVDPlugin"]


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
        tau: float = DEFAULTS.tau,
        rotation: str = DEFAULTS.rotation,
        subspace: str = DEFAULTS.subspace,
        outer: bool = True,
        parameterisation: str = DEFAULTS.parameterisation,
        log_metrics: bool = True,
    ) -> None:
        super().__init__(targets, log_metrics)
        if isinstance(schedule, Mapping):
            schedule = BudgetSchedule.from_dict(schedule)
        if not isinstance(schedule, BudgetSchedule):
            raise TypeError(
                f"schedule: expected a BudgetSchedule or a mapping, got {type(schedule).__name__}"
            )
        if subspace not in SUBSPACE_CHOICES:
            raise ValueError(f"subspace must be one of {SUBSPACE_CHOICES}, got {subspace!r}")
        # The settings every layer shares; (p, l) and the subspace come per layer.
        self.settings = SSVDOSettings(
            tau=float(tau),
            rotation=rotation,
            subspace="top" if subspace == "auto" else subspace,
            parameterisation=parameterisation,
        )
        self.schedule = schedule
        self.subspace = subspace
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
        plan = {
            s.name: self.settings.replace(
                inner_ratio=s.inner_ratio, outer_rank=s.outer_rank, subspace=subspaces[s.name]
            )
            for s in resolved
        }
        summaries = inject_layers(model, plan, freeze_base=True)
        layers = [
            LayerRecord(
                name=summ.name,
                out_features=summ.out_features,
                in_features=summ.in_features,
                trainable=summ.trainable,
                group=setting.group,
                k=summ.inner_rank,
                l=summ.outer_rank,
                subspace=subspaces[summ.name],
            )
            for summ, setting in zip(summaries, resolved, strict=True)
        ]
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
        if self.save_adapters_to is not None:
            row = record.experience + 1  # the WER-matrix row (and model_exp_<row>) it produces
            save_ssvdo_adapters(model, Path(self.save_adapters_to) / f"exp_{row:03d}")
        merge_ssvdo(model)
        for n, p in model.named_parameters():
            if n in self._flags:
                p.requires_grad_(self._flags[n])
        if any(True for _ in ssvdo_layers(model)):
            raise RuntimeError("SSVDOPlugin: adapters remain after merge_ssvdo")

    @property
    def tau(self) -> float:
        return self.settings.tau

    @property
    def rotation(self) -> str:
        return self.settings.rotation

    @property
    def parameterisation(self) -> str:
        return self.settings.parameterisation


class SSVDPlugin(SSVDOPlugin):
    """SSVD: the inner transform alone, re-applied per experience.

    Give ``inner_ratio=`` (the same p on every layer, every experience), or a ``schedule`` of
    explicit settings (outer ranks are ignored), or ``match=`` an SSVD-O schedule / plugin:
    each experience the SSVD-O count B is given to :func:`cl_ssvdo.budget.allocate` with inner
    share 1 over the same layers (count <= B).
    """

    adapter_method = "ssvd"

    def __init__(
        self,
        inner_ratio: float | None = None,
        *,
        schedule: BudgetSchedule | Mapping[str, Any] | None = None,
        match: BudgetSchedule | Mapping[str, Any] | SSVDOPlugin | None = None,
        targets: Sequence[str] = DEFAULT_TARGETS,
        tau: float = DEFAULTS.tau,
        rotation: str = DEFAULTS.rotation,
        subspace: str = DEFAULTS.subspace,
        parameterisation: str = DEFAULTS.parameterisation,
        log_metrics: bool = True,
    ) -> None:
        given = [x is not None for x in (inner_ratio, schedule, match)]
        if sum(given) != 1:
            raise ValueError("SSVDPlugin: give exactly one of inner_ratio=, schedule= or match=")
        if inner_ratio is not None:
            schedule = BudgetSchedule.constant({"inner_ratio": inner_ratio})
        self.match = None if match is None else match_schedule(match)
        super().__init__(
            schedule if schedule is not None else self.match[0],
            targets=targets,
            tau=tau,
            rotation=rotation,
            subspace=subspace,
            outer=False,
            parameterisation=parameterisation,
            log_metrics=log_metrics,
        )

    def ssvdo_budget(self, model: nn.Module, experience: int) -> int | None:
        if self.match is None:
            return None
        schedule, outer = self.match
        return schedule.total(experience, self.target_layers(model), outer=outer)

    def resolve(self, model: nn.Module, experience: int) -> list[LayerSetting]:
        budget = self.ssvdo_budget(model, experience)
        if budget is None:
            return super().resolve(model, experience)
        inner_only = BudgetSchedule.constant({"budget": budget, "inner_share": 1.0})
        return inner_only.resolve(0, self.target_layers(model), outer=False)

    def validate_stream(self, model: nn.Module, n_experiences: int) -> None:
        self.schedule.check_length(n_experiences)
        for i in range(n_experiences):
            self.resolve(model, i)

    def attach(self, strategy, experience: int) -> ExperienceRecord:
        budget = self.ssvdo_budget(strategy.model, experience)  # on the plain model
        record = super().attach(strategy, experience)
        if budget is not None:
            record.budget = budget
            record.settings = {
                "budget": budget,
                "inner_share": 1.0,
                "matched_ratio": record.total_trainable / budget,
            }
        return record
