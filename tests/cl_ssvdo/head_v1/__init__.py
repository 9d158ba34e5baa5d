"""Frozen copy of ``cl_ssvdo/ssvdo/{layer,rotations,decompose,serial}.py`` at commit 3529d77, the
last commit before ``parameterisation`` existed (``git show 3529d77:cl_ssvdo/ssvdo/layer.py``).

Only ``tests/cl_ssvdo/test_layer.py`` imports it: it proves that ``parameterisation="v1"``
reproduces that code's outputs and gradients bit for bit. Never edit these files.
"""
