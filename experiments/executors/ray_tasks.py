"""The Ray executor: each child run is one Ray task with declared resources.

Tasks, not Ray Tune trials: a sweep's grid is fixed in advance (no search algorithm, no
early stopping, no trial scheduler), each child already resumes from its own per-experience
checkpoint and logs to MLflow itself, and Tune would add its own result/checkpoint layout
(``ray_results``) that duplicates the run folder and the MLflow parent/child runs. A task
with ``num_cpus``/``num_gpus`` and ``max_retries`` is all a sweep needs: Ray places it, and
when the worker or its node dies Ray reruns it, and the rerun resumes from the run folder's
last checkpoint (on a shared file system) instead of starting over.

``address``: ``null`` starts a local cluster for the call (shut down afterwards), ``auto``
joins the cluster this machine belongs to (``ray start``), ``ray://host:10001`` goes through
Ray Client, any other ``host:port`` joins that cluster's GCS.

>>> RayExecutor({"num_cpus": 2}).options()["num_cpus"]
2
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from experiments.executors.base import ChildJob, Executor, OnResult, forwarded_env, run_child
from experiments.results import RunResult, format_result

__all__ = ["RayExecutor"]

DEFAULTS: dict[str, Any] = {"address": None, "num_cpus": 1, "num_gpus": 0, "max_retries": 3}


class RayExecutor(Executor):
    """Children as Ray tasks; ``ray.init`` only when no Ray session is open in this process."""

    name = "ray"
    defaults = DEFAULTS

    def options(self) -> dict[str, Any]:
        """``ray.remote`` options of every child task."""
        s = self.settings
        opts: dict[str, Any] = {
            "num_cpus": s["num_cpus"],
            "num_gpus": s["num_gpus"],
            "max_retries": int(s["max_retries"]),
            "retry_exceptions": False,  # a config error or a diverged run is not retried
        }
        if s.get("runtime_env"):
            opts["runtime_env"] = s["runtime_env"]
        return opts

    def run(
        self, jobs: Sequence[ChildJob], *, progress: bool = True, on_result: OnResult | None = None
    ) -> list[RunResult]:
        import ray

        started_here = False
        if not ray.is_initialized():
            address = self.settings.get("address")
            extra: dict[str, Any] = {}
            if self.settings.get("node_ip_address"):
                # the driver's address in the cluster (machines with several interfaces)
                extra["_node_ip_address"] = self.settings["node_ip_address"]
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=progress,
                **extra,
                **(
                    {"num_cpus": self.settings["local_cpus"]}
                    if self.settings.get("local_cpus") and not address
                    else {}
                ),  # fmt: skip
            )
            started_here = True
        try:
            task = ray.remote(run_child).options(**self.options())
            threads = max(1, int(self.settings["num_cpus"]))
            env = forwarded_env()
            refs = []
            for job in jobs:
                job.threads = job.threads or threads
                job.env = {**env, **job.env}
                refs.append(task.remote(job))
            index = {ref: i for i, ref in enumerate(refs)}
            results: list[RunResult | None] = [None] * len(refs)
            pending = list(refs)
            t0 = time.monotonic()
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    result = ray.get(ref)  # re-raises a child's error (RayTaskError)
                    results[index[ref]] = result
                    if progress:
                        print(f"[ray {time.monotonic() - t0:.0f}s] {format_result(result)}")
                    if on_result is not None:
                        on_result(index[ref], result)
            return [r for r in results if r is not None]
        finally:
            if started_here:
                ray.shutdown()
