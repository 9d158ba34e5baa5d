"""Run-by-run progress of a batch of executor jobs (a sweep, a phase of a study): a
checkpoint after every run, and a line saying how far the batch is and about how long it has
left.

The checkpoint after every run, not only when the batch ends, is what keeps a sweep's list of
children and a study's wall time true when the process is killed (``SIGKILL``, a session or
an allocation ending). The estimate counts only the runs this process computed: runs a job
reads back from a finished folder take no time and would flatter it. Jobs of unequal length
(a study's long-horizon runs) get a relative cost each; the pace is then time per unit of
cost, and what is left is the cost of the runs not finished yet.

>>> import time
>>> saved = []
>>> p = JobsProgress("test", total=4, finished_before=frozenset({0}),
...                   checkpoint=lambda: saved.append(1), show=False)
>>> p.started = time.monotonic() - 120.0  # two minutes into the phase
>>> p(0, None); p(2, None)
>>> (p.done, p.computed, len(saved), round(p.eta_seconds() / 60))
(2, 1, 2, 4)
>>> q = JobsProgress("test", total=3, finished_before=frozenset(), checkpoint=None,
...                   show=False, costs=(1.0, 1.0, 4.0))
>>> q.started = time.monotonic() - 120.0
>>> q(0, None)  # one unit of cost in two minutes; five units left
>>> round(q.eta_seconds() / 60)
10
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
    computed). ``checkpoint``: called after every run (None: nothing to save). ``costs``: each
    job's relative cost (its training steps, say); None: all alike.
    """

    label: str
    total: int
    finished_before: frozenset[int]
    checkpoint: Callable[[], None] | None
    show: bool = True
    costs: tuple[float, ...] | None = None
    started: float = field(default_factory=time.monotonic)  # when the batch was submitted
    reported: set[int] = field(default_factory=set)  # the jobs whose results came

    def __post_init__(self) -> None:
        if self.costs is not None and len(self.costs) != self.total:
            raise ValueError(f"costs: {len(self.costs)} given for {self.total} jobs")
        if self.costs is not None and not all(c > 0 for c in self.costs):
            raise ValueError("costs: every job's cost must be positive")

    def cost(self, index: int) -> float:
        return 1.0 if self.costs is None else float(self.costs[index])

    @property
    def done(self) -> int:
        return len(self.reported)

    @property
    def computed(self) -> int:
        """Jobs this invocation ran (reported, not read back)."""
        return len(self.reported - self.finished_before)

    @property
    def computed_cost(self) -> float:
        return sum(self.cost(i) for i in self.reported - self.finished_before)

    def __call__(self, index: int, result: Any) -> None:
        self.reported.add(index)
        if self.checkpoint is not None:
            self.checkpoint()
        if self.show:
            print(self.line(), flush=True)

    def per_run_seconds(self) -> float | None:
        """This invocation's pace: seconds since the batch started per computed run."""
        return (time.monotonic() - self.started) / self.computed if self.computed else None

    def eta_seconds(self) -> float | None:
        """Seconds left at this invocation's pace per unit of cost; None before it has
        computed a run."""
        if not self.computed_cost:
            return None
        left = sum(
            self.cost(i)
            for i in range(self.total)
            if i not in self.finished_before and i not in self.reported
        )
        return (time.monotonic() - self.started) / self.computed_cost * left

    def line(self) -> str:
        """``[label] 72 of 301 runs finished; 12 computed now, 4.7 min each; about 18.0 h left``"""
        head = f"[{self.label}] {self.done} of {self.total} runs finished"
        per_run = self.per_run_seconds()
        if per_run is None:
            return f"{head} (read back)"
        eta = self.eta_seconds()
        return (f"{head}; {self.computed} computed now, {format_duration(per_run)} each;"
                f" about {format_duration(eta)} left")  # fmt: skip
