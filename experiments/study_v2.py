"""Study v2: the pre-registered protocol of ``docs/protocol.md`` as a config the code enforces.

A v2 study config (``version: 2``; ``experiments/configs/study_v2.yaml``, ``study_whisper.yaml``,
``study_whisper_cpu.yaml``; schema :data:`STUDY_V2_SCHEMA`) states the stream (task-0 base
domain + the experiences), the learning-rate selection (grid, seed, split, rule), the test
seeds, the horizons, the arms (SSVD-O shares x budgets, matched baselines, unbudgeted
references, budget schedules, top vs tail subspace, competitors not run with their reason)
and the CL references (joint, single-task). :func:`check_protocol` refuses a config that
breaks the protocol, each rule with the field it concerns:

- the base domain is task 0: not an experience; experiences distinct; the full protocol has
  at least :data:`MIN_EXPERIENCES` (a longer stream than adult -> child -> accent);
- learning rates come from a grid of >= 3 rates on the **valid** split, by the rule
  ``lowest_valid_awer`` (ties within ``tie_points`` go to the smaller rate), with a selection
  seed that is not a test seed;
- >= :data:`MIN_SEEDS` distinct seeds for every main arm, unless ``reduced: true`` with a
  stated ``reduced_reason`` (and an estimate of at most :data:`REDUCED_MAX_HOURS` hours);
- a main horizon and, in the full protocol, a longer one (``long > main``) whose arms exist;
- the full protocol runs SSVD-O at >= 3 inner shares and >= 2 budgets, LoRA, DoRA, PiSSA and
  SSVD matched, full fine-tuning, the three budget schedules (constant, inner-then-outer,
  outer-then-inner) and the top and tail subspaces, and names both references.

:func:`plan_v2` expands the config into runs: the **selection phase** first (each arm that
selects its own rate, at every grid rate, on the selection seed, valid split, main horizon,
tight budget at the reference share), then the **test runs** (every variant x seed x base,
main horizon, plus the long horizon for ``horizons.long_arms``) at the rate the rule selected,
read from the MLflow store (:func:`read_selection`; "pending" while not there).

Example
-------
>>> study, _ = load_study_v2("study_whisper_cpu")
>>> plan = plan_v2(study)
>>> plan[0].phase, plan[0].split, plan[-1].phase
('lr-selection', 'valid', 'test')
>>> select_lr([("lora", 1e-3, 30.1), ("lora", 2e-3, 30.0), ("lora", 5e-3, 35.0)], 0.2)
{'lora': 0.001}
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from experiments.config import (
    ConfigError,
    _error_to_config_error,
    _load_with_extends,
    add_override_argument,
    apply_overrides,
    dotted,
    fill_defaults,
    load_config,
    resolve_config_path,
)

__all__ = [
    "MIN_EXPERIENCES",
    "MIN_SEEDS",
    "REDUCED_MAX_HOURS",
    "SCHEDULES",
    "STUDY_V2_SCHEMA",
    "PlannedRun",
    "check_protocol",
    "experiment_config",
    "is_v2",
    "load_study_v2",
    "main",
    "plan_v2",
    "read_selection",
    "schedule_setting",
    "select_lr",
]

MIN_SEEDS = 5
MIN_EXPERIENCES = 3
MIN_SHARES = 3
MIN_BUDGETS = 2
MIN_GRID = 3
REDUCED_MAX_HOURS = 3.0
MATCHED_REQUIRED = ("lora", "dora", "pissa", "ssvd")
SCHEDULES = ("constant", "inner_then_outer", "outer_then_inner")
SELECTION_RULES = ("lowest_valid_awer",)
PHASE_TAG = "study.phase"
STUDY_TAG = "cl_ssvdo.study"
ARM_TAG = "study.arm"

_NUMBER_LIST = {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}}
_SHARE = {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}

STUDY_V2_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "cl_ssvdo study v2 (docs/protocol.md)",
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "name", "stream", "lr_selection", "seeds", "horizons", "arms"],
    "properties": {
        "version": {"const": 2},
        "name": {"type": "string", "minLength": 1, "pattern": "^[A-Za-z0-9_.+=-]+$"},
        "description": {"type": "string", "default": ""},
        "base": {"type": "string", "minLength": 1, "default": "default.yaml"},
        "experiment": {"type": "string", "minLength": 1, "default": "cl-ssvdo-study-v2"},
        "estimate_hours": {"type": ["number", "null"], "exclusiveMinimum": 0, "default": None},
        "reduced": {"type": "boolean", "default": False},
        "reduced_reason": {"type": ["string", "null"], "default": None},
        "device": {"type": "string", "enum": ["auto", "cpu", "cuda"], "default": "auto"},
        "overrides": {
            "type": "object",
            "default": {},
            "description": "A partial experiment config merged into every run.",
        },
        "stream": {
            "type": "object",
            "additionalProperties": False,
            "required": ["base_domain", "experiences"],
            "properties": {
                "base_domain": {"type": "string", "minLength": 1},
                "experiences": {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1},
                    "minItems": 1,
                },
            },
        },
        "lr_selection": {
            "type": "object",
            "additionalProperties": False,
            "required": ["grid", "seed"],
            "properties": {
                "grid": {**_NUMBER_LIST, "minItems": 1},
                "seed": {"type": "integer", "minimum": 0},
                "split": {"type": "string", "default": "valid"},
                "rule": {"type": "string", "default": "lowest_valid_awer"},
                "tie_points": {"type": "number", "minimum": 0, "default": 0.2},
            },
        },
        "seeds": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1},
        "pretrain_seeds": {
            "type": "array",
            "items": {"type": "integer", "minimum": 0},
            "minItems": 1,
            "uniqueItems": True,
            "default": [0],
        },
        "horizons": {
            "type": "object",
            "additionalProperties": False,
            "required": ["main"],
            "properties": {
                "main": {"type": "integer", "minimum": 1},
                "long": {"type": ["integer", "null"], "minimum": 1, "default": None},
                "long_arms": {
                    "type": "array",
                    "items": {"type": "string", "minLength": 1},
                    "default": [],
                },
            },
        },
        "budgets": {
            "type": "array",
            "items": {"type": "integer", "minimum": 1},
            "minItems": 1,
            "description": "Total trainable parameters per experience, ascending (first = tight).",
        },
        "reference_share": {**_SHARE, "default": 0.25},
        "arms": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {"$ref": "#/$defs/arm"},
        },
        "references": {
            "type": "object",
            "additionalProperties": False,
            "default": {},
            "properties": {
                "joint": {"type": ["string", "null"], "default": None},
                "single_task": {"type": ["string", "null"], "default": None},
            },
        },
    },
    "$defs": {
        "arm": {
            "type": "object",
            "additionalProperties": False,
            "required": ["kind"],
            "properties": {
                "kind": {
                    "enum": ["ssvdo", "matched", "unbudgeted", "schedule", "subspace", "not_run"]
                },
                "config": {"type": "string", "minLength": 1},
                "main": {"type": "boolean", "default": True},
                "inner_shares": {"type": "array", "items": _SHARE, "minItems": 1},
                "schedule": {"enum": list(SCHEDULES)},
                "shares": {
                    "type": "array",
                    "items": _SHARE,
                    "minItems": 2,
                    "maxItems": 2,
                    "default": [0.75, 0.25],
                    "description": "schedule arms: the (inner-heavy, outer-heavy) shares.",
                },
                "subspace": {"enum": ["top", "tail"]},
                "all_bases": {"type": "boolean", "default": False},
                "lr_from": {"type": ["string", "null"], "default": None},
                "seeds": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                "overrides": {"type": "object", "default": {}},
                "reason": {"type": "string", "minLength": 1},
            },
        }
    },
}


def is_v2(name_or_path: str | Path) -> bool:
    """True when the study config file says ``version: 2``."""
    try:
        data = yaml.safe_load(resolve_config_path(name_or_path).read_text())
    except (ConfigError, OSError, yaml.YAMLError):
        return False
    return isinstance(data, Mapping) and data.get("version") == 2


def _fail(message: str, where: str, source: str, allowed: Iterable[Any] | None = None):
    raise ConfigError(f"{message} (docs/protocol.md)", where, allowed, source)


def _check_stream(study: Mapping[str, Any], source: str) -> None:
    base, exps = study["stream"]["base_domain"], list(study["stream"]["experiences"])
    if base in exps:
        _fail(f"the base domain {base!r} is task 0: evaluated, never an experience",
              "stream.experiences", source)  # fmt: skip
    if len(set(exps)) != len(exps):
        _fail("an experience is listed twice", "stream.experiences", source)
    if not study["reduced"] and len(exps) < MIN_EXPERIENCES:
        _fail(f"the full protocol needs >= {MIN_EXPERIENCES} experiences after the base "
              f"domain (got {len(exps)})", "stream.experiences", source)  # fmt: skip


def _check_selection(study: Mapping[str, Any], source: str) -> None:
    sel = study["lr_selection"]
    if len(set(sel["grid"])) < MIN_GRID:
        _fail(f"the learning-rate grid needs >= {MIN_GRID} distinct rates", "lr_selection.grid",
              source)  # fmt: skip
    if sel["split"] != "valid":
        _fail("learning rates are selected on the valid split", "lr_selection.split", source,
              ["valid"])  # fmt: skip
    if sel["rule"] not in SELECTION_RULES:
        _fail(f"unknown selection rule {sel['rule']!r}", "lr_selection.rule", source,
              SELECTION_RULES)  # fmt: skip
    test_seeds = set(study["seeds"])
    for arm in study["arms"].values():
        test_seeds |= set(arm.get("seeds") or [])
    if sel["seed"] in test_seeds:
        _fail(f"selection seed {sel['seed']} is also a test seed", "lr_selection.seed", source)


def _check_seeds(study: Mapping[str, Any], source: str) -> None:
    if len(set(study["seeds"])) != len(study["seeds"]):
        _fail("a seed is listed twice", "seeds", source)
    if study["reduced"]:
        if not (study.get("reduced_reason") or "").strip():
            _fail("a reduced protocol must state why", "reduced_reason", source)
        hours = study.get("estimate_hours")
        if hours is None or hours > REDUCED_MAX_HOURS:
            _fail(f"a reduced protocol must fit {REDUCED_MAX_HOURS:g} h (estimate_hours)",
                  "estimate_hours", source)  # fmt: skip
        return
    for name, arm in study["arms"].items():
        if arm["kind"] == "not_run" or not arm["main"]:
            continue
        seeds = arm.get("seeds") or study["seeds"]
        if len(set(seeds)) < MIN_SEEDS:
            where = f"arms.{name}.seeds" if arm.get("seeds") else "seeds"
            _fail(f"main arm {name!r} has {len(set(seeds))} seeds; >= {MIN_SEEDS} needed unless "
                  "reduced: true with a reduced_reason", where, source)  # fmt: skip


def _arm_method(arm: Mapping[str, Any]) -> str:
    """The adapter method or strategy an arm runs: its override, else its config's name
    (``whisper_lora.yaml`` -> ``lora``)."""
    over = (arm.get("overrides") or {}).get("strategy") or {}
    method = (over.get("adapter") or {}).get("method") or over.get("name")
    return str(method or Path(arm.get("config", "")).stem.removeprefix("whisper_"))


def _check_arms(study: Mapping[str, Any], source: str) -> None:
    arms = study["arms"]
    for name, arm in arms.items():
        kind = arm["kind"]
        if kind == "not_run":
            if not arm.get("reason"):
                _fail(f"arm {name!r} is not run: say why", f"arms.{name}.reason", source)
            continue
        if not arm.get("config"):
            _fail(f"arm {name!r} needs an experiment config", f"arms.{name}.config", source)
        need = {"ssvdo": "inner_shares", "schedule": "schedule", "subspace": "subspace"}.get(kind)
        if need and need not in arm:
            _fail(f"a {kind} arm needs {need}", f"arms.{name}.{need}", source)
        if kind in ("ssvdo", "matched", "schedule", "subspace") and not study.get("budgets"):
            _fail(f"arm {name!r} needs the study's budgets", "budgets", source)
        src = arm.get("lr_from")
        if src is not None and (src not in arms or arms[src].get("lr_from") is not None):
            _fail(f"lr_from {src!r} must name an arm that selects its own rate",
                  f"arms.{name}.lr_from", source, list(arms))  # fmt: skip
    budgets = study.get("budgets") or []
    if list(budgets) != sorted(set(budgets)):
        _fail("list distinct budgets in ascending order", "budgets", source)
    for long_arm in study["horizons"]["long_arms"]:
        if long_arm not in arms or arms[long_arm]["kind"] == "not_run":
            _fail(f"unknown or not-run arm {long_arm!r}", "horizons.long_arms", source, list(arms))
    long = study["horizons"]["long"]
    if long is not None and long <= study["horizons"]["main"]:
        _fail("the long horizon must be longer than the main one", "horizons.long", source)
    if study["reduced"]:
        return
    # the full protocol's arms
    if long is None:
        _fail("the full protocol has a long horizon", "horizons.long", source)
    if len(budgets) < MIN_BUDGETS:
        _fail(f"the full protocol needs >= {MIN_BUDGETS} budgets", "budgets", source)
    ssvdo = [a for a in arms.values() if a["kind"] == "ssvdo"]
    if not any(len(set(a["inner_shares"])) >= MIN_SHARES for a in ssvdo):
        _fail(f"the full protocol runs SSVD-O at >= {MIN_SHARES} inner shares", "arms", source)
    if not any(study["reference_share"] in a["inner_shares"] for a in ssvdo):
        _fail("no SSVD-O arm runs the reference share", "reference_share", source)
    matched = {_arm_method(a) for a in arms.values() if a["kind"] == "matched"}
    missing = [m for m in MATCHED_REQUIRED if m not in matched]
    if missing:
        _fail(f"matched baselines missing: {missing}", "arms", source, MATCHED_REQUIRED)
    if not any(a["kind"] == "unbudgeted" and _arm_method(a) == "full" for a in arms.values()):
        _fail("the full protocol runs full fine-tuning", "arms", source)
    schedules = {a["schedule"] for a in arms.values() if a["kind"] == "schedule"}
    if schedules != set(SCHEDULES):
        _fail(f"budget schedules missing: {sorted(set(SCHEDULES) - schedules)}", "arms", source,
              SCHEDULES)  # fmt: skip
    subspaces = {a["subspace"] for a in arms.values() if a["kind"] == "subspace"}
    if subspaces != {"top", "tail"}:
        _fail("the full protocol compares the top and the tail subspace", "arms", source)
    for key in ("joint", "single_task"):
        if not study["references"].get(key):
            _fail(f"the {key} reference is needed for IM/FWT", f"references.{key}", source)


def check_protocol(study: Mapping[str, Any], source: str = "<study>") -> None:
    """Raise :class:`ConfigError` (naming the field) when ``study`` breaks docs/protocol.md."""
    _check_stream(study, source)
    _check_arms(study, source)
    _check_selection(study, source)
    _check_seeds(study, source)


def load_study_v2(
    name_or_path: str | Path, overrides: Sequence[str] = ()
) -> tuple[dict[str, Any], Path]:
    """Read, validate (schema, then protocol) and fill a v2 study config."""
    path = resolve_config_path(name_or_path)
    study = apply_overrides(_load_with_extends(path), overrides)
    validator = jsonschema.Draft202012Validator(STUDY_V2_SCHEMA)
    for data in (study, fill_defaults(study, STUDY_V2_SCHEMA)):
        errors = list(validator.iter_errors(data))
        if errors:
            raise _error_to_config_error(jsonschema.exceptions.best_match(errors), str(path))
    study = fill_defaults(study, STUDY_V2_SCHEMA)
    for arm in study["arms"].values():
        for key, value in (("main", True), ("all_bases", False), ("lr_from", None),
                           ("overrides", {}), ("shares", [0.75, 0.25])):  # fmt: skip
            arm.setdefault(key, value)
    check_protocol(study, str(path))
    return study, path


# -- plan ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PlannedRun:
    """One run of the study (``lr`` None: the selected rate is not in the store yet)."""

    phase: str  # lr-selection | test
    arm: str
    seed: int
    pretrain_seed: int
    horizon: str  # main | long
    steps: int
    split: str  # valid | test
    lr: float | None
    budget: int | None = None
    inner_share: float | None = None
    variant: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def label(self) -> str:
        parts = [self.arm]
        if self.budget is not None:
            parts.append(f"b{self.budget}")
        if self.inner_share is not None:
            parts.append(f"p{self.inner_share:g}")
        parts += [f"s{self.seed}", f"base{self.pretrain_seed}", self.horizon]
        if self.phase == "reference":
            parts.append("lr of its config")
        else:
            parts.append(f"lr={self.lr:g}" if self.lr is not None else "lr=pending")
        return "-".join(parts[:-1]) + f" ({parts[-1]})"


def schedule_setting(
    kind: str, budget: int, shares: Sequence[float], n: int, n_base: int = 0
) -> dict[str, Any]:
    """The SSVD-O schedule of a schedule arm over ``n`` trained experiences, after ``n_base``
    evaluate-only base domains (their slots repeat the first setting; nothing trains there).

    ``constant``: the mean share throughout; ``inner_then_outer``: linear from the inner-heavy
    share to the outer-heavy one; ``outer_then_inner``: the reverse.

    >>> [s["inner_share"] for s in schedule_setting("inner_then_outer", 9, [0.75, 0.25], 3)["per_experience"]]
    [0.75, 0.5, 0.25]
    """
    hi, lo = float(shares[0]), float(shares[1])
    if kind == "constant":
        return {"constant": {"budget": int(budget), "inner_share": (hi + lo) / 2}}
    start, end = (hi, lo) if kind == "inner_then_outer" else (lo, hi)
    steps = [start + (end - start) * k / max(n - 1, 1) for k in range(n)]
    steps = [steps[0]] * n_base + steps
    return {"per_experience": [{"budget": int(budget), "inner_share": round(s, 6)} for s in steps]}


def _variants(study: Mapping[str, Any], arm: Mapping[str, Any]) -> list[dict[str, Any]]:
    """(budget, inner_share, extra) of each configuration an arm runs; first = selection's."""
    budgets = study.get("budgets") or [None]
    ref = study["reference_share"]
    kind = arm["kind"]
    if kind == "ssvdo":
        shares = sorted(arm["inner_shares"], key=lambda s: (s != ref, s))
        return [{"budget": b, "inner_share": s} for b in budgets for s in shares]
    if kind == "matched":
        return [{"budget": b, "inner_share": ref} for b in budgets]
    if kind == "schedule":
        return [{"budget": budgets[0], "schedule": arm["schedule"]}]
    if kind == "subspace":
        return [{"budget": budgets[0], "inner_share": ref, "subspace": arm["subspace"]}]
    return [{"budget": None}]


def plan_v2(
    study: Mapping[str, Any], selected: Mapping[str, float] | None = None
) -> list[PlannedRun]:
    """Selection runs first, then the test runs at the selected rates (``selected``: arm -> lr)."""
    sel = study["lr_selection"]
    hz = study["horizons"]
    base0 = study["pretrain_seeds"][0]
    arms = {k: a for k, a in study["arms"].items() if a["kind"] != "not_run"}
    selected = dict(selected or {})
    out: list[PlannedRun] = []
    for name, arm in arms.items():
        if arm["lr_from"] is not None:
            continue
        v = _variants(study, arm)[0]
        for lr in sorted(sel["grid"]):
            out.append(PlannedRun("lr-selection", name, sel["seed"], base0, "main", hz["main"],
                                  "valid", float(lr), v.get("budget"), v.get("inner_share"), v))  # fmt: skip
    for name, arm in arms.items():
        lr = selected.get(arm["lr_from"] or name)
        seeds = arm.get("seeds") or study["seeds"]
        bases = study["pretrain_seeds"] if arm["all_bases"] else [base0]
        variants = _variants(study, arm)
        for k, v in enumerate(variants):
            horizons = [("main", hz["main"])]
            if k == 0 and name in hz["long_arms"] and hz["long"]:
                horizons.append(("long", hz["long"]))
            for horizon, steps in horizons:
                for base in bases:
                    for seed in seeds:
                        out.append(PlannedRun("test", name, int(seed), int(base), horizon, steps,
                                              "test", lr, v.get("budget"), v.get("inner_share"),
                                              v))  # fmt: skip
    for key, ref in study["references"].items():
        if ref:
            for base in study["pretrain_seeds"]:
                out.append(PlannedRun("reference", key, int(study["seeds"][0]), int(base), "main",
                                      hz["main"], "test", None, None, None, {"config": ref}))  # fmt: skip
    return out


def experiment_config(
    study: Mapping[str, Any], run: PlannedRun, source: str | Path | None = None
) -> dict[str, Any]:
    """The validated experiment config of one planned run (``lr`` pending: the config's own)."""
    arm = (
        study["arms"][run.arm]
        if run.phase != "reference"
        else {"config": run.variant["config"], "overrides": {}, "shares": [0.75, 0.25]}
    )
    n_trained = len(study["stream"]["experiences"])
    settings: dict[str, Any] = {
        **dotted(study.get("overrides") or {}),
        **dotted(arm.get("overrides") or {}),
        "name": f"{study['name']}-{run.arm}",
        "stream.domains": [study["stream"]["base_domain"], *study["stream"]["experiences"]],
        "stream.base_domains": [study["stream"]["base_domain"]],
        "train.max_steps": run.steps,
        "model.pretrain.seed": run.pretrain_seed,
        "tracking.experiment": study["experiment"],
        "tracking.tags": {
            STUDY_TAG: study["name"],
            PHASE_TAG: run.phase,
            ARM_TAG: run.arm,
            "study.horizon": run.horizon,
            "study.split": run.split,
        },
    }
    if run.phase == "reference":  # joint | single_task: the config's model, that mode
        settings.update({"strategy.mode": run.arm, "strategy.name": run.arm})
    if study["device"] != "auto":
        settings["train.device"] = study["device"]
    if run.lr is not None:
        settings["train.optimizer.lr"] = run.lr
    cfg_path = Path(arm["config"])
    if source is not None and (Path(source).parent / cfg_path).is_file():
        cfg_path = Path(source).parent / cfg_path
    cfg = load_config(cfg_path, settings)
    adapter = cfg["strategy"].get("adapter")
    v = run.variant
    if adapter and v.get("budget") is not None:
        for key in ("schedule", "match", "rank", "inner_ratio"):
            adapter.pop(key, None)
        if "schedule" in v:
            adapter["schedule"] = schedule_setting(v["schedule"], v["budget"], arm["shares"],
                                                   n_trained, n_base=1)  # fmt: skip
        else:
            setting = {"constant": {"budget": int(v["budget"]), "inner_share": v["inner_share"]}}
            adapter["schedule" if adapter["method"] == "ssvdo" else "match"] = setting
        if "subspace" in v:
            adapter["subspace"] = v["subspace"]
    from experiments.config import validate_config

    validate_config(cfg, source=str(cfg_path))
    return cfg


# -- learning-rate selection --------------------------------------------------------------------
def select_lr(
    results: Iterable[tuple[str, float, float]], tie_points: float = 0.2
) -> dict[str, float]:
    """The protocol's rule over ``(arm, lr, valid AWER)``: lowest AWER; rates within
    ``tie_points`` WER points of it go to the smallest. NaN results never win."""
    by_arm: dict[str, list[tuple[float, float]]] = {}
    for arm, lr, awer in results:
        if awer is not None and math.isfinite(float(awer)):
            by_arm.setdefault(str(arm), []).append((float(lr), float(awer)))
    out = {}
    for arm, rows in by_arm.items():
        best = min(a for _, a in rows)
        out[arm] = min(lr for lr, a in rows if a <= best + tie_points + 1e-12)
    return out


def read_selection(tracking_uri: str, study: Mapping[str, Any]) -> list[tuple[str, float, float]]:
    """``(arm, lr, valid AWER)`` of the study's finished selection runs in the store.

    A selection run carries the tags ``cl_ssvdo.study``, ``study.phase = lr-selection`` and
    ``study.arm``, the param ``config.train.optimizer.lr`` and the final metric ``awer``.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(study["experiment"])
    if exp is None:
        return []
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`{STUDY_TAG}` = '{study['name']}' and "
        f"tags.`{PHASE_TAG}` = 'lr-selection' and attributes.status = 'FINISHED'",
        max_results=10000,
    )
    out = []
    for r in runs:
        lr = r.data.params.get("config.train.optimizer.lr")
        awer = r.data.metrics.get("awer")
        arm = r.data.tags.get(ARM_TAG)
        if lr is not None and awer is not None and arm:
            out.append((arm, float(lr), float(awer)))
    return out


# -- command line -------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cl-ssvdo study", description="Study v2 (docs/protocol.md).")
    p.add_argument("--config", required=True, help="a v2 study config (version: 2)")
    p.add_argument("--tracking-uri", default=None, help="MLflow store with the selection runs")
    add_override_argument(p, help="override a field of the study config, repeatable")
    p.add_argument("--dry-run", action="store_true", help="list the planned runs, then exit")
    return p


def _tracking_uri(study: Mapping[str, Any], given: str | None) -> str | None:
    if given:
        return given
    from experiments.tracking import resolve_tracking_uri

    base = load_config(study["base"])
    try:
        return resolve_tracking_uri(base["tracking"]["uri"], base["workdir"])
    except Exception:  # noqa: BLE001 - no store: every rate is pending
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """``cl-ssvdo study --config <v2 config> --dry-run``: the selection runs, then the test runs
    with the rates selected so far (read from the store). Running v2 is not wired yet."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        study, path = load_study_v2(args.config, args.overrides)
    except ConfigError as exc:
        print(f"cl-ssvdo study: invalid config: {exc}", file=sys.stderr)
        return 2
    uri = _tracking_uri(study, args.tracking_uri)
    selected: dict[str, float] = {}
    if uri is not None and (not uri.startswith("sqlite:///") or Path(uri[10:]).is_file()):
        try:
            selected = select_lr(read_selection(uri, study), study["lr_selection"]["tie_points"])
        except Exception as exc:  # noqa: BLE001 - a dry run still lists the plan
            print(f"(selected rates not read from {uri}: {exc})", file=sys.stderr)
    plan = plan_v2(study, selected)
    for arm, a in study["arms"].items():
        if a["kind"] == "not_run":
            print(f"not run: {arm}: {a['reason']}")
    for phase in ("lr-selection", "test", "reference"):
        runs = [r for r in plan if r.phase == phase]
        print(f"{phase}: {len(runs)} runs")
        for r in runs:
            print(f"  {r.label}")
    if study["reduced"]:
        print(f"reduced protocol: {study['reduced_reason']}")
    if not args.dry_run:
        print("cl-ssvdo study: running a v2 study is not wired yet; use --dry-run", file=sys.stderr)
        return 2
    return 0
