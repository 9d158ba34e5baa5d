"""Local-first run recording: every param, metric and artifact is written to the run folder
before it is sent to MLflow, so an unreachable or vanishing tracking server never loses results.

The run folder itself (layout, JSON helpers, lock) is :class:`experiments.run_dir.RunDir`.

:func:`sync_run_dir` replays a folder into any tracking store (``cl-ssvdo sync RUN_DIR``).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from experiments.run_dir import RunDir
from experiments.tracking import (
    TrackingUnreachableError,
    check_tracking,
    ensure_experiment,
    get_client,
    resolve_artifact_location,
)

__all__ = ["RunRecorder", "sync_run_dir"]

MAX_PARAM_CHARS = 6000


def _clip_param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= MAX_PARAM_CHARS else text[: MAX_PARAM_CHARS - 3] + "..."


def _resumable(client: MlflowClient, run_id: str) -> bool:
    """Whether ``run_id`` exists in the store and is not deleted (a run folder may outlive its
    MLflow run when someone deletes it in the UI)."""
    try:
        return client.get_run(run_id).info.lifecycle_stage == "active"
    except MlflowException:
        return False


class RunRecorder:
    """Writes a run to its folder and, while the store answers, to one MLflow run.

    Arguments
    ---------
    run_dir : str, Path or None
        The run folder (``None``: MLflow only, e.g. a parent sweep run).
    tracking_uri : str or None
        MLflow store; ``None`` with ``offline=True`` records locally only.
    experiment : str
        MLflow experiment name (created with ``artifact_location`` if missing).
    run_name : str or None
        MLflow run name.
    parent_run_id : str or None
        Makes this a nested child run.
    run_id : str or None
        Continue this MLflow run (resume) instead of creating one.
    offline : bool
        Never contact MLflow (sync later).
    check : bool
        Check the store up front and raise :class:`TrackingUnreachableError`.

    If an MLflow call fails after the start, a warning is issued, the recorder goes offline for
    the rest of the run and ``state.json`` records ``mlflow.synced = false``.
    """

    def __init__(
        self,
        run_dir: str | Path | None,
        tracking_uri: str | None,
        experiment: str = "cl-ssvdo",
        run_name: str | None = None,
        *,
        parent_run_id: str | None = None,
        run_id: str | None = None,
        offline: bool = False,
        check: bool = True,
        artifact_location: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        self.dir = RunDir(run_dir).create() if run_dir is not None else None
        self.tracking_uri = tracking_uri
        self.parent_run_id = parent_run_id
        self.experiment = experiment
        self.client: MlflowClient | None = None
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.online = False
        if offline or tracking_uri is None:
            self._record_mlflow(synced=False)
            return
        if check:
            check_tracking(tracking_uri)
        self.client = get_client(tracking_uri)
        if artifact_location is None and self.dir is not None:
            artifact_location = resolve_artifact_location(tracking_uri, self.dir.path.parent.parent)
        self.experiment_id = ensure_experiment(self.client, experiment, artifact_location)
        all_tags = dict(tags or {})
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        if self.dir is not None:
            all_tags["cl_ssvdo.run_dir"] = str(self.dir.path.resolve())
        if run_id is not None and not _resumable(self.client, run_id):
            warnings.warn(
                f"MLflow run {run_id} ({run_name or experiment}) is deleted or missing in "
                f"{tracking_uri}: starting a new run",
                RuntimeWarning,
                stacklevel=2,
            )
            run_id = None
        if run_id is not None:
            self.run_id = run_id
            self.client.update_run(run_id, status="RUNNING")
            if parent_run_id:  # the parent may be new (its old run deleted): follow it
                self.client.set_tag(run_id, "mlflow.parentRunId", parent_run_id)
        else:
            run = self.client.create_run(self.experiment_id, tags=all_tags, run_name=run_name)
            self.run_id = run.info.run_id
        self.online = True
        self._record_mlflow(synced=True)

    # -- bookkeeping -------------------------------------------------------------------------
    def _record_mlflow(self, synced: bool) -> None:
        if self.dir is None:
            return
        self.dir.update_state(
            mlflow={
                "tracking_uri": self.tracking_uri,
                "experiment": self.experiment,
                "experiment_id": self.experiment_id,
                "run_id": self.run_id,
                "parent_run_id": self.parent_run_id,
                "synced": synced,
            }
        )

    def _mlflow(self, action: str, method: str, *args, **kwargs) -> None:
        """Call ``self.client.<method>``; on failure go offline (results stay in the folder)."""
        if not self.online or self.client is None:
            return
        try:
            getattr(self.client, method)(*args, **kwargs)
        except Exception as exc:  # any store/network error: keep the run going
            self.online = False
            self._record_mlflow(synced=False)
            where = (
                f" Results are in {self.dir.path}; push them with `cl-ssvdo sync {self.dir.path}`."
                if self.dir
                else ""
            )
            warnings.warn(
                f"MLflow {action} failed against {self.tracking_uri!r} ({type(exc).__name__}: {exc}); "
                f"continuing offline.{where}",
                RuntimeWarning,
                stacklevel=3,
            )

    # -- logging -----------------------------------------------------------------------------
    def log_params(self, params: Mapping[str, Any]) -> None:
        clipped = {str(k)[:240]: _clip_param(v) for k, v in params.items()}
        if self.dir is not None:
            # MLflow params are immutable: a resumed run keeps the first value of each param and
            # records a different one (e.g. a new git commit) as "<key>.resumed".
            known = self.dir.read_json("params.json", {})
            fresh = {}
            for key, value in clipped.items():
                if key not in known:
                    fresh[key] = value
                elif known[key] != value and f"{key}.resumed" not in known:
                    fresh[f"{key}.resumed"] = value
            clipped = fresh
            self.dir.write_json("params.json", {**known, **clipped})
        items = [Param(k, v) for k, v in clipped.items()]
        for start in range(0, len(items), 100):
            self._mlflow("log_params", "log_batch", self.run_id, params=items[start : start + 100])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        tags = {k: str(v) for k, v in tags.items()}
        if self.dir is not None:
            self.dir.write_json("tags.json", {**self.dir.read_json("tags.json", {}), **tags})
        items = [RunTag(k, v) for k, v in tags.items()]
        self._mlflow("set_tags", "log_batch", self.run_id, tags=items)

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        rows = [
            {"key": k, "value": float(v), "step": int(step), "timestamp": now}
            for k, v in metrics.items()
            if v is not None and not (isinstance(v, float) and math.isnan(v))
        ]
        if not rows:
            return
        if self.dir is not None:
            with self.dir.metrics_file.open("a") as fh:
                for row in rows:
                    fh.write(json.dumps(row) + "\n")
        items = [Metric(r["key"], r["value"], r["timestamp"], r["step"]) for r in rows]
        for start in range(0, len(items), 1000):
            self._mlflow(
                "log_metrics", "log_batch", self.run_id, metrics=items[start : start + 1000]
            )

    def log_metric(self, key: str, value: float, step: int = 0) -> None:
        self.log_metrics({key: value}, step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Log a file that already lies in the run folder (or anywhere when there is no folder)."""
        self._mlflow("log_artifact", "log_artifact", self.run_id, str(path), artifact_path)

    def log_artifacts_dir(self) -> None:
        """Upload the whole ``artifacts/`` folder and every table in ``artifacts/tables``."""
        if self.dir is None:
            return
        self._mlflow("log_artifacts", "log_artifacts", self.run_id, str(self.dir.artifacts))
        for csv in sorted(self.dir.tables.glob("*.csv")):
            self._log_table_file(csv)

    def _log_table_file(self, csv: Path) -> None:
        if not self.online:
            return
        frame = pd.read_csv(csv)
        self._mlflow("log_table", "log_table", self.run_id, frame, f"tables/{csv.stem}.json")

    def log_table(self, frame: pd.DataFrame, name: str) -> Path | None:
        """Write ``artifacts/tables/<name>.csv`` and ``log_table`` it (``tables/<name>.json``)."""
        if self.dir is not None:
            path = self.dir.tables / f"{name}.csv"
            frame.to_csv(path, index=False)
            self._mlflow("log_artifact", "log_artifact", self.run_id, str(path), "tables")
        else:
            path = None
        self._mlflow("log_table", "log_table", self.run_id, frame, f"tables/{name}.json")
        return path

    def finish(self, status: str = "FINISHED") -> None:
        """Mark the run ended (locally and in MLflow)."""
        if self.dir is not None:
            self.dir.update_state(status=status, ended=time.time())
        self._mlflow("set_terminated", "set_terminated", self.run_id, status)

    def replay_local_history(self) -> None:
        """Push what the folder already holds (params, tags, metric history) into the MLflow
        run, e.g. when a run started offline is resumed online."""
        if self.dir is None or not self.online:
            return
        params = [
            Param(k, _clip_param(v)) for k, v in self.dir.read_json("params.json", {}).items()
        ]
        for start in range(0, len(params), 100):
            self._mlflow("log_params", "log_batch", self.run_id, params=params[start : start + 100])
        tags = [RunTag(k, str(v)) for k, v in self.dir.read_json("tags.json", {}).items()]
        if tags:
            self._mlflow("set_tags", "log_batch", self.run_id, tags=tags)
        metrics = [
            Metric(m["key"], m["value"], m["timestamp"], m["step"]) for m in self.dir.metrics()
        ]
        for start in range(0, len(metrics), 1000):
            self._mlflow(
                "log_metrics", "log_batch", self.run_id, metrics=metrics[start : start + 1000]
            )

    @property
    def synced(self) -> bool:
        return self.online


def sync_run_dir(
    run_dir: str | Path,
    tracking_uri: str,
    experiment: str | None = None,
    *,
    parent_run_id: str | None = None,
    force: bool = False,
) -> str:
    """Push a run folder (params, tags, metric history, artifacts, tables) into ``tracking_uri``.

    Creates a new MLflow run (tag ``cl_ssvdo.synced_from`` = the folder) unless the folder says
    it is already fully synced to that store (``force`` re-pushes). Returns the run id.
    Raises :class:`TrackingUnreachableError` if the store does not answer, ``FileNotFoundError``
    if ``run_dir`` is not a run folder.
    """
    folder = RunDir(run_dir)
    if not folder.is_run_dir():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no config.yaml/state.json)")
    state = folder.state()
    previous = state.get("mlflow", {})
    if (
        not force
        and previous.get("synced")
        and previous.get("tracking_uri") == tracking_uri
        and state.get("status") in ("FINISHED", "FAILED", "KILLED")
    ):
        return previous["run_id"]
    check_tracking(tracking_uri)
    client = get_client(tracking_uri)
    experiment = experiment or previous.get("experiment") or "cl-ssvdo"
    artifact_location = resolve_artifact_location(tracking_uri, folder.path.parent.parent)
    experiment_id = ensure_experiment(client, experiment, artifact_location)
    tags = {**folder.read_json("tags.json", {}), "cl_ssvdo.synced_from": str(folder.path.resolve())}
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    # Read everything before creating the run: a bad folder must not leave an orphan run.
    params = [Param(k, _clip_param(v)) for k, v in folder.read_json("params.json", {}).items()]
    metrics = [Metric(m["key"], m["value"], m["timestamp"], m["step"]) for m in folder.metrics()]
    run = client.create_run(experiment_id, tags=tags, run_name=state.get("run_name"))
    run_id = run.info.run_id
    try:
        for start in range(0, len(params), 100):
            client.log_batch(run_id, params=params[start : start + 100])
        for start in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[start : start + 1000])
        if folder.artifacts.is_dir() and any(folder.artifacts.iterdir()):
            client.log_artifacts(run_id, str(folder.artifacts))
        for csv in sorted(folder.tables.glob("*.csv")):
            client.log_table(run_id, pd.read_csv(csv), f"tables/{csv.stem}.json")
    except BaseException:
        with contextlib.suppress(Exception):
            client.set_terminated(run_id, "FAILED")
        raise
    status = state.get("status", "FINISHED")
    client.set_terminated(
        run_id, status if status in ("FINISHED", "FAILED", "KILLED") else "FAILED"
    )
    stale = previous.get("run_id")
    if stale and stale != run_id and previous.get("tracking_uri") == tracking_uri:
        # A partial copy from before the store went away: point it at the complete one.
        with contextlib.suppress(Exception):
            client.set_tag(stale, "cl_ssvdo.superseded_by", run_id)
            client.set_terminated(stale, "KILLED")
    folder.update_state(
        mlflow={
            "tracking_uri": tracking_uri,
            "experiment": experiment,
            "experiment_id": experiment_id,
            "run_id": run_id,
            "parent_run_id": parent_run_id,
            "synced": True,
            "previous": previous or None,
        }
    )
    return run_id


def is_unreachable(exc: BaseException) -> bool:
    """True for the named tracking error (for CLI exit codes)."""
    return isinstance(exc, TrackingUnreachableError)
