"""Progress of a run: steps within an experience (loss, step/s) and evaluation, readable both
in a terminal and in a log file.

On a terminal, tqdm bars. When the output is not a terminal (a log file, CI, ``nohup``), tqdm's
carriage returns would pile up (300+ KB logs of redrawn bars): plain lines then, at most one
per ``interval`` seconds plus one at the end of each phase::

    [ssvdo-s0] train child (exp 2/3): step 40/120, loss 1.234, 2.1 step/s, 19 s
    [ssvdo-s0] eval accent: 3/3 batches, 4 s

:class:`StepProgress` is an Avalanche plugin (any template); the bars themselves
(:func:`cl_ssvdo.progress.progress_bar`) are shared with pretraining and stream generation.

>>> StepProgress("demo").label
'demo'
"""

from __future__ import annotations

import time
from typing import Any

from avalanche.core import SupervisedPlugin

from cl_ssvdo.progress import DEFAULT_INTERVAL, progress_bar

__all__ = ["StepProgress"]


class StepProgress(SupervisedPlugin):
    """Training steps (loss, step/s) within each experience and evaluation batches per domain.

    Arguments
    ---------
    label : str
        Prefix of every bar/line (e.g. the run name).
    n_experiences : int, optional
        Stream length, shown as ``exp i/n``.
    interval : float
        Seconds between plain lines when the output is not a terminal.
    """

    def __init__(
        self, label: str, n_experiences: int | None = None, interval: float = DEFAULT_INTERVAL
    ) -> None:
        super().__init__()
        self.label = label
        self.n_experiences = n_experiences
        self.interval = interval
        self._bar: Any = None
        self._loss: float | None = None
        self._start = 0.0
        self._steps = 0

    @staticmethod
    def _name(strategy: Any) -> str:
        exp = strategy.experience
        return str(getattr(exp, "domain", None) or f"exp{exp.current_experience}")

    def _open(self, desc: str, total: int | None, unit: str) -> None:
        self._close()
        self._bar = progress_bar(desc=desc, total=total, unit=unit, interval=self.interval)

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    # -- training ----------------------------------------------------------------------------
    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        try:
            total: int | None = len(strategy.dataloader) * int(strategy.train_epochs)
        except TypeError:
            total = None
        cap = getattr(strategy, "max_steps_per_exp", None)
        if cap is not None:
            total = cap if total is None else min(total, cap)
        index = int(strategy.experience.current_experience) + 1
        of = f"/{self.n_experiences}" if self.n_experiences else ""
        self._open(f"{self.label} train {self._name(strategy)} (exp {index}{of})", total, "step")
        self._start, self._steps, self._loss = time.monotonic(), 0, None

    def after_training_iteration(self, strategy: Any, **kwargs: Any) -> None:
        if self._bar is None:
            return
        loss = getattr(strategy, "loss", None)
        try:
            value = float(loss.detach()) if loss is not None else None
        except (TypeError, ValueError, RuntimeError):
            value = None
        if value is not None:  # smoothed, so a line shows the trend, not one batch
            self._loss = value if self._loss is None else 0.9 * self._loss + 0.1 * value
        self._steps += 1
        rate = self._steps / max(time.monotonic() - self._start, 1e-9)
        loss_text = f"loss {self._loss:.3f}, " if self._loss is not None else ""
        self._bar.set_postfix_str(f"{loss_text}{rate:.2f} step/s", refresh=False)
        self._bar.update(1)

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        self._close()

    # -- evaluation --------------------------------------------------------------------------
    def before_eval_exp(self, strategy: Any, **kwargs: Any) -> None:
        try:
            total: int | None = len(strategy.dataloader)
        except TypeError:
            total = None
        self._open(f"{self.label} eval {self._name(strategy)}", total, "batch")

    def after_eval_iteration(self, strategy: Any, **kwargs: Any) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def after_eval_exp(self, strategy: Any, **kwargs: Any) -> None:
        self._close()
