"""SSVD-O, the structured-SVD adapter (torch only; the peft binding lives in
``peft_registration`` and is imported on demand)."""

from .inject import LayerSummary, inject_ssvdo, merge_ssvdo, ssvdo_layers
from .layer import SSVDOAdapter, SSVDOLinear, basis_drift, ssvdo_num_parameters, ssvdo_ranks

__all__ = [
    "LayerSummary",
    "SSVDOAdapter",
    "SSVDOLinear",
    "basis_drift",
    "inject_ssvdo",
    "merge_ssvdo",
    "ssvdo_layers",
    "ssvdo_num_parameters",
    "ssvdo_ranks",
]
