"""v2: running a planned study (``experiments.study.plan_v2``) in its three phases.

1. **Selection**: every arm that selects its own rate runs once per grid rate (selection seed,
   valid split); then, where ``lr_selection.extend_at_edge`` allows, one rate further out at
   a time while the rule picks the largest or smallest rate tried
   (:func:`~experiments.study.plan_v2.edge_rates`). The rule of the protocol
   (:func:`~experiments.study.plan_v2.select_lr`) then picks each arm's rate from the
   finished selection runs in the store.
2. **Test** runs at the selected rates, seed-major (all arms at the first seed, then the
   second, ...), so a study stopped part-way has every arm at the same number of seeds.
3. The joint and single-task **references** (for IM and FWT), run with the first seed.

Planned runs the study's ``withdrawn`` selects are not run (:func:`to_run`; the results page
lists them, and states the reason under *Protocol*).

Every run is a job of an executor (``experiments.executors``: local, Ray or Slurm) with its
own folder under ``<workdir>/studies/<name>-<hash>/runs/``; a run resumes from its last
per-experience checkpoint and a finished one is not recomputed, so ``cl-ssvdo study`` again
after an interruption continues where it stopped. A record run in MLflow keeps the command
and the study's wall time (summed over resumptions).

>>> from experiments.study.config import load_study_v2
>>> from experiments.study.plan_v2 import plan_v2
>>> study, _ = load_study_v2("study_whisper_cpu")
>>> run_slug(plan_v2(study)[0])
'ssvdo-b61440-p0.25-s100-base0-main-lr0.0001'
>>> [r.seed for r in seed_major_order(plan_v2(study, {"ssvdo": 1e-3, "lora": 1e-3}), study)][:2]
[0, 0]
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.config import ConfigError, config_hash
from experiments.study.plan_v2 import (
    PlannedRun,
    edge_rates,
    experiment_config,
    extension,
    plan_v2,
    rate_key,
    select_lr,
    withdrawal,
)

__all__ = [
    "StudyV2Result",
    "run_slug",
    "run_study_v2",
    "seed_major_order",
    "study_store",
    "to_run",
]


@dataclass
class StudyV2Result:
    """What a (possibly partial) v2 study run leaves: where, the rates and the time."""

    tracking_uri: str
    selected: dict[str, float]
    wall_seconds: float
    finished: int
    planned: int


def run_slug(run: PlannedRun) -> str:
    """A run's folder and MLflow run name: its label without spaces or brackets."""
    label = run.label.replace(" (lr of its config)", "")
    return label.replace(" (lr=", "-lr").rstrip(")")


def study_store(
    study: Mapping[str, Any], source: str | Path | None = None, tracking_uri: str | None = None
) -> tuple[Path, str]:
    """``(workdir, tracking URI)`` every run of the study shares: its first planned run's
    workdir, and ``tracking_uri`` else that run's ``tracking.uri`` resolved (None: the default,
    ``$MLFLOW_TRACKING_URI`` else the workdir's SQLite store)."""
    from experiments.tracking import resolve_tracking_uri

    first = experiment_config(study, plan_v2(study)[0], source)
    workdir = Path(first["workdir"])
    return workdir, resolve_tracking_uri(tracking_uri or first["tracking"]["uri"], workdir)


def to_run(study: Mapping[str, Any], planned: Sequence[PlannedRun]) -> list[PlannedRun]:
    """The runs of ``planned`` the study runs: those no entry of ``study["withdrawn"]`` selects
    (a withdrawn run is listed on the results page with the reason, never run)."""
    return [r for r in planned if not withdrawal(study, r.arm, r.horizon)]


def seed_major_order(runs: Sequence[PlannedRun], study: Mapping[str, Any]) -> list[PlannedRun]:
    """Test and reference runs, main horizon first, then seed-major and base-major; the order
    of the plan is kept within (so every arm reaches seed k before any reaches seed k + 1)."""
    seeds = [int(s) for s in study["seeds"]]
    bases = [int(b) for b in study["pretrain_seeds"]]

    def key(r: PlannedRun) -> tuple[int, int, int]:
        seed = seeds.index(r.seed) if r.seed in seeds else len(seeds)
        base = bases.index(r.pretrain_seed) if r.pretrain_seed in bases else len(bases)
        return (r.horizon != "main", seed, base)

    return sorted((r for r in runs if r.phase != "lr-selection"), key=key)


def _jobs(study, runs: Sequence[PlannedRun], source, folder, uri: str):
    from experiments.executors import ChildJob

    jobs = []
    for run in runs:
        cfg = experiment_config(study, run, source)
        slug = run_slug(run)
        jobs.append(
            ChildJob(
                config=cfg,
                seed=run.seed,
                run_dir=str(folder.path / "runs" / f"{slug}-{config_hash(cfg)}"),
                run_name=slug,
                tracking_uri=uri,
            )
        )
    return jobs


def _missing_rates(study: Mapping[str, Any], selected: Mapping[str, float]) -> list[str]:
    """The arms whose rate (their own or their ``lr_from`` arm's) the selection has not given."""
    arms = study["arms"].items()
    needed = {a["lr_from"] or name for name, a in arms if a["kind"] != "not_run"}
    return sorted(needed - set(selected))


def _beyond_the_grid(study: Mapping[str, Any], uri: str, run_phase, done: int) -> int:
    """The selection runs beyond the grid's ends (``lr_selection.extend_at_edge``), one step
    per arm and round, until no arm at an edge has a step left (:func:`edge_rates`)."""
    from experiments.study.collect import read_selection

    sel = study["lr_selection"]
    grid = {rate_key(x) for x in sel["grid"]}
    for _ in range(2 * extension(sel)[0]):
        results = read_selection(uri, study)
        finished = {(arm, rate_key(lr)) for arm, lr, _ in results}
        extensions = edge_rates(results, sel)
        todo = [r for r in plan_v2(study, extensions=extensions)
                if r.phase == "lr-selection" and rate_key(r.lr) not in grid
                and (r.arm, rate_key(r.lr)) not in finished]  # fmt: skip
        if not todo:
            break
        done = run_phase("lr-selection beyond the grid", todo, done)
    return done


def run_study_v2(
    study: Mapping[str, Any],
    source: str | Path | None,
    *,
    command: str,
    tracking_uri: str | None = None,
    fresh: bool = False,
    progress: bool = True,
    executor: Mapping[str, Any] | None = None,
) -> StudyV2Result:
    """Run (or resume) the selection, test and reference phases of a v2 study.

    Raises ``TrackingUnreachableError`` before any work when the store does not answer, and
    ``ConfigError`` (naming ``lr_selection``) when an arm has no finished selection run to
    take its rate from (every grid rate diverged, say).
    """
    from experiments.executors import make_executor, run_is_finished
    from experiments.executors.progress import JobsProgress
    from experiments.study.collect import read_selection
    from experiments.study.run import forget_study, open_study_record, study_folder
    from experiments.tracking import check_tracking

    workdir, uri = study_store(study, source, tracking_uri)
    check_tracking(uri)
    runner = make_executor(executor)
    folder = study_folder(study, workdir)
    if fresh:
        forget_study(folder, uri, study)
    folder.create()
    previous = folder.state()
    wall = float(previous.get("wall_seconds", 0.0))
    invocation = int(previous.get("invocations", 0)) + 1
    started = time.time()
    recorder = open_study_record(folder, uri, study, command, workdir)
    folder.update_state(kind="study", version=2, status="RUNNING", invocations=invocation)

    def elapsed() -> float:
        return wall + time.time() - started

    def log_wall() -> None:
        # Stepped by the study's own seconds, which only grow across resumptions, so the
        # store's latest value is the newest total (a step per run count restarts at 0).
        seconds = elapsed()
        metrics = {"study_wall_seconds": seconds, "study_invocations": invocation}
        recorder.log_metrics(metrics, step=int(seconds))

    def save_wall(**state: Any) -> None:
        folder.update_state(wall_seconds=elapsed(), **state)
        log_wall()

    def run_phase(phase: str, planned: Sequence[PlannedRun], done: int) -> int:
        runs = to_run(study, planned)
        if progress and len(runs) < len(planned):
            print(
                f"{study['name']}: {len(planned) - len(runs)} withdrawn {phase} runs not run"
                " (listed with the reason on the results page)"
            )
        if progress:
            print(f"\n== study {study['name']}: {phase}, {len(runs)} runs ({runner.name})")
        jobs = _jobs(study, runs, source, folder, uri)
        finished = frozenset(i for i, job in enumerate(jobs) if run_is_finished(job.run_dir))
        # a run's time taken as proportional to its training steps: the evaluation's fixed
        # part makes the long horizon's share of the estimate err long
        on_result = JobsProgress(f"{study['name']} {phase}", len(jobs), finished, save_wall,
                                 show=progress, costs=tuple(float(r.steps) for r in runs))  # fmt: skip
        runner.run(jobs, progress=progress, on_result=on_result)
        done += len(runs)
        recorder.log_metrics({"study_runs_done": done}, step=done)
        save_wall(phase_done=phase)
        return done

    plan = plan_v2(study)
    done = 0
    try:
        done = run_phase("lr-selection", [r for r in plan if r.phase == "lr-selection"], done)
        done = _beyond_the_grid(study, uri, run_phase, done)
        selected = select_lr(read_selection(uri, study), study["lr_selection"]["tie_points"])
        missing = _missing_rates(study, selected)
        if missing:
            raise ConfigError(
                f"no finished selection run to take a learning rate from for {missing}"
                " (see the selection runs in the store)",
                "lr_selection",
            )
        if progress:
            rates = ", ".join(f"{a} {lr:g}" for a, lr in sorted(selected.items()))
            print(f"selected rates: {rates}")
        done = run_phase(
            "test + reference", seed_major_order(plan_v2(study, selected), study), done
        )
    except BaseException:
        save_wall(status="FAILED")
        recorder.finish("FAILED")
        raise
    save_wall(status="FINISHED")
    recorder.finish("FINISHED")
    if progress:
        print(f"study {study['name']}: {elapsed() / 3600:.2f} h of wall time in all")
    return StudyV2Result(uri, selected, elapsed(), done, len(plan))
