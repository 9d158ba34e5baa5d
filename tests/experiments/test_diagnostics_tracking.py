"""The per-layer diagnostics of a real run reach MLflow: metrics per layer and experience,
the budget table's columns and the ``diagnostics.png`` artifact."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from experiments.runner import run_experiment


@pytest.mark.slow
def test_diagnostics_reach_mlflow(tiny_config, store_uri, tmp_path) -> None:
    cfg = tiny_config(
        "ssvdo",
        {
            "strategy.adapter.schedule": {
                "groups": {"up": "*ffn.0", "down": "*ffn.3"},
                "constant": {
                    "up": {"inner_ratio": 0.25, "outer_rank": 4, "subspace": "auto"},
                    "down": {"inner_ratio": 0.25, "subspace": "tail"},
                },
            },
            "tracking.experiment": "diagnostics",
        },
    )
    result = run_experiment(cfg, seed=0, tracking_uri=store_uri, progress=False)
    client = MlflowClient(store_uri)
    run_id = result.run_id
    names = [n for n in client.get_run(run_id).data.metrics if n.startswith("diag/inner_angle/")]
    assert len(names) == 8  # the ci model's feed-forward layers
    for name in names:
        history = client.get_metric_history(run_id, name)
        assert sorted(m.step for m in history) == [1, 2, 3]
        assert all(0.0 < m.value < math.pi for m in history)
    assert client.get_metric_history(run_id, "ssvdo/weight_change/exp002")[0].value > 0.0
    assert "diagnostics.png" in {a.path for a in client.list_artifacts(run_id)}
    path = client.download_artifacts(run_id, "budget_table.json", str(tmp_path))
    rows = json.loads(Path(path).read_text())
    assert len(rows) == 3 * 8
    for row in rows:
        assert row["weight_change"] > 0.0 and row["inner_angle"] > 0.0
        up = row["layer"].endswith("ffn.0")
        assert row["subspace"] in (("top", "tail") if up else ("tail",))
        assert (row["outer_angle_max"] > 0.0) == up
