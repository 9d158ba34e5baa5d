"""``SSVDOConfig``: the peft configuration of SSVD-O (defined with the tuner in
``peft_registration``; its layer settings and defaults are those of ``settings.SSVDOSettings``).

Importing this module imports peft and registers SSVD-O with it, so
``peft.get_peft_model(model, SSVDOConfig(target_modules=[...], inner_ratio=0.1))`` works.

>>> SSVDOConfig(target_modules=["0"], inner_ratio=0.5).settings.tau
0.001
"""

from __future__ import annotations

from .peft_registration import SSVDOConfig

__all__ = ["SSVDOConfig"]
