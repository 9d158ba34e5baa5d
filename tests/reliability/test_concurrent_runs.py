"""Real runs started at once on a new SQLite store: every one finishes; two identical ones share
the run folder through its lock (the second waits and reuses the result), so the store holds one
MLflow run per folder with every metric once."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from experiments.run_dir import RunDir
from experiments.runner import run_dir_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_runs_started_at_once_all_finish_with_one_row_set_each(tiny_config, tmp_path) -> None:
    cfg = tiny_config("naive", {"seeds": [0, 1]})
    path = tmp_path / "naive.yaml"
    path.write_text(yaml.safe_dump(cfg))
    uri = f"sqlite:///{(tmp_path / 'new' / 'mlflow.db').as_posix()}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    commands = [["--seed", "0"], ["--seed", "0"], ["--seed", "1"]]  # two identical runs
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "experiments.cli", "--quiet", "run", str(path)]
            + ["--tracking-uri", uri, *extra],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for extra in commands
    ]
    outputs = [p.communicate(timeout=400) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-2000:] for _, err in outputs]

    client = MlflowClient(uri)
    runs = client.search_runs(
        [client.get_experiment_by_name(cfg["tracking"]["experiment"]).experiment_id]
    )
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED"]
    for seed in (0, 1):
        folder = RunDir(run_dir_for(cfg, seed))
        pairs = Counter((m["key"], m["step"]) for m in folder.metrics())
        assert max(pairs.values()) == 1
        run_id = folder.state()["mlflow"]["run_id"]
        assert len(client.get_metric_history(run_id, "wer/adult")) == 4
