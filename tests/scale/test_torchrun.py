"""One run on two processes: ``torchrun --nproc_per_node 2`` with the gloo backend on CPU
trains one experience of the tiny stream (SSVD-O decomposed once on rank 0 and broadcast,
merged on rank 0, WER on rank 0); the same global batch gives the same loss trajectory and
WER as one process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from experiments import distributed
from tests.scale.conftest import free_port

pytestmark = pytest.mark.slow


def _args(pretrained, stream, out) -> list[str]:
    return ["--pretrained", str(pretrained), "--stream", str(stream), "--domain", "child",
            "--steps", "3", "--global-batch", "4", "--no-dropout", "--frozen-norm",
            "--inner-ratio", "0.25", "--out", str(out)]  # fmt: skip


def test_two_ranks_follow_the_single_process_loss(pretrained_ci, tiny_stream, tmp_path) -> None:
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    assert torchrun, "torchrun is installed with torch"
    two = tmp_path / "two.json"
    cmd = [torchrun, "--nnodes", "1", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "-m", "experiments.distributed",
           *_args(pretrained_ci, tiny_stream.root, two)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    one = tmp_path / "one.json"
    assert distributed.main(_args(pretrained_ci, tiny_stream.root, one)) == 0

    ddp, single = json.loads(two.read_text()), json.loads(one.read_text())
    assert ddp["world_size"] == 2 and single["world_size"] == 1
    assert len(ddp["losses"]) == 3
    assert ddp["losses"] == pytest.approx(single["losses"], rel=1e-4)
    assert ddp["losses"][-1] < ddp["losses"][0]  # it trained
    assert ddp["wer"]["child"] == pytest.approx(single["wer"]["child"], abs=1e-6)


def test_shards_cover_a_global_batch_once() -> None:
    from hypothesis import given
    from hypothesis import strategies as st

    @given(st.lists(st.integers(), min_size=0, max_size=40), st.integers(1, 8))
    def check(batch, size):
        parts = [distributed.shard(batch, r, size) for r in range(size)]
        assert sorted(x for p in parts for x in p) == sorted(batch)
        assert max(map(len, parts)) - min(map(len, parts)) <= 1

    check()
