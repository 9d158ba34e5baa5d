"""Tracking URIs, the unreachable-server error, local-first recording and sync."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from experiments.recorder import RunRecorder, sync_run_dir
from experiments.run_dir import RunDir
from experiments.tracking import (
    TrackingUnreachableError,
    check_tracking,
    default_tracking_uri,
    ensure_experiment,
    resolve_artifact_location,
    resolve_tracking_uri,
    ui_command,
)


def test_uri_precedence(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert (
        resolve_tracking_uri(None, tmp_path) == f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://example:5000")
    assert resolve_tracking_uri(None, tmp_path) == "http://example:5000"
    assert resolve_tracking_uri("sqlite:///x.db", tmp_path) == "sqlite:///x.db"


def test_artifact_location_is_explicit(tmp_path: Path) -> None:
    uri = default_tracking_uri(tmp_path)
    assert resolve_artifact_location(uri, tmp_path) == (tmp_path.resolve() / "mlartifacts").as_uri()
    assert resolve_artifact_location("http://h:5000", tmp_path) is None
    assert resolve_artifact_location("http://h:5000", tmp_path, "s3://b/a") == "s3://b/a"
    cmd = ui_command(uri, tmp_path, port=5123)
    assert cmd[cmd.index("--backend-store-uri") + 1] == uri
    assert cmd[cmd.index("--default-artifact-root") + 1].endswith("mlartifacts")
    assert cmd[-2:] == ["--port", "5123"]


def test_unreachable_server_is_a_named_error_fast(closed_port_uri: str) -> None:
    start = time.perf_counter()
    with pytest.raises(TrackingUnreachableError) as info:
        check_tracking(closed_port_uri, timeout=3)
    assert time.perf_counter() - start < 10
    assert info.value.uri == closed_port_uri
    assert "cl-ssvdo sync" in str(info.value) and "--offline" in str(info.value)


def test_sqlite_store_in_unwritable_place_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(TrackingUnreachableError, match="cannot create"):
        check_tracking(f"sqlite:///{blocker}/sub/mlflow.db")


def test_ensure_experiment_creates_restores_and_reuses(store_uri: str, tmp_path: Path) -> None:
    client = MlflowClient(store_uri)
    location = (tmp_path / "arts").as_uri()
    exp_id = ensure_experiment(client, "e", location)
    assert client.get_experiment(exp_id).artifact_location == location
    client.delete_experiment(exp_id)
    assert ensure_experiment(client, "e") == exp_id
    assert client.get_experiment(exp_id).lifecycle_stage == "active"


def _record_some(recorder: RunRecorder) -> None:
    recorder.log_params({"a": 1, "b": "x"})
    recorder.log_metrics({"wer/adult": 50.0, "wer/child": 80.0}, step=0)
    recorder.log_metrics({"wer/adult": 40.0}, step=1)
    art = recorder.dir.artifacts / "note.txt"
    art.write_text("hello")
    recorder.log_table(pd.DataFrame({"train_exp": [0, 1], "wer": [50.0, 40.0]}), "long")
    recorder.log_artifacts_dir()
    recorder.finish("FINISHED")


def test_offline_recording_then_sync(tmp_path: Path, store_uri: str) -> None:
    recorder = RunRecorder(tmp_path / "run", None, "exp", "r1", offline=True)
    recorder.dir.path.joinpath("config.yaml").write_text("name: r1\n")
    _record_some(recorder)
    folder = RunDir(tmp_path / "run")
    assert folder.state()["mlflow"]["synced"] is False
    assert [m["key"] for m in folder.metrics()] == ["wer/adult", "wer/child", "wer/adult"]

    run_id = sync_run_dir(folder.path, store_uri, "exp")
    client = MlflowClient(store_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params == {"a": "1", "b": "x"}
    history = [(m.step, m.value) for m in client.get_metric_history(run_id, "wer/adult")]
    assert sorted(history) == [(0, 50.0), (1, 40.0)]
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {"note.txt", "tables"} <= names
    assert "tables/long.json" in json.loads(run.data.tags["mlflow.loggedArtifacts"])[0]["path"]
    assert folder.state()["mlflow"] == {
        **folder.state()["mlflow"],
        "synced": True,
        "run_id": run_id,
    }
    assert sync_run_dir(folder.path, store_uri, "exp") == run_id  # already synced: no duplicate


def test_resuming_a_run_deleted_in_the_store_starts_a_new_one(
    tmp_path: Path, store_uri: str
) -> None:
    first = RunRecorder(tmp_path / "run", store_uri, "exp", "r4")
    first.finish("KILLED")
    MlflowClient(store_uri).delete_run(first.run_id)
    with pytest.warns(RuntimeWarning, match=f"{first.run_id} .* deleted or missing"):
        again = RunRecorder(tmp_path / "run", store_uri, "exp", "r4", run_id=first.run_id)
    assert again.run_id != first.run_id
    assert MlflowClient(store_uri).get_run(again.run_id).info.status == "RUNNING"
    assert RunDir(again.dir.path).state()["mlflow"]["run_id"] == again.run_id
    child = RunRecorder(tmp_path / "child", store_uri, "exp", "c", parent_run_id=first.run_id)
    child.finish("FINISHED")
    resumed = RunRecorder(
        tmp_path / "child", store_uri, "exp", "c", parent_run_id=again.run_id, run_id=child.run_id
    )
    tags = MlflowClient(store_uri).get_run(resumed.run_id).data.tags
    assert resumed.run_id == child.run_id and tags["mlflow.parentRunId"] == again.run_id


def test_store_failing_mid_run_keeps_everything_local(tmp_path: Path, store_uri: str) -> None:
    recorder = RunRecorder(tmp_path / "run", store_uri, "exp", "r2")
    recorder.dir.path.joinpath("config.yaml").write_text("name: r2\n")
    recorder.log_metrics({"wer/adult": 50.0}, step=0)

    def broken(*args, **kwargs):
        raise ConnectionError("server went away")

    recorder.client.log_batch = broken
    with pytest.warns(RuntimeWarning, match="continuing offline"):
        recorder.log_metrics({"wer/adult": 30.0}, step=1)
    assert not recorder.online
    recorder.log_metrics({"wer/adult": 20.0}, step=2)  # no more attempts, still recorded
    recorder.finish("FINISHED")
    folder = RunDir(recorder.dir.path)
    assert [m["value"] for m in folder.metrics()] == [50.0, 30.0, 20.0]
    assert folder.state()["mlflow"]["synced"] is False

    partial_id = recorder.run_id
    run_id = sync_run_dir(folder.path, store_uri)
    partial = MlflowClient(store_uri).get_run(partial_id)
    assert partial.info.status == "KILLED" and partial.data.tags["cl_ssvdo.superseded_by"] == run_id
    values = sorted(
        (m.step, m.value) for m in MlflowClient(store_uri).get_metric_history(run_id, "wer/adult")
    )
    assert values == [(0, 50.0), (1, 30.0), (2, 20.0)]


def test_resumed_params_never_conflict(tmp_path: Path, store_uri: str) -> None:
    recorder = RunRecorder(tmp_path / "run", store_uri, "exp", "r3")
    recorder.log_params({"git.commit": "aaa", "seed": 0})
    again = RunRecorder(tmp_path / "run", store_uri, "exp", "r3", run_id=recorder.run_id)
    again.log_params({"git.commit": "bbb", "seed": 0})
    assert again.online
    params = MlflowClient(store_uri).get_run(recorder.run_id).data.params
    assert params == {"git.commit": "aaa", "git.commit.resumed": "bbb", "seed": "0"}
