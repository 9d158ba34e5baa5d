"""``SSVDOConfig``: the peft configuration of SSVD-O.

Importing this module imports peft and registers SSVD-O with it (see ``peft_registration``), so
``peft.get_peft_model(model, SSVDOConfig(target_modules=[...], inner_ratio=0.1))`` works.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from peft.config import PeftConfig

from .layer import DEFAULT_PARAMETERISATION, validate_settings
from .peft_type import SSVDO_PEFT_TYPE


@dataclass
class SSVDOConfig(PeftConfig):
    """Configuration of an SSVD-O adapter for ``peft.get_peft_model``.

    Arguments
    ---------
    target_modules : list of str or str
        peft matching: a list matches names equal to, or ending in ``.<entry>``; a str is a
        full-match regex. Only ``nn.Linear`` targets, never ``nn.MultiheadAttention`` internals.
    exclude_modules : list of str or str, optional
        Same syntax, names to skip.
    inner_ratio : float
        p in [0, 1], fraction of the singular components rotated on the input side.
    outer_rank : int
        l >= 0, left singular vectors rotated into the complement (only where m > n).
    tau : float
        > 0, outer-rotation sensitivity.
    rotation : str
        "cayley" or "linear".
    subspace : str
        "top" or "tail" (which components the inner transform adapts).
    parameterisation : str
        "v2" (step-size calibrated, the default) or "v1" (the earlier maths; ``tau`` only
        matters there). Adapters saved before this setting existed were trained under "v1":
        load them with ``parameterisation="v1"``.
    modules_to_save : list of str, optional
        Extra modules to train and save in full (peft semantics).
    """

    target_modules: list[str] | str | None = field(
        default=None,
        metadata={"help": "Module names (list: exact or suffix match) or a full-match regex."},
    )
    exclude_modules: list[str] | str | None = field(
        default=None, metadata={"help": "Module names or regex to exclude."}
    )
    inner_ratio: float = field(default=0.1, metadata={"help": "Inner ratio p in [0, 1]."})
    outer_rank: int = field(
        default=0, metadata={"help": "Outer rank l >= 0 (effective only where m > n)."}
    )
    tau: float = field(default=1e-3, metadata={"help": "Outer-rotation regulariser tau > 0."})
    rotation: str = field(default="cayley", metadata={"help": "'cayley' or 'linear'."})
    subspace: str = field(
        default="top", metadata={"help": "'top' or 'tail' components for the inner transform."}
    )
    parameterisation: str = field(
        default=DEFAULT_PARAMETERISATION,
        metadata={"help": "'v2' (step-size calibrated) or 'v1' (the earlier maths)."},
    )
    modules_to_save: list[str] | None = field(
        default=None, metadata={"help": "Modules apart from SSVD-O layers to train and save."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = SSVDO_PEFT_TYPE
        if isinstance(self.target_modules, list):
            self.target_modules = set(self.target_modules)
        if isinstance(self.exclude_modules, list):
            self.exclude_modules = set(self.exclude_modules)
        validate_settings(
            self.inner_ratio,
            self.outer_rank,
            self.tau,
            self.rotation,
            self.subspace,
            self.parameterisation,
        )

    @property
    def layer_settings(self) -> dict[str, object]:
        """Keyword arguments of ``SSVDOAdapter`` / ``SSVDOLinear``."""
        return {
            "inner_ratio": self.inner_ratio,
            "outer_rank": self.outer_rank,
            "tau": self.tau,
            "rotation": self.rotation,
            "subspace": self.subspace,
            "parameterisation": self.parameterisation,
        }


# Registration needs the config class; importing it here makes touching SSVDOConfig enough.
from . import peft_registration as _peft_registration  # noqa: E402,F401
