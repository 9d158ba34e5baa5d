"""The baselines as plugins of the SSVD-O plugin's shape: LoRA, DoRA, PiSSA, MiCA, CorDA, OSF
(peft) and full fine-tuning of the same layers (SSVD, the inner transform alone, is in
:mod:`strategies.adapters.ssvdo`).

Each is applied before every training experience (``cl_ssvdo.baselines.apply_adapter`` on the
current, merged weights), trains alone (every other parameter frozen, optimizer rebuilt over the
adapter's parameters) and is merged and removed after the experience, so evaluation and the next
experience see a plain model (same lifecycle and records as
:class:`strategies.adapters.ssvdo.SSVDOPlugin`).

Budget matching. Give either an explicit setting (``rank`` for the rank methods, ``inner_ratio``
for SSVD) or ``match=`` an SSVD-O schedule (or an ``SSVDOPlugin``): per experience the SSVD-O
count ``B`` of the same layers is computed from that schedule and

- LoRA/DoRA/PiSSA/MiCA/CorDA/OSF get per-layer ranks whose trainable count comes closest to
  ``B`` without exceeding it (:func:`cl_ssvdo.budget.match_ranks`: the largest uniform rank,
  plus one on the subset of layers that lands closest; peft's ``rank_pattern``). A rank costs
  ``m + n`` per layer (LoRA, PiSSA, CorDA; DoRA adds ``m`` once), ``n`` for MiCA (its ``B`` is
  frozen, so MiCA gets a higher rank at the same count) and ``m + n + 1`` for OSF (its rank is
  the number of trainable bottom singular triplets ``U_low``, ``S_low``, ``V_low``);
- SSVD gets the per-layer inner ranks of :func:`cl_ssvdo.budget.allocate` with the whole
  budget on the inner side (inner share 1), also never above ``B``.

CorDA needs a calibration pass before its adapter is built: ``calibration_batches`` batches of
the current experience's training data (its own batch size; a loader shuffled by a generator
seeded from ``torch.initial_seed()`` and the experience, so the training order and the global
RNG are untouched) run through the plain model one utterance at a time (cropped to its length;
a model with its own ``loss``, e.g. Whisper, also runs its decoder on the transcript), while
each target layer's input covariance is collected
(:func:`cl_ssvdo.baselines.corda_covariances`). The record's settings say how many
batches and utterances it used.

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
>>> corda = BaselinePlugin("corda", match=ssvdo, calibration_batches=4)
>>> full = FullFTPlugin(bias=False)             # the target layers' own weights
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cl_ssvdo import budget as budget_lib
from cl_ssvdo.baselines import RANK_METHODS, apply_adapter
from cl_ssvdo.schedule import BudgetSchedule

from .base import DEFAULT_TARGETS, AdapterPlugin, ExperienceRecord, LayerRecord, match_schedule

__all__ = ["BaselinePlugin", "FullFTPlugin"]


class BaselinePlugin(AdapterPlugin):
    """A ``cl_ssvdo.baselines`` method re-applied per experience (see the module docstring).

    Arguments
    ---------
    method : str
        ``"lora"``, ``"dora"``, ``"pissa"``, ``"mica"``, ``"corda"``, ``"osf"`` or ``"full"``
        (SSVD: :class:`SSVDPlugin`).
    targets : sequence of str
        Glob patterns of the ``nn.Linear`` layers (same as the SSVD-O plugin's).
    rank : int, optional
        Explicit rank (or give ``match``); OSF: trainable singular triplets per layer.
    match : BudgetSchedule, mapping or SSVDOPlugin, optional
        The SSVD-O schedule whose per-experience count the rank is matched to.
    max_shortfall : float, optional
        Raise before training when a matched count is below ``(1 - max_shortfall) * B``.
    calibration_batches : int, optional
        CorDA only, required there: training batches of the current experience run through
        the model to collect each target layer's input covariance.
    log_metrics : bool
        Publish the per-experience scalars through the strategy's evaluator.
    **settings :
        Other settings of the method (``alpha``, ``dropout``, ``pissa_init``, ``corda_method``,
        ``bias``).
    """

    def __init__(
        self,
        method: str,
        targets: Sequence[str] = DEFAULT_TARGETS,
        *,
        rank: int | None = None,
        match: BudgetSchedule | Mapping[str, Any] | Any = None,
        max_shortfall: float | None = None,
        calibration_batches: int | None = None,
        log_metrics: bool = True,
        **settings: Any,
    ) -> None:
        super().__init__(targets, log_metrics)
        if method not in (*RANK_METHODS, "full"):
            raise ValueError(
                f"method: expected one of {[*RANK_METHODS, 'full']} (SSVD: SSVDPlugin), got {method!r}"
            )
        if method in RANK_METHODS and (rank is None) == (match is None):
            raise ValueError(f"{method}: give exactly one of rank= or match=")
        if method == "full" and (rank is not None or match is not None):
            raise ValueError("full: fine-tunes the whole layers; rank/match do not apply")
        if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
            raise ValueError(f"rank: must be an int >= 1, got {rank!r}")
        if max_shortfall is not None and not 0.0 <= max_shortfall < 1.0:
            raise ValueError(f"max_shortfall: must be in [0, 1), got {max_shortfall!r}")
        if "rank" in settings or "inner_ratio" in settings:
            raise ValueError("settings: pass rank= explicitly")
        if "calibration" in settings:
            raise ValueError(
                "calibration: the plugin runs CorDA's calibration pass itself; give "
                "calibration_batches="
            )
        if method == "corda":
            if (
                isinstance(calibration_batches, bool)
                or not isinstance(calibration_batches, int)
                or calibration_batches < 1
            ):
                raise ValueError(
                    "calibration_batches: corda needs the number of training batches (an int >= 1) "
                    "of each experience to run through the model for its input covariance, got "
                    f"{calibration_batches!r}"
                )
        elif calibration_batches is not None:
            raise ValueError(f"calibration_batches: only corda takes it, not {method}")
        self.adapter_method = method
        self.calibration_batches = calibration_batches
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
        if self.adapter_method in RANK_METHODS:
            rank, budget = self.matched_rank(model, experience)
            settings["rank"] = rank
        self._had_peft_config = hasattr(model, "peft_config")
        calibration: dict[str, int] = {}
        if self.adapter_method == "corda":
            settings["calibration"] = self._calibration(strategy, experience, calibration)
        self._handle = apply_adapter(model, self.adapter_method, list(self.targets), **settings)
        settings.pop("calibration", None)  # a callable: records hold data only
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
        record_settings: dict[str, Any] = {"method": self.adapter_method, **settings, **calibration}
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

    def _calibration(self, strategy, experience: int, counts: dict[str, int]):
        """CorDA's ``calibration(model)``: ``calibration_batches`` batches of the current
        experience's training data, one utterance per forward call (see the module docstring);
        ``counts`` gets the batches and utterances it ran."""
        from torch.utils.data import DataLoader

        dataset = getattr(strategy, "adapted_dataset", None)
        if dataset is None:
            dataset = strategy.experience.dataset
        if len(dataset) == 0:
            raise ValueError(
                f"calibration_batches: experience {experience} has no training data for CorDA's "
                "calibration pass"
            )
        seed = (torch.initial_seed() + 1_000_003 * (experience + 1)) % (2**63)
        loader = DataLoader(
            dataset,
            batch_size=int(getattr(strategy, "train_mb_size", 1) or 1),
            shuffle=True,
            generator=torch.Generator().manual_seed(seed),
            collate_fn=getattr(dataset, "collate_fn", None),
            num_workers=0,
        )
        device = getattr(strategy, "device", None)
        n_batches = self.calibration_batches

        def run(model: nn.Module) -> None:
            own_loss = callable(getattr(model, "loss", None)) and callable(
                getattr(model, "transcribe", None)
            )
            batches = utterances = 0
            for batch in loader:
                wavs, wav_lens, words = batch[0], batch[1], batch[2]
                frames = wavs.shape[1]
                for i in range(wavs.shape[0]):
                    length = max(1, min(frames, round(float(wav_lens[i]) * frames)))
                    wav = wavs[i : i + 1, :length].to(device)
                    output = model(wav, torch.ones(1, device=wav.device))
                    if own_loss:  # e.g. Whisper: the decoder's layers see the transcript
                        model.loss(output, [words[i]])
                    utterances += 1
                batches += 1
                if batches == n_batches:
                    break
            counts.update(calibration_batches=batches, calibration_utterances=utterances)

        return run

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
