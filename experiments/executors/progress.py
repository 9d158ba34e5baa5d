"""Run-by-run progress of a batch of executor jobs (a sweep, a phase of a study): a
checkpoint after every run, and a line saying how far the batch is and about how long it has
left.

The checkpoint after every run, not only when the batch ends, is what keeps a sweep's list of
children and a study's wall time true when the process is killed (``SIGKILL``, a session or
an allocation ending). The estimate counts only the runs this process computed: runs a job
reads back from a finished folder take no time and would flatter it.

>>> import time
>>> saved = []
>>> p = JobsProgress("test", total=4, finished_before=frozenset({0}),
...                   checkpoint=lambda: saved.append(1), show=False)
>>> p.started = time.monotonic() - 120.0  # two minutes into the phase
>>> p(0, None); p(2, None)
>>> (p.done, p.computed, len(saved), round(p.eta_seconds() / 60))
(2, 1, 2, 4)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["JobsProgress", "format_duration"]


def format_duration(seconds: float) -> str:
    """``"42 s"``, ``"7.5 min"`` or ``"3.2 h"``.

    >>> [format_duration(s) for s in (42, 450, 11520)]
    ['42 s', '7.5 min', '3.2 h']
    """
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass
class JobsProgress:
    """The ``on_result`` callback of an executor (``Executor.run``) for ``total`` jobs.

    ``finished_before``: indices of the jobs whose runs had finished before (read back, not
    computed). ``checkpoint``: called after every run (None: nothing to save).
    """

    label: str
    total: int
    finished_before: frozenset[int]
    checkpoint: Callable[[], None] | None
    show: bool = True
    started: float = field(default_factory=time.monotonic)  # when the batch was submitted
    done: int = 0
    computed: int = 0

    def __call__(self, index: int, result: Any) -> None:
        self.done += 1
        if index not in self.finished_before:
            self.computed += 1
        if self.checkpoint is not None:
            self.checkpoint()
        if self.show:
            print(self.line(), flush=True)

    def per_run_seconds(self) -> float | None:
        """This invocation's pace: seconds since the batch started per computed run."""
        return (time.monotonic() - self.started) / self.computed if self.computed else None

    def eta_seconds(self) -> float | None:
        """Seconds left at this invocation's pace; None before it has computed a run."""
        per_run = self.per_run_seconds()
        if per_run is None:
            return None
        return per_run * (self.total - len(self.finished_before) - self.computed)

    def line(self) -> str:
        """``[label] 72 of 301 runs finished; 12 computed now, 4.7 min each; about 18.0 h left``"""
        head = f"[{self.label}] {self.done} of {self.total} runs finished"
        per_run = self.per_run_seconds()
        if per_run is None:
            return f"{head} (read back)"
        eta = self.eta_seconds()
        return (f"{head}; {self.computed} computed now, {format_duration(per_run)} each;"
                f" about {format_duration(eta)} left")  # fmt: skip
