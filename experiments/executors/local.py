"""The local executor: children one after another in this process (the default).

>>> LocalExecutor().name
'local'
"""

from __future__ import annotations

from collections.abc import Sequence

from experiments.executors.base import ChildJob, Executor, OnResult, run_job
from experiments.results import RunResult, format_result

__all__ = ["LocalExecutor"]


class LocalExecutor(Executor):
    """Each child in turn, with progress bars; no attempt bookkeeping needed."""

    name = "local"

    def run(
        self, jobs: Sequence[ChildJob], *, progress: bool = True, on_result: OnResult | None = None
    ) -> list[RunResult]:
        results = []
        for i, job in enumerate(jobs):
            result = run_job(job, progress=progress)
            if progress:
                print(format_result(result))
            results.append(result)
            if on_result is not None:
                on_result(i, result)
        return results
