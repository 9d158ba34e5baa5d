"""One run on two processes: ``torchrun --nproc_per_node 2`` with the gloo backend on CPU
runs two experiences of the tiny stream (SSVD-O decomposed once on rank 0 and broadcast,
merged on rank 0, WER matrix on rank 0, recorded in MLflow); the same global batch gives the
same loss trajectory and WER matrix as one process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from experiments import distributed
from tests.scale.conftest import free_port

pytestmark = pytest.mark.slow


def _args(pretrained, stream, out) -> list[str]:
    return ["--pretrained", str(pretrained), "--stream", str(stream), "--domains", "child", "accent",
            "--steps", "3", "--global-batch", "4", "--no-dropout", "--frozen-norm",
            "--inner-ratio", "0.25", "--out", str(out)]  # fmt: skip


def test_two_ranks_follow_the_single_process_loss(pretrained_ci, tiny_stream, tmp_path) -> None:
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    assert torchrun, "torchrun is installed with torch"
    two = tmp_path / "two.json"
    store = f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}"
    cmd = [torchrun, "--nnodes", "1", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "-m", "experiments.distributed",
           *_args(pretrained_ci, tiny_stream.root, two),
           "--run-dir", str(tmp_path / "run"), "--tracking-uri", store]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    one = tmp_path / "one.json"
    assert distributed.main(_args(pretrained_ci, tiny_stream.root, one)) == 0

    ddp, single = json.loads(two.read_text()), json.loads(one.read_text())
    assert ddp["world_size"] == 2 and single["world_size"] == 1
    for domain in ("child", "accent"):
        assert len(ddp["losses"][domain]) == 3
        assert ddp["losses"][domain] == pytest.approx(single["losses"][domain], rel=1e-4)
    assert ddp["losses"]["child"][-1] < ddp["losses"]["child"][0]  # it trained
    assert len(ddp["wer_matrix"]) == 3 and all(len(r) == 2 for r in ddp["wer_matrix"])
    for a, b in zip(ddp["wer_matrix"], single["wer_matrix"], strict=True):
        assert a == pytest.approx(b, abs=1e-6)
    assert ddp["summary"]["awer"] == pytest.approx(single["summary"]["awer"], abs=1e-6)

    history = MlflowClient(store).get_metric_history(ddp["run_id"], "wer/accent")
    assert sorted((m.step, m.value) for m in history) == [
        (i, pytest.approx(row[1], abs=1e-9)) for i, row in enumerate(ddp["wer_matrix"])
    ]
    assert MlflowClient(store).get_run(ddp["run_id"]).data.params["world_size"] == "2"


def test_shards_cover_a_global_batch_once() -> None:
    from hypothesis import given
    from hypothesis import strategies as st

    @given(st.lists(st.integers(), min_size=0, max_size=40), st.integers(1, 8))
    def check(batch, size):
        parts = [distributed.shard(batch, r, size) for r in range(size)]
        assert sorted(x for p in parts for x in p) == sorted(batch)
        assert max(map(len, parts)) - min(map(len, parts)) <= 1

    check()
