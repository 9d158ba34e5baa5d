"""What every executor shares: one child run as a picklable job, the function a worker calls
for it, and the small interface a sweep uses (``run(jobs) -> results`` in job order).

A job names its run folder; the runner resumes that folder from its last per-experience
checkpoint, so a retried or requeued job (Ray worker lost, Slurm preemption) continues where
the killed attempt stopped, and a finished one returns its result without recomputing.
Each attempt appends one line to ``<run folder>/attempts.jsonl`` (host, pid, the experience it
resumed from) so a resume can be seen afterwards.

>>> job = ChildJob(config={"name": "x"}, seed=0, run_dir="/tmp/r", run_name="x-s0")
>>> job.label
'x-s0'
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.results import RunResult

__all__ = ["ChildJob", "Executor", "OnResult", "read_attempts", "run_child", "run_is_finished",
           "run_job"]  # fmt: skip

ATTEMPTS_FILE = "attempts.jsonl"
# Called with (index of the job in the submitted list, its result) as each job ends.
OnResult = Callable[[int, RunResult], None]
# Passed on to workers that do not inherit the submitting shell's environment (Ray, Slurm).
FORWARDED_ENV = ("HF_HUB_OFFLINE", "MLFLOW_ENABLE_ASYNC_LOGGING", "MLFLOW_TRACKING_USERNAME",
                 "MLFLOW_TRACKING_PASSWORD", "CL_SSVDO_TEST_CACHE")  # fmt: skip


@dataclass
class ChildJob:
    """One child run of a sweep: everything a worker needs, nothing tied to this process."""

    config: dict[str, Any]
    seed: int
    run_dir: str
    run_name: str
    tracking_uri: str | None = None
    offline: bool = False
    parent_run_id: str | None = None
    threads: int | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.run_name


def forwarded_env() -> dict[str, str]:
    """The variables of :data:`FORWARDED_ENV` set here (no tracking URI: jobs carry their own)."""
    return {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}


def _resumed_from(run_dir: Path) -> int | None:
    from experiments.checkpoint import resume_point

    if not (run_dir / "state.json").is_file():
        return None
    completed = int(json.loads((run_dir / "state.json").read_text()).get("completed", -1))
    point = resume_point(run_dir / "checkpoints", at_most=completed) if completed >= 0 else None
    return None if point is None else int(point[0])


def run_is_finished(run_dir: str | Path) -> bool:
    """The run folder holds a finished run, which a job reads back instead of recomputing."""
    state = Path(run_dir) / "state.json"
    return state.is_file() and json.loads(state.read_text()).get("status") == "FINISHED"


def read_attempts(run_dir: str | Path) -> list[dict[str, Any]]:
    """The attempts of a run folder, oldest first (empty when it never ran under an executor)."""
    path = Path(run_dir) / ATTEMPTS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_child(job: ChildJob) -> RunResult:
    """Run (or resume, or read back) one child; what every worker calls."""
    os.environ.update(job.env)
    if job.threads:
        import torch

        torch.set_num_threads(int(job.threads))
    run_dir = Path(job.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not run_is_finished(run_dir):
        record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": time.time(),
            "resumed_from": _resumed_from(run_dir),
        }
        with (run_dir / ATTEMPTS_FILE).open("a") as fh:
            fh.write(json.dumps(record) + "\n")
    return run_job(job, progress=False)


def run_job(job: ChildJob, progress: bool = False) -> RunResult:
    """:func:`experiments.runner.run_experiment` for ``job``; when the store does not answer
    at the start (a server restarting), the run goes on offline and the sweep pushes it once
    the store is back, instead of failing the whole sweep."""
    from experiments.runner import run_experiment
    from experiments.tracking import TrackingUnreachableError

    kwargs = dict(parent_run_id=job.parent_run_id, progress=progress, run_dir=job.run_dir,
                  run_name=job.run_name, tracking_uri=job.tracking_uri)  # fmt: skip
    try:
        return run_experiment(job.config, job.seed, offline=job.offline, **kwargs)
    except TrackingUnreachableError as exc:
        if job.offline:
            raise
        warnings.warn(f"{exc}; running {job.run_name} offline, the sweep pushes it later",
                      RuntimeWarning, stacklevel=2)  # fmt: skip
        return run_experiment(job.config, job.seed, offline=True, **kwargs)


class Executor(ABC):
    """Runs a sweep's children somewhere; results come back in job order."""

    name = "base"
    defaults: Mapping[str, Any] = {}  # the executor's settings when the config leaves them out

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        self.settings = {**self.defaults, **dict(settings or {})}

    @abstractmethod
    def run(
        self, jobs: Sequence[ChildJob], *, progress: bool = True, on_result: OnResult | None = None
    ) -> list[RunResult]:
        """Every job's result, in the order of ``jobs``; raises if a job failed for good.

        ``on_result(i, result)`` is called as job ``i`` ends, in the order the jobs end.
        """

    def describe(self) -> dict[str, str]:
        """Params logged on the sweep's parent run (``executor.*``)."""
        return {"executor.kind": self.name, **{f"executor.{k}": str(v) for k, v in
                                               sorted(self.settings.items())}}  # fmt: skip
