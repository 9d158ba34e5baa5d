"""cl_ssvdo: SSVD-O adapters for continual learning in speech recognition.

Imports torch (and, on demand, peft and speechbrain) only. ``SSVDOConfig`` (the peft config) is
loaded lazily because importing peft takes seconds; touching it registers SSVD-O with peft, and
so does ``import cl_ssvdo`` (at once when peft is imported, else right after peft gets
imported), so saved adapters load in either import order. The submodules ``budget``, ``metrics``
and ``baselines`` are imported eagerly (torch and the standard library only; ``baselines``
imports peft inside the functions that need it).
"""

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


# Saved SSVD-O adapters load in either import order: registered now if peft is imported,
# else right after `import peft` (an import hook; see cl_ssvdo.ssvdo.peft_hook).
from .ssvdo import peft_hook as _peft_hook  # noqa: E402

_peft_hook.install()
