"""Per-experience, per-layer-group SSVD-O budget schedules.

A schedule says, for every training experience and every *layer group* (a named set of glob
patterns over module names, e.g. ``{"up": "*ffn.0", "down": "*ffn.3"}`` or lower vs upper
blocks), which SSVD-O setting the group's layers get. A group setting is either

- explicit: ``{"inner_ratio": p, "outer_rank": l}`` (the same ``(p, l)`` on every layer of the
  group; ``l`` is clipped per layer to what the layer has room for, ``min(l, r, m - n)`` and 0
  where ``m <= n``, exactly as :func:`cl_ssvdo.budget.effective_outer_rank` counts it), or
- a budget: ``{"budget": B, "inner_share": s}``: at most ``B`` trainable parameters over the
  group, a share ``s`` of them for the inner transform, turned into per-layer ``(p, l)`` by
  :func:`cl_ssvdo.budget.allocate`.

Either kind may also name the singular subspace the inner rotation acts on,
``subspace: top | tail | auto`` (default: the plugin's ``subspace``): ``top`` rotates the k
leading right singular vectors, ``tail`` the k minor ones (as in MiCA or PiSSA's complement),
``auto`` lets the plugin pick per layer from its current weight by the stated rule of
:func:`cl_ssvdo.ssvdo.diagnostics.choose_subspace` ("tail" where the top-k singular values hold
more than half of ``||W||_F^2``). Since settings are per experience and per group, the
subspace, like the inner/outer share of a budget, can change from one experience to the next.

Three forms (:class:`BudgetSchedule` constructors, and :meth:`BudgetSchedule.from_dict`):

- ``constant``: the same settings for every experience (any stream length);
- ``per_experience``: a list, one entry per experience (the stream must not be longer);
- ``decaying``: a start setting multiplied by ``factor ** i`` at experience ``i`` (e.g. shrink
  ``p`` to protect earlier domains); ``outer_rank`` and ``budget`` are rounded down.

Validation raises ``ScheduleError`` (a ``ValueError``) naming the offending field: unknown
group, a malformed setting, a budget below the smallest setting, a schedule shorter than the
stream, a target layer that no group (or more than one) covers.

One group's setting (parsing, scaling, resolution onto the group's layers) lives in
:mod:`cl_ssvdo.schedule_setting`; this module holds the schedule over experiences and groups.
Both depend on ``cl_ssvdo.budget`` and ``cl_ssvdo.ssvdo.settings`` only (no Avalanche).

Example
-------
>>> s = BudgetSchedule.from_dict({
...     "groups": {"up": "*ffn.0", "down": "*ffn.3"},
...     "decaying": {"start": {"up": {"inner_ratio": 0.5, "outer_rank": 4},
...                            "down": {"inner_ratio": 0.5}},
...                  "factor": {"inner_ratio": 0.5}},
... })
>>> layers = [("enc.0.ffn.0", 64, 16), ("enc.0.ffn.3", 16, 64)]
>>> [(x.name, x.inner_rank, x.outer_rank) for x in s.resolve(1, layers)]
[('enc.0.ffn.0', 4, 4), ('enc.0.ffn.3', 4, 0)]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cl_ssvdo.schedule_setting import (
    SETTING_FIELDS,
    SUBSPACE_CHOICES,
    GroupSetting,
    LayerSetting,
    ScheduleError,
    resolve_group,
)
from cl_ssvdo.ssvdo.targets import target_matches

__all__ = [
    "ScheduleError",
    "GroupSetting",
    "LayerSetting",
    "BudgetSchedule",
    "DEFAULT_GROUP",
    "SUBSPACE_CHOICES",
]

DEFAULT_GROUP = "all"
_FORMS = ("constant", "per_experience", "decaying")


def _normalise_groups(
    groups: Mapping[str, str | Sequence[str]] | None,
) -> dict[str, tuple[str, ...]]:
    if groups is None:
        return {DEFAULT_GROUP: ("*",)}
    if not isinstance(groups, Mapping) or not groups:
        raise ScheduleError(f"groups: expected a non-empty mapping name -> glob(s), got {groups!r}")
    out: dict[str, tuple[str, ...]] = {}
    for name, pats in groups.items():
        if not isinstance(name, str) or not name:
            raise ScheduleError(f"groups: group names must be non-empty strings, got {name!r}")
        pats_t = (pats,) if isinstance(pats, str) else tuple(pats)
        if not pats_t or not all(isinstance(p, str) and p for p in pats_t):
            raise ScheduleError(f"groups.{name}: expected a glob or a list of globs, got {pats!r}")
        out[name] = pats_t
    return out


class BudgetSchedule:
    """Settings per experience and layer group; see the module docstring.

    Arguments
    ---------
    groups : mapping name -> glob or list of globs, optional
        Layer groups over module names, with the one target syntax
        (:func:`cl_ssvdo.ssvdo.targets.target_matches`: a glob, or peft's name / ``.suffix``
        rule for a pattern without ``*?[``). Default: one group ``"all"`` covering every
        target layer.
    experiences : sequence of mapping group -> setting
        One entry per experience (``per_experience`` form), or one entry used for every
        experience when ``repeat`` is True (``constant`` and ``decaying`` forms).
    repeat : bool
        Reuse ``experiences[0]`` for every experience (scaled by ``decay``).
    decay : mapping field -> factor, optional
        Multiply those fields by ``factor ** i`` at experience ``i`` (needs ``repeat``).
    """

    def __init__(
        self,
        groups: Mapping[str, str | Sequence[str]] | None,
        experiences: Sequence[Mapping[str, Any]],
        *,
        repeat: bool = False,
        decay: Mapping[str, float] | None = None,
    ) -> None:
        self.groups = _normalise_groups(groups)
        if isinstance(experiences, Mapping) or not isinstance(experiences, Sequence):
            raise ScheduleError(
                f"experiences: expected a list of per-group settings, got {type(experiences).__name__}"
            )
        if len(experiences) == 0:
            raise ScheduleError("experiences: the schedule needs at least one experience")
        if repeat and len(experiences) != 1:
            raise ScheduleError("experiences: a constant/decaying schedule has exactly one entry")
        self.repeat = repeat
        self.decay = dict(decay or {})
        if self.decay and not repeat:
            raise ScheduleError("decay: only a constant start setting can decay")
        for field, factor in self.decay.items():
            if field not in SETTING_FIELDS:
                raise ScheduleError(
                    f"decay.{field}: unknown field; allowed: {list(SETTING_FIELDS)}"
                )
            if isinstance(factor, bool) or not isinstance(factor, int | float) or factor <= 0:
                raise ScheduleError(f"decay.{field}: factor must be a number > 0, got {factor!r}")
        self.experiences: list[dict[str, GroupSetting]] = [
            self._parse_entry(entry, f"experiences[{i}]") for i, entry in enumerate(experiences)
        ]

    # ---------------------------------------------------------------- constructors
    @classmethod
    def constant(cls, settings: Mapping[str, Any], groups=None) -> BudgetSchedule:
        """Same settings every experience. ``settings`` is group -> setting, or one setting
        (for the default single group)."""
        return cls(groups, [settings], repeat=True)

    @classmethod
    def per_experience(cls, settings: Sequence[Mapping[str, Any]], groups=None) -> BudgetSchedule:
        """One entry per experience; training past the last entry is an error."""
        return cls(groups, list(settings))

    @classmethod
    def decaying(
        cls, start: Mapping[str, Any], factor: float | Mapping[str, float], groups=None
    ) -> BudgetSchedule:
        """``start`` scaled by ``factor ** i`` at experience ``i``. A number scales
        ``inner_ratio`` of explicit settings and ``budget`` of budget settings; a mapping
        names the fields (``{"inner_ratio": 0.5, "outer_rank": 2.0}``)."""
        if isinstance(factor, Mapping):
            decay = dict(factor)
        else:
            decay = {"inner_ratio": factor, "budget": factor}
        return cls(groups, [start], repeat=True, decay=decay)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "schedule") -> BudgetSchedule:
        """Build from config data: ``{"groups": {...}, <form>: ...}`` with exactly one form
        among ``constant`` (settings), ``per_experience`` (list of settings) and ``decaying``
        (``{"start": settings, "factor": number or mapping}``)."""
        if not isinstance(data, Mapping):
            raise ScheduleError(f"{where}: expected a mapping, got {type(data).__name__}")
        unknown = sorted(set(data) - {"groups", *_FORMS})
        if unknown:
            raise ScheduleError(
                f"{where}: unknown key(s) {unknown}; allowed: groups, {', '.join(_FORMS)}"
            )
        forms = [f for f in _FORMS if f in data]
        if len(forms) != 1:
            raise ScheduleError(f"{where}: give exactly one of {list(_FORMS)}, got {forms}")
        form, groups = forms[0], data.get("groups")
        try:
            if form == "constant":
                return cls.constant(data[form], groups)
            if form == "per_experience":
                if not isinstance(data[form], Sequence) or isinstance(data[form], str | Mapping):
                    raise ScheduleError("per_experience: expected a list of settings")
                return cls.per_experience(data[form], groups)
            body = data[form]
            if not isinstance(body, Mapping) or set(body) != {"start", "factor"}:
                raise ScheduleError("decaying: expected exactly the keys start and factor")
            return cls.decaying(body["start"], body["factor"], groups)
        except ScheduleError as err:
            raise ScheduleError(f"{where}.{err}") from None

    def to_dict(self) -> dict[str, Any]:
        """Inverse of :meth:`from_dict` (for logging the schedule as run parameters)."""
        groups = {g: list(p) for g, p in self.groups.items()}
        entries = [{g: s.to_dict() for g, s in e.items()} for e in self.experiences]
        if not self.repeat:
            return {"groups": groups, "per_experience": entries}
        if not self.decay:
            return {"groups": groups, "constant": entries[0]}
        return {"groups": groups, "decaying": {"start": entries[0], "factor": dict(self.decay)}}

    # ---------------------------------------------------------------- queries
    @property
    def length(self) -> int | None:
        """Number of experiences the schedule covers; ``None`` for unbounded forms."""
        return None if self.repeat else len(self.experiences)

    def check_length(self, n_experiences: int) -> None:
        """Raise if the stream has more experiences than the schedule."""
        if self.length is not None and n_experiences > self.length:
            raise ScheduleError(
                f"experiences: the schedule has {self.length} entr{'y' if self.length == 1 else 'ies'} "
                f"but the stream has {n_experiences} experiences"
            )

    def settings_for(self, experience: int) -> dict[str, GroupSetting]:
        """Group -> setting at ``experience`` (0-based stream index)."""
        if isinstance(experience, bool) or not isinstance(experience, int) or experience < 0:
            raise ScheduleError(f"experience: must be an int >= 0, got {experience!r}")
        if self.repeat:
            base = self.experiences[0]
            if not self.decay:
                return dict(base)
            return {g: s.scaled(self.decay, experience) for g, s in base.items()}
        self.check_length(experience + 1)
        return dict(self.experiences[experience])

    def assign_groups(self, names: Sequence[str]) -> dict[str, str]:
        """Layer name -> group; every name must fall in exactly one group."""
        out: dict[str, str] = {}
        for name in names:
            hits = [
                g for g, pats in self.groups.items() if any(target_matches(name, p) for p in pats)
            ]
            if not hits:
                raise ScheduleError(
                    f"groups: target layer {name!r} is in no group {self._groups_text()}"
                )
            if len(hits) > 1:
                raise ScheduleError(f"groups: target layer {name!r} is in several groups {hits}")
            out[name] = hits[0]
        return out

    def resolve(
        self,
        experience: int,
        layers: Sequence[tuple[str, int, int]],
        *,
        outer: bool = True,
    ) -> list[LayerSetting]:
        """Per-layer settings at ``experience`` for ``layers`` = ``[(name, out, in), ...]``.

        ``outer=False`` forces ``outer_rank = 0`` (SSVD); budget settings then give the whole
        budget to the inner transform. Groups that match none of ``layers`` are an error.
        """
        if not layers:
            raise ScheduleError("layers: no target layer to schedule")
        where = f"experiences[{experience}]"
        settings = self.settings_for(experience)
        membership = self.assign_groups([name for name, _, _ in layers])
        for g in self.groups:
            if g not in membership.values():
                raise ScheduleError(
                    f"groups.{g}: patterns {list(self.groups[g])} match none of the target layers"
                )
        missing = sorted(set(membership.values()) - set(settings))
        if missing:
            raise ScheduleError(f"{where}: no setting for group(s) {missing}")
        by_group: dict[str, list[tuple[str, int, int]]] = {}
        for layer in layers:
            by_group.setdefault(membership[layer[0]], []).append(layer)
        resolved: dict[str, LayerSetting] = {}
        for g, members in by_group.items():
            for st in resolve_group(settings[g], members, outer, f"{where}.{g}", g):
                resolved[st.name] = st
        return [resolved[name] for name, _, _ in layers]

    def total(self, experience: int, layers: Sequence[tuple[str, int, int]], *, outer=True) -> int:
        """Total trainable SSVD-O parameters at ``experience``."""
        return sum(s.trainable for s in self.resolve(experience, layers, outer=outer))

    def validate(
        self, n_experiences: int, layers: Sequence[tuple[str, int, int]], *, outer: bool = True
    ) -> None:
        """Resolve every experience of a stream of ``n_experiences`` up front (fail early)."""
        self.check_length(n_experiences)
        for i in range(n_experiences):
            self.resolve(i, layers, outer=outer)

    # ---------------------------------------------------------------- internals
    def _groups_text(self) -> str:
        return "{" + ", ".join(f"{g}: {list(p)}" for g, p in self.groups.items()) + "}"

    def _parse_entry(self, entry: Any, where: str) -> dict[str, GroupSetting]:
        if (
            isinstance(entry, Mapping)
            and any(k in SETTING_FIELDS or k == "subspace" for k in entry)
            and not any(k in self.groups for k in entry)
        ):
            # A bare setting: allowed only with a single group.
            if len(self.groups) != 1:
                raise ScheduleError(
                    f"{where}: a bare setting needs a single group; name the groups "
                    f"{list(self.groups)}"
                )
            entry = {next(iter(self.groups)): entry}
        if not isinstance(entry, Mapping) or not entry:
            raise ScheduleError(f"{where}: expected a mapping group -> setting, got {entry!r}")
        out = {}
        for g, setting in entry.items():
            if g not in self.groups:
                raise ScheduleError(
                    f"{where}: unknown group {g!r}; defined groups: {list(self.groups)}"
                )
            out[g] = GroupSetting.parse(setting, f"{where}.{g}")
        absent = [g for g in self.groups if g not in out]
        if absent:
            raise ScheduleError(f"{where}: no setting for group(s) {absent}")
        return out
