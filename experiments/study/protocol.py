"""v2: the pre-registered protocol of ``docs/protocol.md`` as rules the code enforces.

A v2 study config (``version: 2``; ``experiments/configs/study_v2.yaml``, ``study_whisper.yaml``,
``study_whisper_cpu.yaml``; schema ``experiments/schema/study_v2.schema.json``) states the stream (task-0 base
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
  outer-then-inner) and the top and tail subspaces, and names both references;
- a withdrawal (``withdrawn``: planned runs that cannot finish, dated, with the reason) names
  a run arm and/or a horizon of the study.

``experiments.study.plan_v2.plan_v2`` expands the config into runs: the **selection phase** first (each arm that
selects its own rate, at every grid rate, on the selection seed, valid split, main horizon,
tight budget at the reference share), then the **test runs** (every variant x seed x base,
main horizon, plus the long horizon for ``horizons.long_arms``) at the rate the rule selected,
read from the MLflow store (``experiments.study.collect.read_selection``; "pending" while not there).

>>> from experiments.study.config import load_study_v2
>>> study, path = load_study_v2("study_whisper_cpu")
>>> study["reduced"], len(study["stream"]["experiences"]) >= 1
(True, True)
>>> check_protocol({**study, "stream": {**study["stream"], "experiences": ["adult"]}})
Traceback (most recent call last):
...
experiments.config.ConfigError: config field 'stream.experiences' [<study>]: the base domain 'adult' is task 0: evaluated, never an experience (docs/protocol.md)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from experiments.config import ConfigError

__all__ = [
    "MIN_EXPERIENCES",
    "MIN_SEEDS",
    "REDUCED_MAX_HOURS",
    "SCHEDULES",
    "arm_method",
    "check_protocol",
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


def arm_method(arm: Mapping[str, Any]) -> str:
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
    matched = {arm_method(a) for a in arms.values() if a["kind"] == "matched"}
    missing = [m for m in MATCHED_REQUIRED if m not in matched]
    if missing:
        _fail(f"matched baselines missing: {missing}", "arms", source, MATCHED_REQUIRED)
    if not any(a["kind"] == "unbudgeted" and arm_method(a) == "full" for a in arms.values()):
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


def _check_withdrawn(study: Mapping[str, Any], source: str) -> None:
    """Each withdrawal selects planned runs: a run arm, a horizon the study has."""
    arms = [a for a, spec in study["arms"].items() if spec["kind"] != "not_run"]
    horizons = ["main"] + (["long"] if study["horizons"]["long"] is not None else [])
    for i, entry in enumerate(study.get("withdrawn") or ()):
        if "arm" in entry and entry["arm"] not in arms:
            _fail(f"unknown or not-run arm {entry['arm']!r}", f"withdrawn.{i}.arm", source, arms)
        if "horizon" in entry and entry["horizon"] not in horizons:
            _fail(f"the study has no {entry['horizon']!r} horizon", f"withdrawn.{i}.horizon",
                  source, horizons)  # fmt: skip


def check_protocol(study: Mapping[str, Any], source: str = "<study>") -> None:
    """Raise :class:`ConfigError` (naming the field) when ``study`` breaks docs/protocol.md."""
    _check_stream(study, source)
    _check_arms(study, source)
    _check_withdrawn(study, source)
    _check_selection(study, source)
    _check_seeds(study, source)
