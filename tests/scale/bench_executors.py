"""Wall time of the 2-run micro sweep (SSVD-O and LoRA at 8000 parameters, tiny stream, the
pretrained ``ci`` model, 3 experiences of 2 steps) under each executor, and each executor's
overhead per run (figures of docs/scale.md).

    python -m tests.scale.bench_executors --stream STREAM_ROOT --pretrained CI_FOLDER \\
        --executors local ray slurm --json timings.json

``ray``: a two-node cluster on this machine (``ray.cluster_utils.Cluster``, one CPU per node),
its start-up timed apart; ``slurm``: the single-node cluster of ``tests/scale/slurm_cluster.py``
when installed (else submitit's local executor, reported as ``slurm-local``). Overhead per run =
the sweep's wall time minus the run's own time (``started``..``ended`` in its state.json) on
the critical path, divided by the runs on it (two for local, one for the parallel executors).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from experiments.config import load_config
from experiments.run_dir import RunDir
from experiments.sweep import run_sweep

TRAIN = {"train.max_steps": 2, "train.epochs": 1, "train.batch_size": 4,
         "train.eval_batch_size": 16, "train.device": "cpu"}  # fmt: skip


def micro_sweep(workdir: Path, stream: str, pretrained: str) -> dict[str, Any]:
    return load_config(
        "demo",
        {"workdir": str(workdir), "stream.root": stream, "model.pretrained": pretrained,
         "model.preset": "ci", "stream.max_utterances": 8, **TRAIN,
         "sweep.budgets": [8000], "sweep.overrides": TRAIN},
    )  # fmt: skip


def timed(kind: str, executor: dict[str, Any], args, root: Path) -> dict[str, Any]:
    work = root / kind
    cfg = micro_sweep(work, args.stream, args.pretrained)
    t0 = time.time()
    result = run_sweep(cfg, tracking_uri=f"sqlite:///{work}.db", progress=False,
                       executor=executor)  # fmt: skip
    wall = time.time() - t0
    runs = []
    for child in result.children:
        state = RunDir(child.run_dir).state()
        runs.append({"run": child.name, "start_after_s": state["started"] - t0,
                     "compute_s": state["ended"] - state["started"]})  # fmt: skip
    parallel = kind != "local"
    critical = max(r["compute_s"] for r in runs) if parallel else sum(r["compute_s"] for r in runs)
    per_run = (wall - critical) / (1 if parallel else len(runs))
    return {"executor": kind, "wall_s": wall, "overhead_per_run_s": per_run, "runs": runs}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--stream", required=True)
    p.add_argument("--pretrained", required=True)
    p.add_argument("--executors", nargs="+", default=["local", "ray", "slurm"])
    p.add_argument("--json", default=None)
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)  # as every Ray/Slurm child (num_cpus / cpus_per_task = 1)
    root = Path(tempfile.mkdtemp(prefix="cl-ssvdo-bench-"))
    out = []
    for kind in args.executors:
        if kind == "local":
            out.append(timed("local", {"kind": "local"}, args, root))
        elif kind == "ray":
            from ray.cluster_utils import Cluster

            t0 = time.time()
            cluster = Cluster(initialize_head=True,
                              head_node_args={"num_cpus": 1, "include_dashboard": False})  # fmt: skip
            cluster.add_node(num_cpus=1)
            cluster.wait_for_nodes()
            start = time.time() - t0
            try:
                row = timed("ray", {"kind": "ray", "ray": {"address": cluster.address}}, args, root)
            finally:
                cluster.shutdown()
            row["cluster_start_s"] = start
            out.append(row)
        elif kind == "slurm":
            from tests.scale.slurm_cluster import slurm_available, start_slurm

            if slurm_available():
                t0 = time.time()
                cluster = start_slurm()
                start = time.time() - t0
                try:
                    row = timed("slurm", {"kind": "slurm", "slurm": {
                        "partition": cluster.partition, "array_parallelism": 2}}, args, root)  # fmt: skip
                finally:
                    cluster.stop()
                row["cluster_start_s"] = start
            else:
                row = timed("slurm-local", {"kind": "slurm", "slurm": {"cluster": "local"}},
                            args, root)  # fmt: skip
            out.append(row)
        print(json.dumps(out[-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
