"""v1: a study config as ordinary sweeps (the study behind ``docs/results.md``).

A v1 study config (``experiments/configs/study.yaml``; ``experiments/schema/study.schema.json``)
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
study``; ``experiments.study.run``) keeps the command and the wall time (a changed config runs under a new record; the page
sums them, ``--fresh`` deletes them). Everything resumes: a killed study restarts
where it stopped with the same command. At the end (or with ``--only-regenerate``)
``experiments.study.page`` rebuilds the page from the store, or from the CSVs it wrote next
to the page when the store is absent.

>>> from experiments.study.config import load_study
>>> study, path = load_study("study_quick", ["seeds=[0]"])
>>> plan = plan_study(study, path)
>>> plan.sweeps[0].name, plan.sweeps[0].kind
('study_quick-small-matched', 'matched')
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.config import (
    ConfigError,
    deep_merge,
    dotted,
    load_config,
    resolve_config_path,
    validate_config,
)
from experiments.study.table import ARM_TAG, LR_ARM, DocSettings, method_label
from experiments.sweep import SHARED_SECTIONS, SweepChild, expand_sweep

__all__ = ["PlannedSweep", "StudyPlan", "doc_settings", "plan_study"]


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
            tags = {ARM_TAG: LR_ARM}
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
    """The method label the page gives the child's run (as ``collect._run_row`` does)."""
    strategy = child.config["strategy"]
    adapter = strategy.get("adapter") or {}
    share = None
    if adapter.get("method") == "ssvdo":
        constant = (adapter.get("schedule") or {}).get("constant") or {}
        share = constant.get("inner_share")
    lr = None
    if (child.config["tracking"].get("tags") or {}).get(ARM_TAG) == LR_ARM:
        lr = float(child.config["train"]["optimizer"]["lr"])
    return method_label(
        strategy["name"],
        adapter.get("method", "none"),
        None if share is None else float(share),
        lr,
    )


def doc_settings(plan: StudyPlan, command: str) -> DocSettings:
    """What ``claims`` and ``page`` need from the study config and its plan."""
    study = plan.study
    methods: dict[str, list[str]] = {}
    planned: dict[str, int] = {}
    for sweep in plan.sweeps:
        methods.setdefault(sweep.model, [])
        methods[sweep.model] += [_child_method(c) for c in sweep.children]
        planned[sweep.model] = planned.get(sweep.model, 0) + len(sweep.children)
    return DocSettings(
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
