"""The MLflow UI's landing page of a project experiment, in headless Chromium: it opens on the
runs table (Model training view), not on the GenAI overview."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from experiments.screenshot import chromium_binary, screenshot_landing
from experiments.tracking import default_tracking_uri, ensure_experiment, resolve_artifact_location

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        chromium_binary() is None,
        reason="needs the Debian package chromium (scripts/setup.sh installs it)",
    ),
]


def test_landing_page_opens_on_the_runs_table(tmp_path: Path) -> None:
    uri = default_tracking_uri(tmp_path)
    client = MlflowClient(uri)
    exp = ensure_experiment(client, "landing", resolve_artifact_location(uri, tmp_path))
    run = client.create_run(exp, run_name="ssvdo-s0-landing")
    client.log_metric(run.info.run_id, "awer", 12.5)
    client.set_terminated(run.info.run_id)
    png = tmp_path / "landing.png"
    dom = screenshot_landing(uri, exp, png, workdir=tmp_path, wait_ms=15000)
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "ssvdo-s0-landing" in dom  # the runs table, with the run in it
