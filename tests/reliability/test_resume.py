"""Deterministic resume: a run SIGKILLed during training, evaluation or logging resumes to the
bit-identical WER matrix of an uninterrupted run, with a metric history free of duplicate
(key, step) pairs, locally and in MLflow."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from experiments.checkpoint import latest_checkpoint
from experiments.run_dir import RunDir
from experiments.runner import run_dir_for, run_experiment

ROOT = Path(__file__).resolve().parents[2]
# Replay keeps datasets in its state and A-GEM a private random.Random: both must round-trip.
PLUGINS = [{"name": "replay", "mem_size": 6}]


def _config(tiny_config, tmp_path: Path, label: str):
    cfg = tiny_config("replay", {"strategy.plugins": PLUGINS, "workdir": str(tmp_path / label)})
    return cfg


def _kill(cfg, uri: str, point: str, tmp_path: Path) -> None:
    path = tmp_path / f"{point}.json"
    path.write_text(json.dumps(cfg))
    proc = subprocess.run(
        [sys.executable, "-m", "tests.reliability.kill_run", str(path), uri, point],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]


def _pairs(rows) -> Counter:
    return Counter((r["key"], r["step"]) for r in rows)


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(tiny_config, tmp_path, store_uri) -> None:
    straight = run_experiment(
        _config(tiny_config, tmp_path, "straight"), seed=0, tracking_uri=store_uri, progress=False
    )
    client = MlflowClient(store_uri)
    for point in ("train", "eval", "log"):
        cfg = _config(tiny_config, tmp_path, point)
        _kill(cfg, store_uri, point, tmp_path)
        folder = RunDir(run_dir_for(cfg, 0))
        assert folder.state()["status"] == "RUNNING"  # SIGKILL: nothing could clean up
        assert latest_checkpoint(folder.checkpoints)[0] == 1
        killed_run = folder.state()["mlflow"]["run_id"]

        result = run_experiment(cfg, seed=0, tracking_uri=store_uri, progress=False)

        assert result.wer == straight.wer, point  # bit-identical, every cell
        assert result.cer == straight.cer, point
        local = folder.metrics()
        assert max(_pairs(local).values()) == 1, [p for p, n in _pairs(local).items() if n > 1]
        assert _pairs(local) == _pairs(RunDir(straight.run_dir).metrics()), point
        assert client.get_run(result.run_id).info.status == "FINISHED"
        if killed_run != result.run_id:  # the killed attempt's MLflow run is retired
            assert client.get_run(killed_run).info.lifecycle_stage == "deleted"
        for key in {r["key"] for r in local}:
            history = client.get_metric_history(result.run_id, key)
            ref = client.get_metric_history(straight.run_id, key)
            assert sorted((m.step, m.value) for m in history) == sorted(
                (m.step, m.value) for m in ref
            ), (point, key)
