"""v2: a study config (docs/protocol.md) as planned runs, and the learning-rate selection.

:func:`plan_v2` expands a config checked by ``experiments.study.protocol`` into runs: the
**selection phase** first (each arm that selects its own rate, at every grid rate, on the
selection seed, valid split, main horizon, tight budget at the reference share), then the
**test runs** (every variant x seed x base, main horizon, plus the long horizon for
``horizons.long_arms``) at the rate the rule selected (:func:`select_lr` over
``experiments.study.collect.read_selection``; "pending" while not in the store), then the
joint and single-task **references**. :func:`experiment_config` is the validated experiment
config of one planned run.

>>> from experiments.study.config import load_study_v2
>>> study, _ = load_study_v2("study_whisper_cpu")
>>> plan = plan_v2(study)
>>> plan[0].phase, plan[0].split, plan[-1].phase
('lr-selection', 'valid', 'test')
>>> select_lr([("lora", 1e-3, 30.1), ("lora", 2e-3, 30.0), ("lora", 5e-3, 35.0)], 0.2)
{'lora': 0.001}
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.config import dotted, load_config, validate_config
from experiments.study.collect import ARM_TAG_V2 as ARM_TAG
from experiments.study.collect import PHASE_TAG, STUDY_TAG

__all__ = [
    "PlannedRun",
    "edge_rates",
    "experiment_config",
    "extension",
    "plan_v2",
    "rate_key",
    "schedule_setting",
    "select_lr",
    "withdrawal",
]


def withdrawal(study: Mapping[str, Any], arm: str, horizon: str) -> str:
    """``"withdrawn on <date> ..."`` when an entry of ``study["withdrawn"]`` selects the planned
    runs of ``arm`` at ``horizon`` (by arm and/or horizon), else ``""``. The entry's reason is
    stated once, on the page's *Protocol*, not per run.

    >>> study = {"withdrawn": [{"horizon": "long", "date": "2026-11-30", "reason": "store lost"}]}
    >>> withdrawal(study, "lora", "long"), withdrawal(study, "lora", "main")
    ('withdrawn on 2026-11-30 (the reason: *Protocol*)', '')
    """
    for entry in study.get("withdrawn") or ():
        if entry.get("arm", arm) == arm and entry.get("horizon", horizon) == horizon:
            return f"withdrawn on {entry['date']} (the reason: *Protocol*)"
    return ""


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
    study: Mapping[str, Any],
    selected: Mapping[str, float] | None = None,
    extensions: Mapping[str, Sequence[float]] | None = None,
) -> list[PlannedRun]:
    """Selection runs first (every grid rate, then the arm's ``extensions`` beyond the grid,
    :func:`edge_rates`), then the test runs at the selected rates (``selected``: arm -> lr)."""
    sel = study["lr_selection"]
    hz = study["horizons"]
    base0 = study["pretrain_seeds"][0]
    arms = {k: a for k, a in study["arms"].items() if a["kind"] != "not_run"}
    selected = dict(selected or {})
    extensions = extensions or {}
    out: list[PlannedRun] = []
    for name, arm in arms.items():
        if arm["lr_from"] is not None:
            continue
        v = _variants(study, arm)[0]
        for lr in [*sorted(sel["grid"]), *extensions.get(name, ())]:
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
    if run.horizon != "main":
        # a horizon is a number of optimiser steps per experience: lift the epoch cap (at least
        # one batch an epoch) so that train.max_steps binds. Main-horizon runs keep the config's
        # epochs, under which their steps bind already (the runner warns when they do not).
        settings["train.epochs"] = run.steps
    if run.phase == "reference":  # joint | single_task: the config's model, that mode
        settings.update({"strategy.mode": run.arm, "strategy.name": run.arm})
    if study["device"] != "auto":
        settings["train.device"] = study["device"]
    if run.lr is not None:
        settings["train.optimizer.lr"] = run.lr
    if run.split != "test":  # selection runs are scored on valid and never read test
        settings["stream.eval_split"] = run.split
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
    validate_config(cfg, source=str(cfg_path))
    return cfg


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


def rate_key(x: float) -> float:
    """A rate as the store gives it back (12 significant digits): keys that compare equal."""
    return float(f"{float(x):.12g}")


def extension(sel: Mapping[str, Any]) -> tuple[int, float]:
    """``(extend_at_edge, extend_factor)`` of a study's ``lr_selection``: (0, 2.0) where unset,
    as in pages written before the keys existed.

    >>> extension({"grid": [1e-3]}), extension({"extend_at_edge": 2, "extend_factor": 3})
    ((0, 2.0), (2, 3.0))
    """
    return int(sel.get("extend_at_edge", 0)), float(sel.get("extend_factor", 2.0))


def edge_rates(
    results: Iterable[tuple[str, float, float]], sel: Mapping[str, Any]
) -> dict[str, list[float]]:
    """Per arm, the rates beyond the grid that the selection asks for, given the finished
    selection results ``(arm, lr, valid AWER)`` and the study's ``lr_selection``.

    While the rule (:func:`select_lr` over the rates tried so far) picks the largest rate
    tried, the next one up (x ``extend_factor``) is tried; likewise downwards; at most
    ``extend_at_edge`` steps each way. A rate whose run has not finished ends the arm's walk
    (it is returned, so that it is planned and run). Arms without extensions are left out.

    >>> sel = {"grid": [1e-3, 2e-3, 4e-3], "extend_at_edge": 2, "extend_factor": 2.0,
    ...        "tie_points": 0.2}
    >>> grid = [("a", 1e-3, 30.0), ("a", 2e-3, 29.0), ("a", 4e-3, 28.0), ("b", 2e-3, 9.0),
    ...         ("b", 1e-3, 12.0), ("b", 4e-3, 10.0)]
    >>> edge_rates(grid, sel)
    {'a': [0.008]}
    >>> edge_rates(grid + [("a", 8e-3, 27.0)], sel)
    {'a': [0.008, 0.016]}
    >>> edge_rates(grid + [("a", 8e-3, 27.0), ("a", 0.016, 26.0)], sel)  # two steps: the cap
    {'a': [0.008, 0.016]}
    >>> edge_rates(grid + [("a", 8e-3, float("nan"))], sel)  # diverged above: 4e-3 stays best
    {'a': [0.008]}
    >>> edge_rates(grid, {**sel, "extend_at_edge": 0})
    {}
    """
    steps, factor = extension(sel)
    tie = float(sel.get("tie_points", 0.2))
    grid = sorted(rate_key(x) for x in sel["grid"])
    by_arm: dict[str, dict[float, float]] = {}
    for arm, lr, awer in results:
        by_arm.setdefault(str(arm), {})[rate_key(lr)] = float(awer)
    out: dict[str, list[float]] = {}
    for arm, got in sorted(by_arm.items()):
        tried, extra, up, down = list(grid), [], 0, 0
        while True:
            best = select_lr([(arm, lr, got[lr]) for lr in tried if lr in got], tie).get(arm)
            if best is None:
                break
            if math.isclose(best, tried[-1]) and up < steps:
                new, up = rate_key(tried[-1] * factor), up + 1
                tried.append(new)
            elif math.isclose(best, tried[0]) and down < steps:
                new, down = rate_key(tried[0] / factor), down + 1
                tried.insert(0, new)
            else:
                break
            extra.append(new)
            if new not in got:
                break
        if extra:
            out[arm] = extra
    return out
