"""Adapter plugins: SSVD-O (and SSVD) and the peft baselines, all behind :class:`AdapterPlugin`."""

from .peft import (
    BaselinePlugin,
    DoRAPlugin,
    FullFTPlugin,
    LoRAPlugin,
    PiSSAPlugin,
    SSVDPlugin,
    make_baseline_plugin,
)
from .ssvdo import AdapterPlugin, ExperienceRecord, LayerRecord, SSVDOPlugin

__all__ = [
    "AdapterPlugin",
    "BaselinePlugin",
    "DoRAPlugin",
    "ExperienceRecord",
    "FullFTPlugin",
    "LayerRecord",
    "LoRAPlugin",
    "PiSSAPlugin",
    "SSVDOPlugin",
    "SSVDPlugin",
    "make_baseline_plugin",
]
