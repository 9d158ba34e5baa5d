"""cl_ssvdo: SSVD-O adapters for continual learning in speech recognition.

Imports torch (and, on demand, peft and speechbrain) only. ``SSVDOConfig`` (the peft config) is
loaded lazily because importing peft takes seconds; touching it registers SSVD-O with peft, and
so does ``import cl_ssvdo`` when peft is already imported. The submodules ``budget``, ``metrics``
and ``baselines`` are imported eagerly (torch and the standard library only; ``baselines``
imports peft inside the functions that need it).
"""

import sys
from typing import Any

from . import baselines, budget, metrics
from .baselines import AdapterHandle, apply_adapter
from .budget import allocate, match_rank, match_ranks
from .ssvdo import (
    LayerSummary,
    SSVDOLinear,
    basis_drift,
    inject_ssvdo,
    merge_ssvdo,
    ssvdo_layers,
    ssvdo_num_parameters,
    ssvdo_ranks,
)

_LAZY = {
    "SSVDOConfig": ("cl_ssvdo.ssvdo.config", "SSVDOConfig"),
    "SSVDOModel": ("cl_ssvdo.ssvdo.peft_registration", "SSVDOModel"),
    "register_with_peft": ("cl_ssvdo.ssvdo.peft_registration", "register_with_peft"),
}

__all__ = [
    "AdapterHandle",
    "LayerSummary",
    "SSVDOConfig",
    "SSVDOLinear",
    "SSVDOModel",
    "allocate",
    "apply_adapter",
    "baselines",
    "basis_drift",
    "budget",
    "inject_ssvdo",
    "match_rank",
    "match_ranks",
    "merge_ssvdo",
    "metrics",
    "register_with_peft",
    "ssvdo_layers",
    "ssvdo_num_parameters",
    "ssvdo_ranks",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        return getattr(importlib.import_module(module_name), attr)
    raise AttributeError(f"module 'cl_ssvdo' has no attribute {name!r}")


if "peft" in sys.modules:  # cheap now: make saved SSVD-O adapters loadable without further imports
    from .ssvdo import peft_registration as _peft_registration  # noqa: F401
