"""Where a sweep's children run: ``local`` (this process, one after another), ``ray`` (Ray
tasks) or ``slurm`` (a submitit job array). See docs/scale.md.

>>> make_executor({"kind": "local"}).name
'local'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from experiments.config import ConfigError
from experiments.executors.base import (
    ChildJob,
    Executor,
    read_attempts,
    run_child,
    run_is_finished,
)

__all__ = ["KINDS", "ChildJob", "Executor", "make_executor", "read_attempts", "run_child",
           "run_is_finished"]  # fmt: skip

KINDS = ("local", "ray", "slurm")


def make_executor(spec: Mapping[str, Any] | None) -> Executor:
    """The executor of an ``executor:`` section (``{kind, ray: {...}, slurm: {...}}``)."""
    spec = dict(spec or {})
    kind = spec.get("kind") or "local"
    if kind == "local":
        from experiments.executors.local import LocalExecutor

        return LocalExecutor()
    if kind == "ray":
        from experiments.executors.ray_tasks import RayExecutor

        return RayExecutor(spec.get("ray") or {})
    if kind == "slurm":
        from experiments.executors.slurm import SlurmExecutor

        return SlurmExecutor(spec.get("slurm") or {})
    raise ConfigError(f"unknown executor {kind!r} (one of {', '.join(KINDS)})", "executor.kind")
