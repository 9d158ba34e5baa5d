"""The baselines as plugins of the SSVD-O plugin's shape: LoRA, DoRA, PiSSA (peft) and full
fine-tuning of the same layers (SSVD, the inner transform alone, is in
:mod:`strategies.adapters.ssvdo`).

Each is applied before every training experience (``cl_ssvdo.baselines.apply_adapter`` on the
current, merged weights), trains alone (every other parameter frozen, optimizer rebuilt over the
adapter's parameters) and is merged and removed after the experience, so evaluation and the next
experience see a plain model (same lifecycle and records as
:class:`strategies.adapters.ssvdo.SSVDOPlugin`).

Budget matching. Give either an explicit setting (``rank`` for LoRA/DoRA/PiSSA, ``inner_ratio``
for SSVD) or ``match=`` an SSVD-O schedule (or an ``SSVDOPlugin``): per experience the SSVD-O
count ``B`` of the same layers is computed from that schedule and

- LoRA/DoRA/PiSSA get per-layer ranks whose count comes closest to ``B`` without exceeding it
  (:func:`cl_ssvdo.budget.match_ranks`: the largest uniform rank, plus one on the subset of
  layers that lands closest; peft's ``rank_pattern``);
- SSVD gets the per-layer inner ranks of :func:`cl_ssvdo.budget.allocate` with the whole
  budget on the inner side (inner share 1), also never above ``B``.

The record of each experience reports ``B`` (``record.budget``), the matched setting and the
ratio count / B. Per-layer ranks move the count in steps of one layer's ``m + n``, so only a
``B`` below a few such steps is matched coarsely; ``max_shortfall`` (e.g. 0.05) turns a match
further below ``B`` than that into an error before training starts.

Example
-------
>>> from cl_ssvdo.schedule import BudgetSchedule
>>> ssvdo = BudgetSchedule.constant({"inner_ratio": 0.5, "outer_rank": 8})
>>> lora = BaselinePlugin("lora", match=ssvdo)  # rank matched to SSVD-O's count, per experience
>>> dora = BaselinePlugin("dora", rank=4)       # explicit rank
>>> full = FullFTPlugin(bias=False)             # the target layers' own weights
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from cl_ssvdo import budget as budget_lib
from cl_ssvdo.baselines import apply_adapter
from cl_ssvdo.schedule import BudgetSchedule

from .base import DEFAULT_TARGETS, AdapterPlugin, ExperienceRecord, LayerRecord, match_schedule

__all__ = ["BaselinePlugin", "FullFTPlugin"]

_RANK_METHODS = ("lora", "dora", "pissa")


class BaselinePlugin(AdapterPlugin):
    """A ``cl_ssvdo.baselines`` method re-applied per experience (see the module docstring).

    Arguments
    ---------
    method : str
        ``"lora"``, ``"dora"``, ``"pissa"`` or ``"full"`` (SSVD: :class:`SSVDPlugin`).
    targets : sequence of str
        Glob patterns of the ``nn.Linear`` layers (same as the SSVD-O plugin's).
    rank : int, optional
        Explicit LoRA-family rank (or give ``match``).
    match : BudgetSchedule, mapping or SSVDOPlugin, optional
        The SSVD-O schedule whose per-experience count the rank is matched to.
    max_shortfall : float, optional
        Raise before training when a matched count is below ``(1 - max_shortfall) * B``.
    log_metrics : bool
        Publish the per-experience scalars through the strategy's evaluator.
    **settings :
        Other settings of the method (``alpha``, ``dropout``, ``pissa_init``, ``bias``).
    """

    def __init__(
        self,
        method: str,
        targets: Sequence[str] = DEFAULT_TARGETS,
        *,
        rank: int | None = None,
        match: BudgetSchedule | Mapping[str, Any] | Any = None,
        max_shortfall: float | None = None,
        log_metrics: bool = True,
        **settings: Any,
    ) -> None:
        super().__init__(targets, log_metrics)
        if method not in (*_RANK_METHODS, "full"):
            raise ValueError(
                f"method: expected one of {[*_RANK_METHODS, 'full']} (SSVD: SSVDPlugin), got {method!r}"
            )
        if method in _RANK_METHODS and (rank is None) == (match is None):
            raise ValueError(f"{method}: give exactly one of rank= or match=")
        if method == "full" and (rank is not None or match is not None):
            raise ValueError("full: fine-tunes the whole layers; rank/match do not apply")
        if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
            raise ValueError(f"rank: must be an int >= 1, got {rank!r}")
        if max_shortfall is not None and not 0.0 <= max_shortfall < 1.0:
            raise ValueError(f"max_shortfall: must be in [0, 1), got {max_shortfall!r}")
        if "rank" in settings or "inner_ratio" in settings:
            raise ValueError("settings: pass rank= explicitly")
        self.adapter_method = method
        self.rank = rank
        self.match = None if match is None else match_schedule(match)
        self.max_shortfall = max_shortfall
        self.settings = dict(settings)
        self._handle = None

    # -------------------------------------------------------------- matching
    def ssvdo_budget(self, model: nn.Module, experience: int) -> int | None:
        """The SSVD-O count this plugin is matched to at ``experience`` (None if explicit)."""
        if self.match is None:
            return None
        schedule, outer = self.match
        return schedule.total(experience, self.target_layers(model), outer=outer)

    def matched_rank(
        self, model: nn.Module, experience: int
    ) -> tuple[int | list[int] | None, int | None]:
        """``(rank or per-layer ranks, SSVD-O budget)`` at ``experience``."""
        budget = self.ssvdo_budget(model, experience)
        if budget is None:
            return self.rank, None
        shapes = [(m, n) for _, m, n in self.target_layers(model)]
        ranks, count = budget_lib.match_ranks(self.adapter_method, shapes, budget)
        if self.max_shortfall is not None and count < (1.0 - self.max_shortfall) * budget:
            raise ValueError(
                f"{self.adapter_method}: the closest per-layer ranks ({ranks}) give {count} "
                f"parameters, {100 * (1 - count / budget):.1f}% below the SSVD-O count {budget} "
                f"at experience {experience} (max_shortfall={self.max_shortfall})"
            )
        return ranks, budget

    def validate_stream(self, model: nn.Module, n_experiences: int) -> None:
        if self.match is None:
            return
        self.match[0].check_length(n_experiences)
        for i in range(n_experiences):
            self.matched_rank(model, i)

    # -------------------------------------------------------------- lifecycle
    def attach(self, strategy, experience: int) -> ExperienceRecord:
        model = strategy.model
        settings = dict(self.settings)
        rank, budget = (None, None)
        if self.adapter_method in _RANK_METHODS:
            rank, budget = self.matched_rank(model, experience)
            settings["rank"] = rank
        self._had_peft_config = hasattr(model, "peft_config")
        self._handle = apply_adapter(model, self.adapter_method, list(self.targets), **settings)
        rows = self._handle.summary()
        ranks = rank if isinstance(rank, list) else [rank or 0] * len(rows)
        layers = [
            LayerRecord(
                name=row.name,
                out_features=row.shape[0],
                in_features=row.shape[1],
                trainable=row.trainable,
                rank=layer_rank,
            )
            for row, layer_rank in zip(rows, ranks, strict=True)
        ]
        total = sum(layer.trainable for layer in layers)
        record_settings: dict[str, Any] = {"method": self.adapter_method, **settings}
        if budget is not None:
            record_settings["matched_ratio"] = total / budget
        return ExperienceRecord(
            experience=experience,
            method=self.adapter_method,
            layers=layers,
            total_trainable=total,
            settings=record_settings,
            budget=budget,
        )

    def detach(self, strategy, record: ExperienceRecord) -> None:
        if self.save_adapters_to is not None and self.adapter_method in ("lora", "dora"):
            row = record.experience + 1  # the WER-matrix row (and model_exp_<row>) it produces
            self._handle.save_adapter(Path(self.save_adapters_to) / f"exp_{row:03d}")
        merged = self._handle.merge()
        if merged is not strategy.model:
            strategy.model = merged
        if not self._had_peft_config and hasattr(strategy.model, "peft_config"):
            # peft's tuner leaves its config on the module; the plain model had none.
            del strategy.model.peft_config
        self._handle = None


class FullFTPlugin(BaselinePlugin):
    """Full fine-tuning of the target layers only (weights and, with ``bias=True``, biases)."""

    def __init__(self, targets: Sequence[str] = DEFAULT_TARGETS, bias: bool = True, **kwargs: Any):
        super().__init__("full", targets, bias=bias, **kwargs)
