"""The settings of one SSVD-O layer, in one place: names, defaults, validation, the effective
ranks (k, l) and the trainable-parameter count.

Everything that accepts SSVD-O settings derives from :class:`SSVDOSettings`: the layer
(``SSVDOLinear``/``SSVDOAdapter``), ``inject_ssvdo``, the peft ``SSVDOConfig``,
:mod:`cl_ssvdo.baselines`, :mod:`cl_ssvdo.budget`, the adapter plugins, the experiment factory
and the JSON schema of run configs (a test compares the schema with :func:`setting_defaults`).

Shapes follow ``nn.Linear``: ``m = out_features``, ``n = in_features``, ``r = min(m, n)``.

- ``k = round(p * r)`` with halves rounding up (``floor(p * r + 0.5)``): :func:`inner_rank`;
- ``l_eff = min(l, r, m - n)``, 0 where ``m <= n``: :func:`effective_outer_rank`;
- trainable parameters ``k(k-1)/2 + k + (m - n) * l_eff``: :func:`num_parameters`.

Standard library only (no torch), so the budget arithmetic and the schedule can use it.

Example
-------
>>> s = SSVDOSettings(inner_ratio=0.5, outer_rank=2)
>>> s.tau, s.rotation, s.parameterisation
(0.001, 'cayley', 'v2')
>>> s.ranks(16, 8), s.num_parameters(16, 8)  # k = 4, l = 2: 4*3/2 + 4 + 8*2
((4, 2), 26)
>>> SSVDOSettings(inner_ratio=1.5)
Traceback (most recent call last):
...
ValueError: inner_ratio must be in [0, 1], got 1.5
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

__all__ = [
    "PARAMETERISATIONS",
    "ROTATIONS",
    "SUBSPACES",
    "SSVDOSettings",
    "DEFAULT_PARAMETERISATION",
    "DEFAULTS",
    "SETTING_NAMES",
    "effective_outer_rank",
    "inner_rank",
    "num_parameters",
    "setting_defaults",
    "ssvdo_num_parameters",
    "ssvdo_ranks",
    "validate_settings",
]

ROTATIONS = ("cayley", "linear")
PARAMETERISATIONS = ("v1", "v2")
SUBSPACES = ("top", "tail")


@dataclass(frozen=True)
class SSVDOSettings:
    """One layer's SSVD-O settings (validated on construction, except a missing
    ``inner_ratio``: None stands for "given elsewhere", e.g. by a budget schedule).

    Arguments
    ---------
    inner_ratio : float or None
        p in [0, 1]: k = round(p * min(m, n)) right singular vectors are rotated.
    outer_rank : int
        Requested l >= 0; the effective rank is min(l, r, m - n), 0 where m <= n.
    tau : float
        > 0, sensitivity of the outer rotation under "v1" (no effect under "v2").
    rotation : str
        "cayley" (exactly orthogonal) or "linear" (G = I + 2K).
    subspace : str
        "top" or "tail": which k components the inner transform adapts.
    parameterisation : str
        "v2" (step-size calibrated, the default) or "v1" (the earlier maths).
    """

    inner_ratio: float | None = None
    outer_rank: int = 0
    tau: float = 1e-3
    rotation: str = "cayley"
    subspace: str = "top"
    parameterisation: str = "v2"

    def __post_init__(self) -> None:
        validate_settings(
            0.0 if self.inner_ratio is None else self.inner_ratio,
            self.outer_rank,
            self.tau,
            self.rotation,
            self.subspace,
            self.parameterisation,
        )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "settings") -> SSVDOSettings:
        """Build from a mapping; unknown keys raise ``ValueError`` naming ``where``."""
        unknown = sorted(set(data) - set(SETTING_NAMES))
        if unknown:
            raise ValueError(
                f"{where}: unknown setting(s) {unknown}; allowed {list(SETTING_NAMES)}"
            )
        try:
            return cls(**data)
        except (TypeError, ValueError) as err:
            raise type(err)(f"{where}: {err}") from None

    def replace(self, **changes: Any) -> SSVDOSettings:
        """A copy with ``changes`` (validated)."""
        return replace(self, **changes)

    def required(self) -> SSVDOSettings:
        """Self, after checking that ``inner_ratio`` is given."""
        if self.inner_ratio is None:
            raise ValueError("inner_ratio is required")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def ranks(self, m: int, n: int) -> tuple[int, int]:
        """Effective ``(k, l)`` on an ``m x n`` layer."""
        return ssvdo_ranks(m, n, self.required().inner_ratio, self.outer_rank)

    def num_parameters(self, m: int, n: int) -> int:
        """Trainable parameters on an ``m x n`` layer."""
        return ssvdo_num_parameters(m, n, *self.ranks(m, n))


SETTING_NAMES: tuple[str, ...] = tuple(f.name for f in fields(SSVDOSettings))
DEFAULT_PARAMETERISATION: str = SSVDOSettings.parameterisation


def setting_defaults() -> dict[str, Any]:
    """Setting name -> default (``inner_ratio`` has none: None)."""
    return {f.name: f.default for f in fields(SSVDOSettings)}


def validate_settings(
    inner_ratio: Any,
    outer_rank: Any,
    tau: Any,
    rotation: Any,
    subspace: Any,
    parameterisation: Any = DEFAULT_PARAMETERISATION,
) -> None:
    """Raise ValueError/TypeError naming the offending argument."""
    if isinstance(inner_ratio, bool) or not isinstance(inner_ratio, int | float):
        raise TypeError(f"inner_ratio must be a number in [0, 1], got {inner_ratio!r}")
    if not 0.0 <= float(inner_ratio) <= 1.0:  # also rejects NaN
        raise ValueError(f"inner_ratio must be in [0, 1], got {inner_ratio!r}")
    if isinstance(outer_rank, bool) or not isinstance(outer_rank, int):
        raise TypeError(f"outer_rank must be a non-negative int, got {outer_rank!r}")
    if outer_rank < 0:
        raise ValueError(f"outer_rank must be >= 0, got {outer_rank}")
    if (
        isinstance(tau, bool)
        or not isinstance(tau, int | float)
        or not math.isfinite(tau)
        or tau <= 0
    ):
        raise ValueError(f"tau must be a finite number > 0, got {tau!r}")
    if rotation not in ROTATIONS:
        raise ValueError(f"rotation must be one of {ROTATIONS}, got {rotation!r}")
    if subspace not in SUBSPACES:
        raise ValueError(f"subspace must be one of {SUBSPACES}, got {subspace!r}")
    if parameterisation not in PARAMETERISATIONS:
        raise ValueError(
            f"parameterisation must be one of {PARAMETERISATIONS}, got {parameterisation!r}"
        )


DEFAULTS = SSVDOSettings()  # the defaults (inner_ratio None: it has none)


def inner_rank(inner_ratio: float, r: int) -> int:
    """``k = round(p * r)`` for ``p = inner_ratio`` in [0, 1], halves rounding up.

    >>> inner_rank(0.05, 1024), inner_rank(0.5, 5)
    (51, 3)
    """
    if not (isinstance(inner_ratio, int | float) and 0.0 <= inner_ratio <= 1.0):
        raise ValueError(f"inner_ratio: must be a number in [0, 1], got {inner_ratio!r}")
    return int(math.floor(inner_ratio * r + 0.5))


def check_shape(m: int, n: int) -> None:
    for name, v in (("m", m), ("n", n)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}: layer dimension must be a positive int, got {v!r}")


def effective_outer_rank(m: int, n: int, outer_rank: int) -> int:
    """The outer rank a layer actually uses: 0 where ``m <= n``, never above ``min(r, m - n)``."""
    check_shape(m, n)
    if isinstance(outer_rank, bool) or not isinstance(outer_rank, int) or outer_rank < 0:
        raise ValueError(f"outer_rank: must be an int >= 0, got {outer_rank!r}")
    if m <= n:
        return 0
    return min(outer_rank, n, m - n)


def ssvdo_ranks(
    out_features: int, in_features: int, inner_ratio: float, outer_rank: int
) -> tuple[int, int]:
    """Effective (k, l) for an m x n layer: k = round(p * r) (halves round up), and
    l = min(outer_rank, r, m - n), which is 0 when m <= n.

    >>> ssvdo_ranks(4096, 1024, 0.05, 16), ssvdo_ranks(1024, 4096, 0.05, 16)
    ((51, 16), (51, 0))
    """
    k = inner_rank(inner_ratio, min(out_features, in_features))
    return k, effective_outer_rank(out_features, in_features, outer_rank)


def ssvdo_num_parameters(
    out_features: int, in_features: int, inner_rank: int, outer_rank: int
) -> int:
    """Trainable parameters for effective ranks (k, l): k(k-1)/2 + k + (m - n) l."""
    return (
        inner_rank * (inner_rank - 1) // 2
        + inner_rank
        + max(out_features - in_features, 0) * outer_rank
    )


def num_parameters(m: int, n: int, inner_ratio: float, outer_rank: int = 0) -> int:
    """SSVD-O trainable parameters of one ``m x n`` layer for requested ``(p, l)``.

    >>> num_parameters(4096, 1024, 0.25, 16)  # k = 256, l = 16
    82048
    """
    check_shape(m, n)
    return ssvdo_num_parameters(m, n, *ssvdo_ranks(m, n, inner_ratio, outer_rank))
