"""The Slurm executor: each child run is one job of a Slurm array submitted with ``submitit``.

Preemption and time limits: the job is a :class:`submitit.helpers.Checkpointable`; when Slurm
signals it (preemption, or the time limit with ``max_num_timeout`` requeues left) submitit
calls :meth:`ResumableChild.checkpoint`, which requeues the same job; the requeued job resumes
its run folder from the last per-experience checkpoint. ``array_parallelism`` caps how many
children run at once (``--array=0-N%P``). With ``cluster: local`` the same jobs run through
submitit's local executor (subprocesses on this machine): the code path minus ``sbatch``.

>>> SlurmExecutor({"partition": "gpu"}).parameters()["slurm_partition"]
'gpu'
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.executors.base import ChildJob, Executor, OnResult, forwarded_env, run_child
from experiments.results import RunResult, format_result

__all__ = ["ResumableChild", "SlurmExecutor"]

DEFAULTS: dict[str, Any] = {
    "cluster": "slurm",
    "folder": None,
    "partition": None,
    "time_min": 240,
    "gpus_per_node": 0,
    "cpus_per_task": 1,
    "mem_gb": None,
    "array_parallelism": 16,
    "max_num_timeout": 3,
    "additional_parameters": {},
}


class ResumableChild:
    """The callable submitit pickles: runs the child and, on preemption, requeues itself."""

    def __call__(self, job: ChildJob) -> RunResult:
        return run_child(job)

    def checkpoint(self, job: ChildJob):
        """Requeue as is: the run folder's checkpoints carry the state, not this object."""
        import submitit

        return submitit.helpers.DelayedSubmission(ResumableChild(), job)


class SlurmExecutor(Executor):
    """Children as a submitit job array on Slurm (or submitit's local executor)."""

    name = "slurm"
    defaults = DEFAULTS

    def parameters(self) -> dict[str, Any]:
        """``AutoExecutor.update_parameters`` arguments (slurm_* ones are ignored locally)."""
        s = self.settings
        params: dict[str, Any] = {
            "timeout_min": int(s["time_min"]),
            "gpus_per_node": int(s["gpus_per_node"]),
            "cpus_per_task": int(s["cpus_per_task"]),
            "tasks_per_node": 1,
            "nodes": 1,
            "slurm_array_parallelism": int(s["array_parallelism"]),
        }
        if s.get("partition"):
            params["slurm_partition"] = s["partition"]
        if s.get("mem_gb"):
            params["mem_gb"] = s["mem_gb"]
        if s.get("additional_parameters"):
            params["slurm_additional_parameters"] = dict(s["additional_parameters"])
        return params

    def run(
        self, jobs: Sequence[ChildJob], *, progress: bool = True, on_result: OnResult | None = None
    ) -> list[RunResult]:
        t0 = time.monotonic()
        results = []
        for i, job in enumerate(self.submit(jobs)):
            result = job.result()  # raises submitit.core.utils.FailedJobError with the log
            if progress:
                print(f"[slurm {job.job_id} {time.monotonic() - t0:.0f}s] {format_result(result)}")
            results.append(result)
            if on_result is not None:
                on_result(i, result)
        return results

    def submit(self, jobs: Sequence[ChildJob]) -> list[Any]:
        """Submit ``jobs`` as one array; the submitit jobs, in order."""
        import submitit

        if not jobs:
            return []
        folder = Path(self.settings["folder"] or Path(jobs[0].run_dir).parent.parent / "submitit")
        cluster = self.settings["cluster"]
        executor = submitit.AutoExecutor(
            folder=folder / "%j",
            cluster=cluster,
            **{f"{cluster}_max_num_timeout": int(self.settings["max_num_timeout"])},
        )
        params = self.parameters()
        if self.settings["cluster"] != "slurm":
            params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
        executor.update_parameters(name="cl-ssvdo", **params)
        env = forwarded_env()
        for job in jobs:
            job.threads = job.threads or int(self.settings["cpus_per_task"])
            job.env = {**env, **job.env}
        return executor.map_array(ResumableChild(), list(jobs))
