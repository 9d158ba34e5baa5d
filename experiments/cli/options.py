"""Options shared by several subcommands (``sweep``, ``study``): where the children run.

>>> import argparse
>>> p = argparse.ArgumentParser()
>>> add_executor_args(p)
>>> executor_spec({"kind": "local"}, p.parse_args(["--ray-address", "auto"]))
{'kind': 'local', 'ray': {'address': 'auto'}}
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_executor_args", "executor_spec"]


def add_executor_args(p: argparse.ArgumentParser) -> None:
    """``--executor`` and ``--ray-address`` (override the config's ``executor`` section)."""
    p.add_argument(
        "--executor",
        choices=["local", "ray", "slurm"],
        default=None,
        help="where the children run (default: the config's executor.kind, else local)",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        help="Ray cluster: auto, ray://host:port or host:port (default: a local cluster)",
    )


def executor_spec(spec: dict[str, Any] | None, args: argparse.Namespace) -> dict[str, Any]:
    """The config's ``executor`` section with the command line's choices applied."""
    out = dict(spec or {})
    if args.executor:
        out["kind"] = args.executor
    if args.ray_address:
        out["ray"] = {**(out.get("ray") or {}), "address": args.ray_address}
        out.setdefault("kind", "ray")
    return out
