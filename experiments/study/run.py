"""v1: running a planned study (``experiments.study.plan``): every sweep in order, resumable,
with a study record run in MLflow that keeps the command and the wall time, and a check that
the base models did not change mid-study (:func:`check_bases`).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from experiments.config import config_hash, flatten
from experiments.study import collect
from experiments.study.plan import PlannedSweep, StudyPlan
from experiments.tracking import resolve_tracking_uri

__all__ = ["check_bases", "forget_study", "open_study_record", "run_study", "study_folder"]


def study_folder(study: Mapping[str, Any], workdir: str | Path):
    """``<workdir>/studies/<name>-<hash of the study config>``: the study's own state (wall
    time, the record run's id, the bases it saw) and, for v2, its runs' folders."""
    from experiments.run_dir import RunDir

    body = {k: v for k, v in study.items()
            if k not in ("description", "estimate", "output", "output_dir")}  # fmt: skip
    body.pop("withdrawn", None)  # withdrawing runs changes none of the others: the same study
    for key in ("lr_check", "pretrain_seeds"):  # unset: the folder from before the key existed
        if body.get(key) is None:
            body.pop(key, None)
    if isinstance(body.get("lr_selection"), Mapping):
        # runs beyond the grid's edge add selection runs but change none: the same study
        body["lr_selection"] = {k: v for k, v in body["lr_selection"].items()
                                if k not in ("extend_at_edge", "extend_factor")}  # fmt: skip
    return RunDir(Path(workdir) / "studies" / f"{study['name']}-{config_hash(body)}")


def open_study_record(folder, uri: str, study: Mapping[str, Any], command: str, workdir):
    """The study's record run in MLflow (resumed from ``folder``'s state when it points at the
    same store), tagged as a study, with the command and every study setting as params."""
    from experiments.recorder import RunRecorder
    from experiments.tracking import resolve_artifact_location

    previous = folder.state().get("mlflow") or {}
    resume = previous.get("run_id") if previous.get("tracking_uri") == uri else None
    tags = {"cl_ssvdo.kind": "study", "cl_ssvdo.study": study["name"]}
    recorder = RunRecorder(
        folder.path,
        uri,
        study["experiment"],
        study["name"],
        run_id=resume,
        check=False,
        artifact_location=resolve_artifact_location(uri, workdir),
        tags=tags,
    )
    recorder.set_tags(tags)
    recorder.log_params(
        {"study.command": command, **{f"study.{k}": v for k, v in flatten(study).items()}}
    )
    return recorder


def forget_study(folder, uri: str, study: Mapping[str, Any]) -> None:
    """``--fresh``: the study folder and its record runs go (so the wall-time count restarts)."""
    from experiments.tracking import get_client

    if folder.path.exists():
        shutil.rmtree(folder.path)
    client = get_client(uri)
    for record in collect.study_records(uri, study["experiment"], study["name"]):
        client.delete_run(record.info.run_id)


def check_bases(sweep: PlannedSweep, folder, study_name: str) -> None:
    """Compares the weights fingerprint of each existing base folder of ``sweep``'s runs with
    the one the study recorded (in its folder's ``state.json``) when it first saw that base;
    records the unseen ones. Raises ``BaseMismatchError`` when a base changed mid-study."""
    from cl_ssvdo.asr.fingerprint import check_same_base, folder_weights_sha
    from experiments.prepare import base_folder, prepare_stream

    seen = dict(folder.state().get("bases") or {})
    info = None
    for child in sweep.children:
        if info is None:  # one stream for the whole study; cached after the first sweep
            info = prepare_stream(child.config, progress=False)
        base = base_folder(child.config, info)
        sha = folder_weights_sha(base) if base.is_dir() else None
        if sha is None:
            continue
        key = str(base)
        check_same_base(
            seen.get(key), sha, what=f"study {study_name} (base {base})",
            where=folder.path / "state.json",
        )  # fmt: skip
        seen[key] = sha
    folder.update_state(bases=seen)


def run_study(
    plan: StudyPlan,
    *,
    command: str,
    tracking_uri: str | None = None,
    fresh: bool = False,
    progress: bool = True,
    executor: Mapping[str, Any] | None = None,
) -> str:
    """Run (or resume) every sweep of ``plan`` and keep a study record run with the wall time.
    Returns the tracking URI the results went to. ``executor``: where every sweep's children
    run (``experiments.executors``; default local)."""
    from experiments.sweep import run_sweep
    from experiments.tracking import check_tracking

    study = plan.study
    uri = resolve_tracking_uri(tracking_uri or plan.tracking_uri, plan.workdir)
    check_tracking(uri)
    folder = study_folder(study, plan.workdir)
    if fresh:  # a fresh study also restarts its wall-time count (summed over the record runs)
        forget_study(folder, uri, study)
    folder.create()
    state = folder.state()
    recorder = open_study_record(folder, uri, study, command, plan.workdir)
    wall = float(state.get("wall_seconds", 0.0))
    started = time.time()
    folder.update_state(kind="study", status="RUNNING", sweeps=[s.name for s in plan.sweeps])

    def elapsed() -> float:
        return wall + time.time() - started

    try:
        for done, sweep in enumerate(plan.sweeps, start=1):
            if progress:
                print(f"\n== study {study['name']}: sweep {done}/{len(plan.sweeps)} {sweep.name} "
                      f"({len(sweep.children)} runs)")  # fmt: skip
            if folder.state().get("bases"):  # resumed: the bases it used must still be there
                check_bases(sweep, folder, study["name"])
            run_sweep(
                sweep.config,
                tracking_uri=uri,
                fresh=fresh,
                progress=progress,
                source=str(plan.source),
                executor=executor,
            )
            check_bases(sweep, folder, study["name"])
            folder.update_state(wall_seconds=elapsed(), sweeps_done=done)
            recorder.log_metrics(
                {"study_wall_seconds": elapsed(), "study_sweeps_done": done}, step=done
            )
    except BaseException:
        folder.update_state(wall_seconds=elapsed(), status="FAILED")
        recorder.log_metrics({"study_wall_seconds": elapsed()}, step=len(plan.sweeps) + 1)
        recorder.finish("FAILED")
        raise
    folder.update_state(status="FINISHED")
    recorder.log_metrics({"study_wall_seconds": elapsed()}, step=len(plan.sweeps) + 1)
    recorder.finish("FINISHED")
    if progress:
        print(f"study {study['name']}: {elapsed() / 3600:.2f} h of wall time in all")
    return uri
