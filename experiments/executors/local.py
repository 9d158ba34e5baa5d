"""The local executor: children one after another in this process (the default).

>>> LocalExecutor().name
'local'
"""

from __future__ import annotations

from collections.abc import Sequence

from experiments.executors.base import ChildJob, Executor, run_job
from experiments.results import RunResult, format_result

__all__ = ["LocalExecutor"]


class LocalExecutor(Executor):
    """Each child in turn, with progress bars; no attempt bookkeeping needed."""

    name = "local"

    def run(self, jobs: Sequence[ChildJob], *, progress: bool = True) -> list[RunResult]:
        results = []
        for job in jobs:
            result = run_job(job, progress=progress)
            if progress:
                print(format_result(result))
            results.append(result)
        return results
