"""cl_ssvdo: SSVD-O adapters for continual learning in speech recognition.

Imports torch (and, on demand, peft and speechbrain) only. ``SSVDOConfig`` (the peft config) is
loaded lazily because importing peft takes seconds; touching it registers SSVD-O with peft, and
so does ``import cl_ssvdo`` when peft is already imported.
"""

import sys
from typing import Any

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
    "LayerSummary",
    "SSVDOConfig",
    "SSVDOLinear",
    "SSVDOModel",
    "basis_drift",
    "inject_ssvdo",
    "merge_ssvdo",
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
