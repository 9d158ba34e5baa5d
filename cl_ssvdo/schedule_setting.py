"""One layer group's SSVD-O setting in a budget schedule: parsed, scaled, resolved onto layers.

A group setting (:class:`GroupSetting`) is explicit, ``{"inner_ratio": p, "outer_rank": l}``,
or a budget, ``{"budget": B, "inner_share": s}``, either with an optional ``subspace``
(module docstring of :mod:`cl_ssvdo.schedule`). :func:`resolve_group` turns it into one
:class:`LayerSetting` per layer of the group, with the ranks and the parameter count of
:mod:`cl_ssvdo.budget`. The schedule over experiences and groups is
:class:`cl_ssvdo.schedule.BudgetSchedule`.

Example
-------
>>> up = GroupSetting.parse({"inner_ratio": 0.5, "outer_rank": 4}, "up")
>>> [(s.name, s.inner_rank, s.outer_rank) for s in resolve_group(up, [("ffn.0", 64, 16)], True, "up", "up")]
[('ffn.0', 8, 4)]
>>> GroupSetting.parse({"budget": 0, "inner_share": 0.5}, "experiences[0].up")
Traceback (most recent call last):
    ...
cl_ssvdo.schedule_setting.ScheduleError: experiences[0].up.budget: must be an int >= 1, got 0
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from cl_ssvdo import budget as budget_lib
from cl_ssvdo.ssvdo.settings import SUBSPACES

EXPLICIT_FIELDS = ("inner_ratio", "outer_rank")
BUDGET_FIELDS = ("budget", "inner_share")
SETTING_FIELDS = EXPLICIT_FIELDS + BUDGET_FIELDS
SUBSPACE_CHOICES = (*SUBSPACES, "auto")


class ScheduleError(ValueError):
    """A budget schedule that cannot be used; the message names the field at fault."""


@dataclass(frozen=True)
class GroupSetting:
    """One group's setting for one experience: explicit ``(inner_ratio, outer_rank)`` or a
    parameter ``budget`` with an ``inner_share``. Exactly one of the two kinds is set.
    ``subspace`` (``top``/``tail``/``auto``, or None for the plugin's default) goes with either."""

    inner_ratio: float | None = None
    outer_rank: int | None = None
    budget: int | None = None
    inner_share: float | None = None
    subspace: str | None = None

    @property
    def is_budget(self) -> bool:
        return self.budget is not None

    @classmethod
    def parse(cls, data: Any, where: str) -> GroupSetting:
        """Validate a mapping (or a ``GroupSetting``); ``where`` names it in errors."""
        if isinstance(data, GroupSetting):
            data = {k: v for k, v in asdict(data).items() if v is not None}
        if not isinstance(data, Mapping):
            raise ScheduleError(f"{where}: expected a mapping of setting fields, got {data!r}")
        unknown = sorted(set(data) - {*SETTING_FIELDS, "subspace"})
        if unknown:
            raise ScheduleError(
                f"{where}: unknown field(s) {unknown}; allowed: {[*SETTING_FIELDS, 'subspace']}"
            )
        subspace = data.get("subspace")
        if subspace is not None and subspace not in SUBSPACE_CHOICES:
            raise ScheduleError(
                f"{where}.subspace: must be one of {list(SUBSPACE_CHOICES)}, got {subspace!r}"
            )
        data = {k: v for k, v in data.items() if k != "subspace"}
        has_explicit = any(f in data for f in EXPLICIT_FIELDS)
        has_budget = any(f in data for f in BUDGET_FIELDS)
        if has_explicit and has_budget:
            raise ScheduleError(
                f"{where}: give either inner_ratio/outer_rank or budget/inner_share, not both"
            )
        if has_budget:
            b, s = data.get("budget"), data.get("inner_share")
            if b is None or s is None:
                raise ScheduleError(f"{where}: a budget setting needs both budget and inner_share")
            if isinstance(b, bool) or not isinstance(b, int) or b < 1:
                raise ScheduleError(f"{where}.budget: must be an int >= 1, got {b!r}")
            check_unit(s, f"{where}.inner_share")
            return cls(budget=b, inner_share=float(s), subspace=subspace)
        if "inner_ratio" not in data:
            raise ScheduleError(f"{where}: needs inner_ratio (and optionally outer_rank) or budget")
        p, lr = data["inner_ratio"], data.get("outer_rank", 0)
        check_unit(p, f"{where}.inner_ratio")
        if isinstance(lr, bool) or not isinstance(lr, int) or lr < 0:
            raise ScheduleError(f"{where}.outer_rank: must be an int >= 0, got {lr!r}")
        return cls(inner_ratio=float(p), outer_rank=lr, subspace=subspace)

    def scaled(self, factors: Mapping[str, float], power: int) -> GroupSetting:
        """The setting with each field in ``factors`` multiplied by ``factor ** power``;
        integer fields are rounded down (``budget`` never below 1 is *not* enforced here, the
        resolver reports a too-small budget with its location)."""
        changes: dict[str, Any] = {}
        for field, factor in factors.items():
            value = getattr(self, field)
            if value is None:
                continue
            scaled = value * factor**power
            if field in ("outer_rank", "budget"):
                scaled = int(math.floor(scaled + 1e-9))
            else:
                scaled = min(1.0, float(scaled))
            changes[field] = scaled
        return replace(self, **changes)

    def to_dict(self) -> dict[str, float | int]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class LayerSetting:
    """A resolved per-layer setting. ``trainable`` is the SSVD-O parameter count
    (:func:`cl_ssvdo.budget.ssvdo_params`) of ``(inner_ratio, outer_rank)`` on this layer;
    ``subspace`` is the group's (None: the plugin's default; ``auto`` is decided by the plugin
    on the layer's weight)."""

    name: str
    group: str
    out_features: int
    in_features: int
    inner_ratio: float
    outer_rank: int
    inner_rank: int
    trainable: int
    subspace: str | None = None


def check_unit(value: Any, where: str) -> None:
    """Raise naming ``where`` unless ``value`` is a number in [0, 1] (a bool is not)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ScheduleError(f"{where}: must be a number in [0, 1], got {value!r}")


def resolve_group(
    setting: GroupSetting,
    members: list[tuple[str, int, int]],
    outer: bool,
    where: str,
    group: str,
) -> list[LayerSetting]:
    """``setting`` on each of ``members`` = ``[(name, out, in), ...]`` of ``group``;
    ``outer=False`` forces ``outer_rank = 0``; ``where`` names the entry in errors."""
    shapes = [(m, n) for _, m, n in members]
    if setting.is_budget:
        pairs = _allocate(shapes, setting, outer, where)
    else:
        check_unit(setting.inner_ratio, f"{where}.inner_ratio")
        l_req = setting.outer_rank if outer else 0
        pairs = [(setting.inner_ratio, l_req)] * len(members)
    out = []
    for (name, m, n), (p, lr) in zip(members, pairs, strict=True):
        l_eff = budget_lib.effective_outer_rank(m, n, int(lr))
        out.append(
            LayerSetting(
                name=name,
                group=group,
                out_features=m,
                in_features=n,
                inner_ratio=float(p),
                outer_rank=l_eff,
                inner_rank=budget_lib.inner_rank(float(p), min(m, n)),
                trainable=budget_lib.ssvdo_params(m, n, float(p), l_eff),
                subspace=setting.subspace,
            )
        )
    return out


def _allocate(
    shapes: list[tuple[int, int]], setting: GroupSetting, outer: bool, where: str
) -> list[tuple[float, int]]:
    """``cl_ssvdo.budget.allocate`` with errors that name the schedule entry, and a check that
    each part given a positive share can buy at least its smallest setting."""
    b = int(setting.budget or 0)
    share = 1.0 if not outer else float(setting.inner_share)
    if b < 1:
        raise ScheduleError(
            f"{where}.budget: {b} is below the smallest setting (k=1 on one layer: 1 parameter)"
        )
    if outer and share < 1.0 and any(m > n for m, n in shapes):
        b_out = min(b, math.floor((1.0 - share) * b + 1e-9))
        cheapest = min(m - n for m, n in shapes if m > n)
        if b_out < cheapest:
            raise ScheduleError(
                f"{where}.budget: the outer part {b_out} (= {1.0 - share:g} of {b}) is below the "
                f"smallest outer setting (l=1 costs {cheapest} parameters); raise the budget or "
                f"set inner_share to 1"
            )
    try:
        with warnings.catch_warnings():
            # No layer with out > in: the allocator moves the outer share to inner; expected
            # for groups such as down-projections, so not worth a warning per experience.
            warnings.simplefilter("ignore", UserWarning)
            return budget_lib.allocate(shapes, b, share)
    except ValueError as err:
        raise ScheduleError(f"{where}.{err}") from None
