"""Adapter plugins behind :class:`AdapterPlugin` (``base``): SSVD-O and SSVD (``ssvdo``), the
peft baselines LoRA/DoRA/PiSSA and full fine-tuning (``peft``)."""

from .base import AdapterPlugin, ExperienceRecord, LayerRecord, match_schedule
from .peft import BaselinePlugin, FullFTPlugin
from .ssvdo import SSVDOPlugin, SSVDPlugin

__all__ = [
    "AdapterPlugin",
    "BaselinePlugin",
    "ExperienceRecord",
    "FullFTPlugin",
    "LayerRecord",
    "SSVDOPlugin",
    "SSVDPlugin",
    "match_schedule",
]
