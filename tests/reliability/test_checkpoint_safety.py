"""Checkpoints are data: a crafted one cannot run code, a corrupt one is a named error and the
run falls back to the previous good one; plugin state and RNGs round-trip exactly."""

from __future__ import annotations

import math
import os
import random

import numpy as np
import pytest
import torch

from experiments.checkpoint import (
    CheckpointError,
    checkpoint_path,
    load_checkpoint,
    load_model_state,
    resume_point,
    save_checkpoint,
)
from strategies.cl.agem import CTCAGEMPlugin


class _Payload:
    """Pickles to a call that creates a marker file: what a crafted checkpoint would do."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_crafted_checkpoint_executes_nothing(tmp_path) -> None:
    marker = tmp_path / "pwned"
    path = checkpoint_path(tmp_path, 1)
    torch.save({"format": 2, "json": "{}", "tensors": {}, "x": _Payload(str(marker))}, path)
    with pytest.raises(CheckpointError, match="not a data-only checkpoint"):
        load_checkpoint(path, torch.nn.Linear(2, 2), [])
    with pytest.warns(RuntimeWarning, match="falling back"):
        assert resume_point(tmp_path) is None
    assert not marker.exists()


def test_truncated_newest_checkpoint_falls_back_to_previous(tmp_path) -> None:
    model = torch.nn.Linear(3, 2)
    save_checkpoint(tmp_path, 1, model, [], extra={"metrics_bytes": 10})
    save_checkpoint(tmp_path, 2, model, [], extra={"metrics_bytes": 20})
    newest = checkpoint_path(tmp_path, 2)
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(newest, model, [])
    with pytest.warns(RuntimeWarning, match=r"exp_002.ckpt.*falling back"):
        experience, path, extra = resume_point(tmp_path)
    assert (experience, path.name, extra["metrics_bytes"]) == (1, "exp_001.ckpt", 10)


def test_plugin_state_rngs_and_model_round_trip_exactly(tmp_path) -> None:
    model = torch.nn.Linear(4, 3)
    plugin = CTCAGEMPlugin(patterns_per_experience=3, sample_size=2, seed=7)
    plugin._rng.random()
    plugin.reference = torch.randn(5)
    plugin.projections = 4
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    save_checkpoint(tmp_path, 1, model, [plugin], extra={"x": (1, math.inf, {"k": [2]})})
    expected = (random.random(), np.random.rand(), torch.rand(1), plugin._rng.random())

    fresh_model, fresh = torch.nn.Linear(4, 3), CTCAGEMPlugin(3, 2, seed=0)
    random.seed(9)
    extra = load_checkpoint(checkpoint_path(tmp_path, 1), fresh_model, [fresh])
    assert extra == {"x": (1, math.inf, {"k": [2]}), "experience": 1}
    assert (random.random(), np.random.rand(), torch.rand(1), fresh._rng.random()) == expected
    assert torch.equal(fresh.reference, plugin.reference) and fresh.projections == 4
    assert torch.equal(fresh_model.weight, model.weight)
    assert torch.equal(load_model_state(tmp_path, 1)["weight"], model.weight)
    with pytest.raises(FileNotFoundError, match="after experience 5"):
        load_model_state(tmp_path, 5)


def test_other_plugins_are_a_named_error(tmp_path) -> None:
    save_checkpoint(tmp_path, 1, torch.nn.Linear(2, 2), [CTCAGEMPlugin(1, 1)])
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(checkpoint_path(tmp_path, 1), torch.nn.Linear(2, 2), [])
