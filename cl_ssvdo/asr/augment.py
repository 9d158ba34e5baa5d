"""Training-time augmentation from ``speechbrain.augment``: speed perturbation and SpecAugment.

The model applies it inside ``forward`` only in training mode, so evaluation and exported
folders are unaffected. Off in the ``ci`` and ``small`` presets (the measured recipe did not
use it); enable it with ``{"base": "small", "augment": {...}}``.

Must not depend on avalanche, mlflow or benchmarks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from speechbrain.augment.freq_domain import SpectrogramDrop, Warping
from speechbrain.augment.time_domain import SpeedPerturb


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations to apply and how strongly.

    Arguments
    ---------
    speeds : tuple[int, ...]
        Speed-perturbation factors in percent (one chosen per batch); () disables it.
    time_masks : int
        Maximum number of time masks per utterance (SpecAugment); 0 disables them.
    time_mask_frames : int
        Maximum width of a time mask, in feature frames (10 ms).
    freq_masks : int
        Maximum number of frequency masks; 0 disables them.
    freq_mask_bins : int
        Maximum width of a frequency mask, in mel bins.
    time_warp : bool
        Whether to apply SpecAugment time warping.
    prob : float
        Probability that a batch is augmented at all.
    """

    speeds: tuple[int, ...] = (95, 100, 105)
    time_masks: int = 2
    time_mask_frames: int = 20
    freq_masks: int = 2
    freq_mask_bins: int = 10
    time_warp: bool = True
    prob: float = 1.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AugmentConfig:
        """Builds a config from a mapping; unknown keys raise ``ValueError`` naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"augment: unknown keys {unknown}; valid keys are {sorted(known)}")
        values = dict(data)
        if "speeds" in values:
            values["speeds"] = tuple(int(s) for s in values["speeds"])
        config = cls(**values)
        if not 0.0 <= config.prob <= 1.0:
            raise ValueError(f"augment.prob must be in [0, 1], got {config.prob}")
        if any(s <= 0 for s in config.speeds):
            raise ValueError(f"augment.speeds must be positive percentages, got {config.speeds}")
        return config

    def to_dict(self) -> dict[str, Any]:
        """Plain-type mapping (for YAML)."""
        data = asdict(self)
        data["speeds"] = list(self.speeds)
        return data


def _masking(count: int, width: int, dim: int) -> SpectrogramDrop | None:
    """SpecAugment masking along ``dim`` of [B, T, F] features (1 time, 2 frequency): 1 to
    ``count`` masks, each 1 to ``width`` wide; None when ``count`` is 0."""
    if count <= 0:
        return None
    return SpectrogramDrop(
        drop_length_low=1,
        drop_length_high=width,
        drop_count_low=1,
        drop_count_high=count,
        dim=dim,
    )


class Augmentation(torch.nn.Module):
    """Waveform and feature augmentation, active only in training mode.

    Arguments
    ---------
    config : AugmentConfig
        What to apply.
    sample_rate : int
        Sampling rate of the waveforms (for speed perturbation).

    Example
    -------
    >>> aug = Augmentation(AugmentConfig(speeds=(90,)))
    >>> _ = aug.train()
    >>> aug.waveform(torch.randn(2, 16000)).shape
    torch.Size([2, 17778])
    >>> aug.features(torch.randn(2, 100, 80)).shape
    torch.Size([2, 100, 80])
    """

    def __init__(self, config: AugmentConfig, sample_rate: int = 16000) -> None:
        super().__init__()
        self.config = config
        self.speed = (
            SpeedPerturb(orig_freq=sample_rate, speeds=list(config.speeds))
            if config.speeds and set(config.speeds) != {100}
            else None
        )
        self.time_drop = _masking(config.time_masks, config.time_mask_frames, dim=1)
        self.freq_drop = _masking(config.freq_masks, config.freq_mask_bins, dim=2)
        self.warp = Warping(warp_window=5, dim=1) if config.time_warp else None
        self._active = True

    def _should_apply(self) -> bool:
        if not self.training:
            return False
        # Decided once per batch in waveform(); features() reuses the decision.
        return self._active

    def waveform(self, wavs: torch.Tensor) -> torch.Tensor:
        """Speed-perturbs ``wavs`` [B, T] -> [B, T'] (relative lengths are unchanged)."""
        self._active = bool(torch.rand(()) < self.config.prob)
        if not self._should_apply() or self.speed is None:
            return wavs
        return self.speed(wavs)

    def features(self, feats: torch.Tensor) -> torch.Tensor:
        """Applies time warping and time/frequency masks to ``feats`` [B, T, F]."""
        if not self._should_apply():
            return feats
        if self.warp is not None:
            feats = self.warp(feats)
        if self.time_drop is not None:
            feats = self.time_drop(feats)
        if self.freq_drop is not None:
            feats = self.freq_drop(feats)
        return feats
