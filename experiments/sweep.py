"""Sweeps: a grid of strategies x budgets x (grid values) x seeds, run as nested MLflow runs under
one parent run in the same experiment, with a parent-level comparison (table + learning-vs-
forgetting scatter with marker size = trainable parameters + WER-vs-parameters plot).

A sweep config is an experiment config with a ``sweep`` section (schema ``$defs/sweep``).
Each child is built from one of ``sweep.configs``:

1. the child file (with its own ``extends``) gives the strategy and its training settings;
2. the sweep config's shared sections replace the child's: ``workdir``, ``stream``, ``model``
   and ``tracking`` (every child sees the same data, base model and store/experiment);
3. ``sweep.overrides`` and the command line's ``--set`` overrides apply to every child;
4. a budget from ``sweep.budgets``: SSVD-O gets ``schedule: {constant: {budget, inner_share}}``,
   SSVD/LoRA/DoRA/PiSSA get ``match:`` that SSVD-O schedule; configs without a budgeted adapter
   (full, none) run once per seed;
5. one combination of ``sweep.grid`` (dotted key -> values);
6. one seed (``sweep.seeds`` or the child's own).

Local layout: ``<workdir>/sweeps/<name>-<hash>/`` holds the parent's state, the comparison
files and ``runs/`` with every child's run folder (resumable like any run).
"""

from __future__ import annotations

import copy
import itertools
import shutil
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from experiments.compare import comparison_frame, frame_to_text, write_comparison
from experiments.config import (
    ConfigError,
    apply_overrides,
    config_hash,
    fill_defaults,
    flatten,
    load_config,
    load_schema,
    resolve_config_path,
    validate_config,
)
from experiments.recorder import RunRecorder, sync_run_dir
from experiments.results import SUMMARY_SCALARS, RunResult
from experiments.run_dir import RunDir
from experiments.tracking import (
    check_tracking,
    resolve_artifact_location,
    resolve_tracking_uri,
)

__all__ = ["SweepChild", "SweepResult", "expand_sweep", "run_sweep", "sync_folder"]

SHARED_SECTIONS = ("workdir", "stream", "model", "tracking")
BUDGETED = ("ssvdo", "ssvd", "lora", "dora", "pissa", "mica", "corda", "osf")


@dataclass
class SweepChild:
    """One child run: its full config, seed, label and the budget it was given (if any)."""

    label: str
    config: dict[str, Any]
    seed: int
    source: str
    budget: int | None = None
    grid: dict[str, Any] = field(default_factory=dict)


@dataclass
class SweepResult:
    folder: Path
    parent_run_id: str | None
    children: list[RunResult]
    frame: pd.DataFrame
    table_text: str
    files: list[Path] = field(default_factory=list)


def _sweep_section(config: Mapping[str, Any]) -> dict[str, Any]:
    if not config.get("sweep"):
        raise ConfigError(
            "this config has no sweep section (use `cl-ssvdo run` for one strategy)", "sweep"
        )
    return config["sweep"]


def _child_path(name: str, sweep_source: str | None) -> Path:
    if sweep_source:
        candidate = Path(sweep_source).parent / name
        if candidate.is_file():
            return candidate
    return resolve_config_path(name)


def apply_budget(config: dict[str, Any], budget: int, inner_share: float) -> bool:
    """Give ``config``'s adapter the total budget; False when the strategy has no budget."""
    adapter = config["strategy"].get("adapter")
    if not adapter or adapter["method"] not in BUDGETED:
        return False
    schedule = {"constant": {"budget": int(budget), "inner_share": float(inner_share)}}
    for key in ("schedule", "match", "rank", "inner_ratio"):
        adapter.pop(key, None)
    adapter["schedule" if adapter["method"] == "ssvdo" else "match"] = schedule
    return True


def _label(name: str, budget: int | None, grid: Mapping[str, Any], seed: int) -> str:
    parts = [name]
    if budget is not None:
        parts.append(f"b{budget}")
    parts += [f"{k.split('.')[-1]}={v}" for k, v in grid.items()]
    parts.append(f"s{seed}")
    return "-".join(str(p).replace("/", "_").replace(" ", "") for p in parts)


def expand_sweep(
    config: Mapping[str, Any], overrides: Sequence[str] = (), source: str | None = None
) -> list[SweepChild]:
    """Every child of the sweep, in order (configs, budgets, grid, seeds)."""
    sweep = _sweep_section(config)
    grid_keys = list(sweep.get("grid") or {})
    grid_values = [sweep["grid"][k] for k in grid_keys]
    combos = [
        dict(zip(grid_keys, values, strict=True)) for values in itertools.product(*grid_values)
    ] or [{}]
    children: list[SweepChild] = []
    seen: set[str] = set()
    for name in sweep["configs"]:
        path = _child_path(name, source)
        child_overrides = [o for o in overrides if not o.strip().startswith("sweep.")]
        base = load_config(path, child_overrides, validate=False)
        for key in SHARED_SECTIONS:
            if key in config:
                base[key] = copy.deepcopy(config[key])
        base = apply_overrides(base, sweep.get("overrides") or {})
        for budget in sweep.get("budgets") or [None]:
            child = copy.deepcopy(base)
            applied = budget is not None and apply_budget(
                child, budget, sweep.get("inner_share", 0.5)
            )
            for combo in combos:
                cfg = apply_overrides(child, combo)
                seeds = sweep.get("seeds") or cfg.get("seeds") or [0]
                for seed in seeds:
                    label = _label(cfg["name"], budget if applied else None, combo, seed)
                    if label in seen:
                        continue  # an unbudgeted config runs once per seed and grid value
                    seen.add(label)
                    cfg_seed = copy.deepcopy(cfg)
                    cfg_seed["seeds"] = [seed]
                    tags = cfg_seed.setdefault("tracking", {}).setdefault("tags", {})
                    if applied:
                        tags["cl_ssvdo.budget"] = str(budget)
                    tags["cl_ssvdo.sweep"] = config["name"]
                    validate_config(cfg_seed, source=f"{path} (sweep child {label})")
                    cfg_seed = fill_defaults(cfg_seed, load_schema())
                    validate_config(cfg_seed, source=f"{path} (sweep child {label})")
                    children.append(
                        SweepChild(
                            label, cfg_seed, seed, str(path), budget if applied else None, combo
                        )
                    )
    return children


def sweep_params(sweep: Mapping[str, Any]) -> dict[str, str]:
    """The parent run's params: the flattened ``sweep`` section, where a sweep without
    ``budgets`` says that each config keeps its own budget (its children log
    ``adapter.budget``) instead of ``budgets=null`` next to an ``inner_share`` never applied.

    >>> sweep_params({"configs": ["a.yaml"], "budgets": None, "inner_share": 0.5})
    {'sweep.configs': '["a.yaml"]', 'sweep.budgets': "each config's own (see adapter.budget)"}
    """
    params = {f"sweep.{k}": v for k, v in flatten(sweep).items()}
    if not sweep.get("budgets"):
        params["sweep.budgets"] = "each config's own (see adapter.budget)"
        params.pop("sweep.inner_share", None)
    return params


def _sweep_folder(config: Mapping[str, Any]) -> RunDir:
    # where the children run is not what they compute: a sweep resumes under another executor
    body = {k: v for k, v in config.items() if k not in ("description", "executor")}
    return RunDir(Path(config["workdir"]) / "sweeps" / f"{config['name']}-{config_hash(body)}")


def run_sweep(
    config: Mapping[str, Any],
    *,
    tracking_uri: str | None = None,
    fresh: bool = False,
    progress: bool = True,
    overrides: Sequence[str] = (),
    source: str | None = None,
    executor: Mapping[str, Any] | None = None,
) -> SweepResult:
    """Run every child (resuming finished/partial ones) under one parent run; returns the
    comparison. Raises ``TrackingUnreachableError`` before any work if the store is down.

    ``executor`` (else the config's ``executor`` section, else local): where the children run
    (``experiments.executors``); the parent and its children are the same for every executor.
    """
    from experiments.executors import ChildJob, make_executor, run_is_finished
    from experiments.executors.progress import JobsProgress

    runner = make_executor(executor if executor is not None else config.get("executor"))

    children = expand_sweep(config, overrides, source)
    offline = bool(config["tracking"].get("offline"))
    uri = resolve_tracking_uri(tracking_uri or config["tracking"]["uri"], config["workdir"])
    if not offline:
        check_tracking(uri)
    folder = _sweep_folder(config)
    if fresh and folder.path.exists():
        shutil.rmtree(folder.path)
    folder.create()
    (folder.path / "config.yaml").write_text(yaml.safe_dump(dict(config), sort_keys=False))
    state = folder.state()
    previous = state.get("mlflow") or {}
    resume_id = (
        previous.get("run_id")
        if previous.get("synced") and previous.get("tracking_uri") == uri
        else None
    )
    folder.update_state(
        kind="sweep",
        status="RUNNING",
        run_name=config["name"],
        workdir=str(config["workdir"]),
        started=state.get("started", time.time()),
        children=[c.label for c in children],
    )

    def open_parent(run_id: str | None) -> RunRecorder:
        return RunRecorder(
            folder.path,
            None if offline else uri,
            config["tracking"]["experiment"],
            config["name"],
            run_id=run_id,
            offline=offline,
            check=False,
            artifact_location=resolve_artifact_location(
                uri, config["workdir"], config["tracking"].get("artifact_location")
            ),
            tags={"cl_ssvdo.kind": "sweep"},
        )

    recorder = open_parent(resume_id)
    recorder.set_tags({"cl_ssvdo.kind": "sweep", "cl_ssvdo.children": str(len(children))})
    recorder.log_params(sweep_params(config.get("sweep", {})))
    recorder.set_tags({"cl_ssvdo.executor": runner.name})
    jobs = [
        ChildJob(
            config=child.config,
            seed=child.seed,
            run_dir=str(folder.path / "runs" / f"{child.label}-{config_hash(child.config)}"),
            run_name=child.label,
            tracking_uri=uri,
            offline=offline or not recorder.online,
            parent_run_id=recorder.run_id,
        )
        for child in children
    ]

    def record_child_dirs() -> None:  # the children that ran (also after an interruption)
        started = {
            j.run_name: j.run_dir for j in jobs if (Path(j.run_dir) / "state.json").is_file()
        }
        folder.update_state(child_dirs=started)

    try:
        finished = frozenset(i for i, job in enumerate(jobs) if run_is_finished(job.run_dir))
        on_result = JobsProgress(f"sweep {config['name']}", len(jobs), finished,
                                 record_child_dirs, show=progress)  # fmt: skip
        results: list[RunResult] = runner.run(jobs, progress=progress, on_result=on_result)
        for child, result in zip(children, results, strict=True):
            result.name = child.label
        record_child_dirs()
        lost = not recorder.online or not all(r.synced for r in results)
        if not offline and lost and _wait_for_store(uri, STORE_WAIT_S):
            # the store went away during the sweep (a server restart) and is back: the same
            # parent run again, and the children that went on offline pushed under it
            if not recorder.online:
                recorder = open_parent(recorder.run_id)
            results = _sync_offline_children(jobs, results, recorder, uri, config)
    except BaseException:
        record_child_dirs()
        folder.update_state(status="FAILED")
        recorder.finish("FAILED")
        raise
    frame = comparison_frame([_row(c, r) for c, r in zip(children, results, strict=True)])
    files = write_comparison(frame, folder.artifacts, title=config["name"])
    recorder.log_artifacts_dir()
    recorder.log_table(frame, "comparison")
    folder.update_state(status="FINISHED", ended=time.time())
    recorder.finish("FINISHED")
    return SweepResult(folder.path, recorder.run_id, results, frame, frame_to_text(frame), files)


STORE_WAIT_S = 300.0  # how long a sweep waits at its end for a store that went away


def _wait_for_store(uri: str, timeout: float) -> bool:
    """True once ``uri`` answers (checked every 2 s), False after ``timeout`` seconds."""
    from experiments.tracking import TrackingUnreachableError

    deadline = time.monotonic() + timeout
    while True:
        try:
            check_tracking(uri)
            return True
        except TrackingUnreachableError:
            if time.monotonic() > deadline:
                warnings.warn(f"{uri} still unreachable after {timeout:.0f} s: push the sweep "
                              "later with `cl-ssvdo sync SWEEP_FOLDER`", RuntimeWarning,
                              stacklevel=3)  # fmt: skip
                return False
            time.sleep(2)


def _sync_offline_children(jobs, results, recorder, uri, config) -> list[RunResult]:
    """Push the children that lost the store mid-run (e.g. a server restart: they went on
    offline) now that the parent reaches it again; their partial copies get superseded."""
    if not recorder.online:
        return results
    out = []
    for job, result in zip(jobs, results, strict=True):
        if not job.offline and not result.synced:
            try:
                sync_run_dir(job.run_dir, uri, config["tracking"]["experiment"],
                             parent_run_id=recorder.run_id, force=True)  # fmt: skip
                name, result = result.name, RunResult.from_run_dir(job.run_dir)
                result.name = name
            except Exception as exc:  # the folder keeps everything: `cl-ssvdo sync` later
                warnings.warn(f"child {job.run_name} not synced: {exc}", RuntimeWarning,
                              stacklevel=2)  # fmt: skip
        out.append(result)
    return out


def _row(child: SweepChild, result: RunResult) -> dict[str, Any]:
    summary = result.summary
    adapter = child.config["strategy"].get("adapter") or {}
    row: dict[str, Any] = {
        "run": child.label,
        "run_id": result.run_id,
        "strategy": child.config["strategy"]["name"],
        "adapter": adapter.get("method", "none"),
        "budget": float(child.budget) if child.budget is not None else float("nan"),
        "seed": child.seed,
        "trainable_params": float(summary.get("trainable_params_max", float("nan"))),
    }
    for key in SUMMARY_SCALARS:
        value = summary.get(key)
        row[key] = float(value) if isinstance(value, int | float) else float("nan")
    for domain, value in zip(result.domains, result.wer[-1], strict=True):
        row[f"wer/{domain}"] = value
    return row


def sync_folder(
    path: str | Path,
    tracking_uri: str | None = None,
    *,
    experiment: str | None = None,
    force: bool = False,
) -> str:
    """Push a run folder, or a sweep folder (parent then children), to the tracking store."""
    folder = RunDir(path)
    state = folder.state()
    if not state:
        raise FileNotFoundError(f"{path} is not a run or sweep folder (no state.json)")
    uri = resolve_tracking_uri(tracking_uri, state.get("workdir", folder.path.parent.parent))
    if state.get("kind") != "sweep":
        return sync_run_dir(folder.path, uri, experiment, force=force)
    parent_id = sync_run_dir(folder.path, uri, experiment, force=force)
    for child_dir in state.get("child_dirs", {}).values():
        child_state = RunDir(child_dir).state().get("mlflow") or {}
        done = (
            child_state.get("synced")
            and child_state.get("tracking_uri") == uri
            and child_state.get("parent_run_id") == parent_id
        )
        if force or not done:
            sync_run_dir(child_dir, uri, experiment, parent_run_id=parent_id, force=True)
    return parent_id
