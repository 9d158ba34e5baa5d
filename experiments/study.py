"""``cl-ssvdo study``: the paper-claims study as sweeps in MLflow, then ``docs/results.md``.

A study config (``experiments/configs/study.yaml``; its own schema, :data:`STUDY_SCHEMA`)
names a base experiment config, the model sizes with their budgets, SSVD-O's inner shares,
the matched baselines and the continual-learning references. It expands into ordinary sweep
configs (``experiments.sweep``), per model size:

- ``<study>-<model>-matched``: SSVD-O at the reference share and every baseline matched to
  it (``sweep.budgets``, ``sweep.inner_share``);
- ``<study>-<model>-split<s>``: SSVD-O at each other inner share ``s``;
- ``<study>-<model>-references``: full fine-tuning and the CL references (no budget);

and, with ``lr_check`` (after that model's sweeps above), ``<study>-<model>-lr-<method>``:
each listed method at the listed learning rates other than its configured one, at the model's
first (tightest) budget and the reference share, tagged ``cl_ssvdo.arm = lr`` (its runs get
their own method labels, ``lora|lr=0.005``, and their own section of the page).

Each sweep is a parent MLflow run with one child per (config, budget, seed); every child is
tagged ``cl_ssvdo.study`` and ``cl_ssvdo.model_size``. A study record run (``cl_ssvdo.kind =
study``) keeps the command and the wall time (a changed config runs under a new record; the page
sums them, ``--fresh`` deletes them). Everything resumes: a killed study restarts
where it stopped with the same command. At the end (or with ``--only-regenerate``)
``experiments.results_doc`` rebuilds the page from the store, or from the CSVs it wrote next
to the page when the store is absent.

Example::

    cl-ssvdo study --dry-run                       # the sweeps and how many runs
    cl-ssvdo study --quick                         # configs/study_quick.yaml
    cl-ssvdo study --config experiments/configs/study.yaml --set seeds=[0]
    cl-ssvdo study --only-regenerate               # docs/results.md from the store, no training
"""

from __future__ import annotations

import argparse
import copy
import math
import shutil
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd

from experiments import claims, results_doc
from experiments.config import (
    CONFIGS_DIR,
    ConfigError,
    _error_to_config_error,
    _load_with_extends,
    add_override_argument,
    apply_overrides,
    config_hash,
    deep_merge,
    dotted,
    fill_defaults,
    flatten,
    load_config,
    load_schema,
    resolve_config_path,
    validate_config,
)
from experiments.sweep import SHARED_SECTIONS, SweepChild, expand_sweep
from experiments.tracking import TrackingUnreachableError, resolve_tracking_uri

__all__ = [
    "STUDY_SCHEMA",
    "PlannedSweep",
    "StudyPlan",
    "build_parser",
    "check_bases",
    "doc_settings",
    "load_study",
    "main",
    "plan_study",
    "regenerate",
    "run_study",
]

DEFAULT_CONFIG = "study.yaml"
QUICK_CONFIG = "study_quick.yaml"
EXIT_CONFIG, EXIT_TRACKING, EXIT_DOC = 2, 3, 1

_CONFIG_LIST = {"type": "array", "items": {"type": "string", "minLength": 1}}
_SHARE = {"type": "number", "minimum": 0, "maximum": 1}

STUDY_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "cl_ssvdo study",
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "models"],
    "properties": {
        "name": {"type": "string", "minLength": 1, "pattern": "^[A-Za-z0-9_.+=-]+$"},
        "description": {"type": "string", "default": ""},
        "estimate": {
            "type": "string",
            "default": "",
            "description": "Expected wall time, shown on the page while the study has not run.",
        },
        "base": {
            "type": "string",
            "minLength": 1,
            "default": "default.yaml",
            "description": "Experiment config giving workdir, stream and tracking (next to this file, or shipped).",
        },
        "experiment": {"type": "string", "minLength": 1, "default": "cl-ssvdo-study"},
        # where every sweep's children run: the run configs' own executor section (docs/scale.md)
        "executor": load_schema()["properties"]["executor"],
        "seeds": {
            "type": "array",
            "items": {"type": "integer", "minimum": 0},
            "minItems": 1,
            "default": [0, 1, 2],
        },
        "pretrain_seeds": {
            "type": ["array", "null"],
            "items": {"type": "integer", "minimum": 0},
            "minItems": 1,
            "uniqueItems": True,
            "default": None,
            "description": "Pretraining seeds (model.pretrain.seed): every sweep of every model "
            "runs on a base pretrained from each, so the spread over seeds includes base-model "
            "variance (sweeps named <study>-<model>-<kind>-base<seed>). null: the base config's "
            "seed only.",
        },
        "overrides": {
            "type": "object",
            "default": {},
            "description": "A partial experiment config merged into every run (leaf by leaf).",
        },
        "models": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {"$ref": "#/$defs/model"},
            "description": "Model sizes, smallest first (claim 4 compares the first with the last).",
        },
        "ssvdo": {
            "type": "object",
            "additionalProperties": False,
            "default": {},
            "properties": {
                "config": {"type": "string", "minLength": 1, "default": "ssvdo.yaml"},
                "inner_shares": {
                    "type": "array",
                    "items": _SHARE,
                    "minItems": 1,
                    "default": [0.25, 0.5, 0.75],
                },
                "reference_share": {**_SHARE, "default": 0.25},
            },
        },
        "baselines": {
            **_CONFIG_LIST,
            "default": ["ssvd.yaml", "lora.yaml", "dora.yaml", "pissa.yaml"],
        },
        "references": {
            **_CONFIG_LIST,
            "default": ["full.yaml", "naive.yaml", "replay.yaml", "ewc.yaml", "weight_avg.yaml"],
        },
        "lr_check": {
            "type": ["object", "null"],
            "default": None,
            "additionalProperties": False,
            "required": ["methods", "lrs"],
            "description": "Learning-rate check: each method also at the other learning rates, "
            "on each model's first budget at the reference share (null: none).",
            "properties": {
                "methods": {
                    **_CONFIG_LIST,
                    "minItems": 1,
                    "uniqueItems": True,
                    "description": "The ssvdo config and/or baselines (names, e.g. [ssvdo, lora]).",
                },
                "lrs": {
                    "type": "array",
                    "items": {"type": "number", "exclusiveMinimum": 0},
                    "minItems": 1,
                    "uniqueItems": True,
                    "description": "Learning rates; each method runs those other than its own.",
                },
                "models": {
                    "type": ["array", "null"],
                    "items": {"type": "string", "minLength": 1},
                    "minItems": 1,
                    "default": None,
                    "description": "Model keys (null: the first model only); a model skips the "
                    "methods it does not run.",
                },
            },
        },
        "claims": {
            "type": "object",
            "additionalProperties": False,
            "default": {},
            "properties": {
                "min_margin": {"type": "number", "minimum": 0, "default": 0.5},
                "min_margin_relative": {"type": "number", "minimum": 0, "default": 2.0},
            },
        },
        "output": {
            "type": "object",
            "additionalProperties": False,
            "default": {},
            "properties": {
                "doc": {"type": "string", "minLength": 1, "default": "docs/results.md"},
                "images": {"type": "string", "minLength": 1, "default": "docs/img/results"},
                "tables": {"type": "string", "minLength": 1, "default": "docs/results"},
            },
        },
    },
    "$defs": {
        "model": {
            "type": "object",
            "additionalProperties": False,
            "required": ["model", "budgets"],
            "properties": {
                "model": {"type": "object", "description": "Merged into the experiment's `model`."},
                "budgets": {
                    "type": "array",
                    "items": {"type": "integer", "minimum": 1},
                    "minItems": 1,
                    "description": "Total trainable parameters per experience, ascending.",
                },
                "methods": {
                    "type": ["array", "null"],
                    "items": {"type": "string", "minLength": 1},
                    "default": None,
                    "description": "Config names to run on this size (null: all).",
                },
                "inner_shares": {
                    "type": ["array", "null"],
                    "items": _SHARE,
                    "minItems": 1,
                    "default": None,
                    "description": "SSVD-O's inner shares on this size (null: ssvdo.inner_shares); "
                    "must include the reference share.",
                },
                "overrides": {"type": "object", "default": {}},
            },
        }
    },
}


@dataclass
class PlannedSweep:
    """One sweep of the study: a valid experiment config with a ``sweep`` section."""

    name: str
    model: str
    kind: str
    config: dict[str, Any]
    children: list[SweepChild] = field(default_factory=list)


@dataclass
class StudyPlan:
    study: dict[str, Any]
    source: Path
    sweeps: list[PlannedSweep]
    workdir: str
    tracking_uri: str | None


# -- config --------------------------------------------------------------------------------------
def _check_schema(study: Mapping[str, Any], source: str) -> None:
    validator = jsonschema.Draft202012Validator(STUDY_SCHEMA)
    errors = list(validator.iter_errors(study))
    if errors:
        raise _error_to_config_error(jsonschema.exceptions.best_match(errors), source)


def _check_meaning(study: Mapping[str, Any], source: str) -> None:
    """What the schema cannot say: the reference share is one of the shares (the study's and
    each model's own), budgets ascend, ``methods`` name configs of the study, ``lr_check``
    names the ssvdo config or baselines and models of the study."""
    shares = study["ssvdo"]["inner_shares"]
    if study["ssvdo"]["reference_share"] not in shares:
        raise ConfigError(
            f"{study['ssvdo']['reference_share']} is not one of ssvdo.inner_shares",
            "ssvdo.reference_share",
            shares,
            source,
        )
    configs = [study["ssvdo"]["config"], *study["baselines"], *study["references"]]
    known = [Path(c).stem for c in configs]
    for size, spec in study["models"].items():
        if list(spec["budgets"]) != sorted(set(spec["budgets"])):
            raise ConfigError(
                "list distinct budgets in ascending order", f"models.{size}.budgets", None, source
            )
        own = spec.get("inner_shares")
        if own is not None and study["ssvdo"]["reference_share"] not in own:
            raise ConfigError(
                f"{study['ssvdo']['reference_share']} (ssvdo.reference_share) is not listed",
                f"models.{size}.inner_shares",
                own,
                source,
            )
        for method in spec.get("methods") or []:
            if method not in known:
                raise ConfigError(
                    f"unknown method {method!r}", f"models.{size}.methods", known, source
                )
    check = study.get("lr_check")
    if check:
        matched = [Path(c).stem for c in [study["ssvdo"]["config"], *study["baselines"]]]
        for method in check["methods"]:
            if Path(method).stem not in matched:
                raise ConfigError(
                    f"{method!r} is not the ssvdo config or a baseline of the study",
                    "lr_check.methods",
                    matched,
                    source,
                )
        for size in check.get("models") or []:
            if size not in study["models"]:
                raise ConfigError(
                    f"unknown model {size!r}", "lr_check.models", list(study["models"]), source
                )


def load_study(
    name_or_path: str | Path, overrides: Sequence[str] = ()
) -> tuple[dict[str, Any], Path]:
    """Read a study config (path or shipped name; ``extends`` and ``--set`` overrides applied),
    validate it and fill its defaults. Returns ``(study, path)``.

    >>> study, path = load_study("study_quick", ["seeds=[0]"])
    >>> study["seeds"], path.name
    ([0], 'study_quick.yaml')
    """
    path = resolve_config_path(name_or_path)
    study = apply_overrides(_load_with_extends(path), overrides)
    _check_schema(study, str(path))
    study = fill_defaults(study, STUDY_SCHEMA)
    _check_schema(study, str(path))
    _check_meaning(study, str(path))
    return study, path


def _split(overrides: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(sections every sweep child shares with its sweep config, the per-child rest)."""
    shared = {k: v for k, v in overrides.items() if k in SHARED_SECTIONS}
    return shared, {k: v for k, v in overrides.items() if k not in SHARED_SECTIONS}


def _resolve_near(name: str, source: Path) -> Path:
    candidate = source.parent / name
    return candidate if candidate.is_file() else resolve_config_path(name)


def _share_name(share: float) -> str:
    return f"{share:g}"


def _planned_sweep(
    study: Mapping[str, Any],
    source: Path,
    size: str,
    common: Mapping[str, Any],
    kind: str,
    sweep: dict[str, Any],
    tags: Mapping[str, str] | None = None,
) -> PlannedSweep:
    """The sweep ``<study>-<size>-<kind>``: ``common`` (the model's shared sections) with the
    study's name, seeds, experiment and tags (plus ``tags``) and ``sweep`` as its sweep section.
    With ``pretrain_seeds`` the name ends in ``-base<seed>`` (``common``'s pretraining seed)."""
    name = f"{study['name']}-{size}-{kind}"
    if study.get("pretrain_seeds"):
        name += f"-base{common['model']['pretrain']['seed']}"
    cfg = copy.deepcopy(dict(common))
    cfg["name"] = name
    cfg["description"] = f"Study {study['name']}, model {size}: {kind}."
    cfg["seeds"] = list(study["seeds"])
    cfg["tracking"]["experiment"] = study["experiment"]
    cfg["tracking"]["tags"] = {
        **cfg["tracking"].get("tags", {}),
        "cl_ssvdo.study": study["name"],
        "cl_ssvdo.model_size": size,
        **(tags or {}),
    }
    cfg["sweep"] = sweep
    validate_config(cfg, source=f"{source} (sweep {name})")
    children = expand_sweep(cfg, (), str(source))
    return PlannedSweep(name, size, kind, cfg, children)


def _lr_check_sweeps(
    study: Mapping[str, Any],
    source: Path,
    size: str,
    common: Mapping[str, Any],
    matched: PlannedSweep | None,
) -> list[PlannedSweep]:
    """The learning-rate check on model ``size``: per method of ``lr_check`` that the model
    runs, the listed rates other than the one its matched-sweep children have (none if all
    equal it), at the model's first budget and the reference share."""
    check = study.get("lr_check")
    if not check or size not in (check.get("models") or list(study["models"])[:1]):
        return []
    by_stem = {Path(c).stem: c for c in [study["ssvdo"]["config"], *study["baselines"]]}
    out = []
    for method in check["methods"]:
        stem = Path(method).stem
        children = [c for c in (matched.children if matched else []) if Path(c.source).stem == stem]
        if not children:  # the model does not run this method
            continue
        own = float(children[0].config["train"]["optimizer"]["lr"])
        lrs = [lr for lr in check["lrs"] if not math.isclose(float(lr), own)]
        if lrs:
            sweep = {
                **copy.deepcopy(matched.config["sweep"]),
                "configs": [by_stem[stem]],
                "budgets": [study["models"][size]["budgets"][0]],
                "grid": {"train.optimizer.lr": lrs},
            }
            tags = {claims.ARM_TAG: claims.LR_ARM}
            out.append(_planned_sweep(study, source, size, common, f"lr-{stem}", sweep, tags))
    return out


def plan_study(study: Mapping[str, Any], source: str | Path) -> StudyPlan:
    """The study's sweeps, in running order (each model size: matched, splits, references,
    then its learning-rate check), with their children expanded and validated
    (``ConfigError`` before any work)."""
    source = Path(source)
    base = load_config(_resolve_near(study["base"], source))
    shared, child = _split(study["overrides"])
    top = deep_merge(base, shared)
    if top["tracking"].get("offline"):
        raise ConfigError(
            "the study reads its results back from the tracking store: offline is not supported",
            "overrides.tracking.offline",
            source=str(source),
        )
    ssvdo_cfg = study["ssvdo"]["config"]
    ref = study["ssvdo"]["reference_share"]
    sweeps: list[PlannedSweep] = []
    sizes = [
        (size, spec, pretrain_seed)
        for size, spec in study["models"].items()
        for pretrain_seed in study.get("pretrain_seeds") or [None]
    ]
    for size, spec, pretrain_seed in sizes:
        m_shared, m_child = _split(spec["overrides"])
        common = deep_merge(top, m_shared)
        common["model"] = deep_merge(common["model"], spec["model"])
        if pretrain_seed is not None:
            common["model"]["pretrain"]["seed"] = int(pretrain_seed)
        child_overrides = dotted(deep_merge(child, m_child))
        wanted = spec.get("methods")

        def want(name: str, wanted=wanted) -> bool:
            return wanted is None or Path(name).stem in wanted

        groups: list[tuple[str, list[str], list[int] | None, float]] = []
        matched = [c for c in [ssvdo_cfg, *study["baselines"]] if want(c)]
        if matched:
            groups.append(("matched", matched, list(spec["budgets"]), ref))
        if want(ssvdo_cfg):
            for share in spec.get("inner_shares") or study["ssvdo"]["inner_shares"]:
                if share != ref:
                    groups.append(
                        (f"split{_share_name(share)}", [ssvdo_cfg], list(spec["budgets"]), share)
                    )
        references = [c for c in study["references"] if want(c)]
        if references:
            groups.append(("references", references, None, ref))
        model_sweeps = [
            _planned_sweep(
                study,
                source,
                size,
                common,
                kind,
                {
                    "configs": configs,
                    "budgets": budgets,
                    "inner_share": share,
                    "seeds": list(study["seeds"]),
                    "grid": {},
                    "overrides": child_overrides,
                },
            )
            for kind, configs, budgets, share in groups
        ]
        matched_sweep = next((s for s in model_sweeps if s.kind == "matched"), None)
        sweeps += model_sweeps + _lr_check_sweeps(study, source, size, common, matched_sweep)
    return StudyPlan(
        dict(study),
        source,
        sweeps,
        str(top["workdir"]),
        top["tracking"].get("uri") or None,
    )


def _child_method(child: SweepChild) -> str:
    """The method label the page gives the child's run (as ``results_doc._run_row`` does)."""
    strategy = child.config["strategy"]
    adapter = strategy.get("adapter") or {}
    share = None
    if adapter.get("method") == "ssvdo":
        constant = (adapter.get("schedule") or {}).get("constant") or {}
        share = constant.get("inner_share")
    lr = None
    if (child.config["tracking"].get("tags") or {}).get(claims.ARM_TAG) == claims.LR_ARM:
        lr = float(child.config["train"]["optimizer"]["lr"])
    return claims.method_label(
        strategy["name"],
        adapter.get("method", "none"),
        None if share is None else float(share),
        lr,
    )


def doc_settings(plan: StudyPlan, command: str) -> claims.DocSettings:
    """What ``claims`` and ``results_doc`` need from the study config and its plan."""
    study = plan.study
    methods: dict[str, list[str]] = {}
    planned: dict[str, int] = {}
    for sweep in plan.sweeps:
        methods.setdefault(sweep.model, [])
        methods[sweep.model] += [_child_method(c) for c in sweep.children]
        planned[sweep.model] = planned.get(sweep.model, 0) + len(sweep.children)
    return claims.DocSettings(
        study=study["name"],
        experiment=study["experiment"],
        command=command,
        models=list(study["models"]),
        budgets={m: list(spec["budgets"]) for m, spec in study["models"].items()},
        seeds=list(study["seeds"]),
        inner_shares=list(study["ssvdo"]["inner_shares"]),
        reference_share=float(study["ssvdo"]["reference_share"]),
        min_margin=float(study["claims"]["min_margin"]),
        min_margin_relative=float(study["claims"]["min_margin_relative"]),
        estimate=study.get("estimate", ""),
        description=study.get("description", ""),
        planned_runs=planned,
        methods={m: sorted(set(v)) for m, v in methods.items()},
        presets={m: str(spec["model"].get("preset", m)) for m, spec in study["models"].items()},
    )


# -- running -------------------------------------------------------------------------------------
def _study_folder(plan: StudyPlan):
    from experiments.recorder import RunDir

    body = {k: v for k, v in plan.study.items() if k not in ("description", "estimate", "output")}
    for key in ("lr_check", "pretrain_seeds"):  # unset: the folder from before the key existed
        if body.get(key) is None:
            body.pop(key, None)
    return RunDir(Path(plan.workdir) / "studies" / f"{plan.study['name']}-{config_hash(body)}")


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
    from experiments.recorder import RunRecorder
    from experiments.sweep import run_sweep
    from experiments.tracking import check_tracking, get_client, resolve_artifact_location

    study = plan.study
    uri = resolve_tracking_uri(tracking_uri or plan.tracking_uri, plan.workdir)
    check_tracking(uri)
    folder = _study_folder(plan)
    if fresh:  # a fresh study also restarts its wall-time count (summed over the record runs)
        if folder.path.exists():
            shutil.rmtree(folder.path)
        client = get_client(uri)
        for record in results_doc.study_records(uri, study["experiment"], study["name"]):
            client.delete_run(record.info.run_id)
    folder.create()
    state = folder.state()
    previous = state.get("mlflow") or {}
    resume = previous.get("run_id") if previous.get("tracking_uri") == uri else None
    recorder = RunRecorder(
        folder.path,
        uri,
        study["experiment"],
        study["name"],
        run_id=resume,
        check=False,
        artifact_location=resolve_artifact_location(uri, plan.workdir),
        tags={"cl_ssvdo.kind": "study", "cl_ssvdo.study": study["name"]},
    )
    recorder.set_tags({"cl_ssvdo.kind": "study", "cl_ssvdo.study": study["name"]})
    recorder.log_params(
        {"study.command": command, **{f"study.{k}": v for k, v in flatten(study).items()}}
    )
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


def regenerate(
    plan: StudyPlan,
    settings: claims.DocSettings,
    *,
    tracking_uri: str | None = None,
    quick_command: str | None = None,
) -> list[Path]:
    """Rebuild the page from the store (or, when the store has no run of this study, from the
    CSVs of an earlier regeneration); with neither, the "not yet run" page.

    Raises ``FileExistsError`` rather than replace another study's results with that page.
    """
    out = plan.study["output"]
    uri = resolve_tracking_uri(tracking_uri or plan.tracking_uri, plan.workdir)
    try:
        frame = results_doc.collect_runs(uri, settings.experiment, settings.study, settings)
        meta = results_doc.study_record(uri, settings.experiment, settings.study)
    except TrackingUnreachableError as exc:
        warnings.warn(f"{exc}; using the CSVs next to the page", RuntimeWarning, stacklevel=2)
        frame, meta = pd.DataFrame(), {}
    if frame.empty:
        frame, meta = results_doc.load_runs_csv(out["tables"], settings.study)
        if frame.empty and meta.get("study") not in (None, settings.study):
            raise FileExistsError(
                f"{out['doc']} holds results of study {meta['study']!r} and no run of study "
                f"{settings.study!r} was found: not replacing them with a 'not yet run' page"
            )
    if frame.empty:
        return [results_doc.write_not_run_page(out["doc"], settings, quick_command)]
    return results_doc.write_results(
        frame, settings, doc=out["doc"], images=out["images"], tables=out["tables"], meta=meta
    )


# -- command line --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cl-ssvdo study",
        description="The paper-claims study: sweeps in MLflow, then docs/results.md from the store.",
    )
    p.add_argument("--config", default=None, help=f"study config (default: {DEFAULT_CONFIG})")
    p.add_argument("--quick", action="store_true", help=f"the reduced study ({QUICK_CONFIG})")
    p.add_argument(
        "--only-regenerate",
        action="store_true",
        help="rebuild the results page from the store (or its CSVs) without training",
    )
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI")
    add_override_argument(
        p, help="override a field of the study config (dotted key, YAML value), repeatable"
    )
    p.add_argument("--dry-run", action="store_true", help="list the sweeps and runs, then exit")
    p.add_argument("--fresh", action="store_true", help="start every run over")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    from experiments.cli import add_executor_args

    add_executor_args(p)
    return p


def _display_path(path: Path) -> str:
    resolved = path.resolve()
    for root in (CONFIGS_DIR.parent.parent, Path.cwd()):
        try:
            return resolved.relative_to(root.resolve()).as_posix()
        except ValueError:
            continue
    return str(path)


def _command(args: argparse.Namespace, path: Path) -> str:
    parts = ["cl-ssvdo study"]
    parts.append("--quick" if args.quick else f"--config {_display_path(path)}")
    parts += [f"--set {o}" for o in args.overrides]
    return " ".join(parts)


def _executor(study: Mapping[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from experiments.cli import executor_spec

    return executor_spec(study.get("executor"), args)


def main(argv: Sequence[str] | None = None) -> int:
    """``cl-ssvdo study ...``; returns the exit status (2: invalid config, 3: store down)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.quick and args.config:
        parser.error("give --config or --quick, not both")
    from experiments import study_v2

    if args.config and study_v2.is_v2(args.config):  # version: 2 (docs/protocol.md)
        return study_v2.main(argv)
    try:
        study, path = load_study(QUICK_CONFIG if args.quick else args.config or DEFAULT_CONFIG,
                                 args.overrides)  # fmt: skip
        plan = plan_study(study, path)
        command = _command(args, path)
        settings = doc_settings(plan, command)
        if args.dry_run:
            for sweep in plan.sweeps:
                print(f"{sweep.name}: {len(sweep.children)} runs")
                for child in sweep.children:
                    print(f"  {child.label}")
            total = ", ".join(f"{m}: {n}" for m, n in settings.planned_runs.items())
            print(f"runs per model: {total}; expected time: {study['estimate'] or 'not stated'}")
            return 0
        if not args.only_regenerate:
            run_study(
                plan,
                command=command,
                tracking_uri=args.tracking_uri,
                fresh=args.fresh,
                progress=not args.quiet,
                executor=_executor(study, args),
            )
        quick = None if args.quick or path.name == QUICK_CONFIG else "cl-ssvdo study --quick"
        files = regenerate(plan, settings, tracking_uri=args.tracking_uri, quick_command=quick)
    except ConfigError as exc:
        print(f"cl-ssvdo study: invalid config: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except TrackingUnreachableError as exc:
        print(f"cl-ssvdo study: {exc}", file=sys.stderr)
        return EXIT_TRACKING
    except FileExistsError as exc:
        print(f"cl-ssvdo study: {exc}", file=sys.stderr)
        return EXIT_DOC
    print("written: " + ", ".join(str(f) for f in files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
