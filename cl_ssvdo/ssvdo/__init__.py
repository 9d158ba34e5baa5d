"""SSVD-O, the structured-SVD adapter (torch only; the peft binding lives in
``peft_registration`` and is imported on demand). Settings, defaults, ranks and counts:
``settings``; which layers a target list selects: ``targets``."""

from .inject import LayerSummary, inject_layers, inject_ssvdo, merge_ssvdo, ssvdo_layers
from .layer import SSVDOAdapter, SSVDOLinear, basis_drift
from .settings import SSVDOSettings, ssvdo_num_parameters, ssvdo_ranks
from .targets import resolve_targets, target_matches

__all__ = [
    "LayerSummary",
    "SSVDOAdapter",
    "SSVDOLinear",
    "SSVDOSettings",
    "basis_drift",
    "inject_layers",
    "inject_ssvdo",
    "merge_ssvdo",
    "resolve_targets",
    "ssvdo_layers",
    "ssvdo_num_parameters",
    "ssvdo_ranks",
    "target_matches",
]
