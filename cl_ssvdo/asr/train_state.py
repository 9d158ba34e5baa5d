"""Pretraining's checkpointed loop state and its learning-rate schedule.

Imports speechbrain's checkpoint hooks (and the generator helpers of
:mod:`cl_ssvdo.asr.reproducibility`) only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks

from .reproducibility import rng_state, set_rng_state

__all__ = ["TrainState", "warmup_cosine"]


def warmup_cosine(
    warmup_steps: int, total_steps: int, floor: float = 0.0
) -> Callable[[int], float]:
    """LR multiplier: linear warm-up to 1 over ``warmup_steps``, cosine decay to ``floor``
    at ``total_steps`` (constant ``floor`` afterwards).

    >>> f = warmup_cosine(10, 110)
    >>> f(0), f(10), round(f(60), 3), f(110), f(500)
    (0.1, 1.0, 0.5, 0.0, 0.0)
    """

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(total_steps - warmup_steps, 1)
        progress = min((step - warmup_steps) / span, 1.0)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


@register_checkpoint_hooks
class TrainState:
    """The loop's counters, checkpointed as JSON next to the model and optimizer.

    >>> import tempfile
    >>> state = TrainState(); state.step = 7; state.capture_rng()
    >>> path = Path(tempfile.mkdtemp()) / "state.json"
    >>> state.save(path)
    >>> again = TrainState(); again.load(path)
    >>> again.step, again.restore_rng()
    (7, True)
    """

    def __init__(self) -> None:
        self.step = 0
        self.epoch = 0  # index of the epoch in progress (= epochs completed)
        self.batch_in_epoch = 0  # batches of that epoch already trained
        self.epoch_loss_sum = 0.0
        self.epoch_loss_count = 0
        self.best_wer: float | None = None
        self.bad_epochs = 0
        self.train_seconds = 0.0
        self.history: list[dict[str, Any]] = []
        self.finished = False
        self.rng: dict[str, Any] | None = None  # generator states at the last save

    def capture_rng(self) -> None:
        """Stores the torch (and CUDA), numpy and ``random`` generator states."""
        self.rng = rng_state()

    def restore_rng(self) -> bool:
        """Restores the states stored by :meth:`capture_rng`; False when there are none."""
        if not self.rng:
            return False
        set_rng_state(self.rng)
        return True

    @mark_as_saver
    def save(self, path: str | Path) -> None:
        """Writes the state as JSON."""
        Path(path).write_text(json.dumps(vars(self)), encoding="utf-8")

    @staticmethod
    def is_readable(path: str | Path) -> bool:
        """True when ``path`` holds a complete state written by :meth:`save`."""
        try:
            return isinstance(json.loads(Path(path).read_text(encoding="utf-8")), dict)
        except (OSError, ValueError):
            return False

    @mark_as_loader
    def load(self, path: str | Path, end_of_epoch: bool = False) -> None:
        """Reads the state written by :meth:`save`."""
        del end_of_epoch
        for key, value in json.loads(Path(path).read_text(encoding="utf-8")).items():
            setattr(self, key, value)
