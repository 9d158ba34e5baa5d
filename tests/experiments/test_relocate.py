"""A copied SQLite store opens its artifacts after `relocate_store`; experiments are tagged as
model-training experiments (MLflow 3 opens them on the runs table)."""

from __future__ import annotations

import shutil
from pathlib import Path

from mlflow.tracking import MlflowClient

from experiments.relocate import relocate_store
from experiments.tracking import (
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    default_tracking_uri,
    ensure_experiment,
    resolve_artifact_location,
)


def test_copied_store_opens_its_artifacts(tmp_path: Path) -> None:
    old = tmp_path / "old"
    uri = default_tracking_uri(old)
    client = MlflowClient(uri)
    exp = ensure_experiment(client, "moved", resolve_artifact_location(uri, old))
    run_id = client.create_run(exp).info.run_id
    client.log_text(run_id, "hello", "notes/hello.txt")
    client.set_terminated(run_id)
    assert client.get_experiment(exp).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND

    new = tmp_path / "elsewhere" / "copy"
    shutil.copytree(old, new)
    shutil.rmtree(old)
    new_uri = default_tracking_uri(new)
    assert relocate_store(new_uri) == 2  # the experiment and its run
    assert relocate_store(new_uri) == 0  # idempotent
    moved = MlflowClient(new_uri)
    assert moved.get_run(run_id).info.artifact_uri.startswith((new / "mlartifacts").as_uri())
    local = moved.download_artifacts(run_id, "notes/hello.txt", str(tmp_path))
    assert Path(local).read_text() == "hello"


def test_existing_experiment_gets_the_kind_tag(tmp_path: Path) -> None:
    client = MlflowClient(default_tracking_uri(tmp_path))
    exp = client.create_experiment("plain")
    assert EXPERIMENT_KIND_TAG not in client.get_experiment(exp).tags
    assert ensure_experiment(client, "plain") == exp
    assert client.get_experiment(exp).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    client.set_experiment_tag(exp, EXPERIMENT_KIND_TAG, "genai_development")  # a user's choice
    ensure_experiment(client, "plain")
    assert client.get_experiment(exp).tags[EXPERIMENT_KIND_TAG] == "genai_development"
