"""Shared fixtures and test-session settings; each fixture module belongs to the package it serves."""

import os

import torch
from speechbrain.utils.importutils import LazyModule

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
# Ray binds a test cluster to loopback only (its driver would otherwise rewrite 127.0.0.1 to the
# machine's interface address); set before anything imports ray.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# Test models are tiny: one thread is faster than two and immune to a busy neighbour core.
torch.set_num_threads(1)


def _lazy_module_file_guard() -> None:
    """Keeps ``hypothesis`` working once speechbrain is imported.

    Hypothesis reads ``getattr(module, "__file__", None)`` of every module in ``sys.modules``;
    on a SpeechBrain ``LazyModule`` (or its ``DeprecatedModuleRedirect`` subclass) whose target
    cannot be imported here (e.g. ``speechbrain.integrations.k2_fsa`` without k2) that raises
    ``ImportError`` instead of ``AttributeError`` and aborts the whole session. Unloaded lazy
    modules now simply have no ``__file__``; every other attribute still triggers the import.
    """
    original = LazyModule.__getattr__

    def __getattr__(self, attr):  # noqa: N807
        if attr == "__file__" and self.lazy_module is None:
            raise AttributeError(attr)
        return original(self, attr)

    LazyModule.__getattr__ = __getattr__


_lazy_module_file_guard()

pytest_plugins = ["tests.fixtures_stream", "tests.fixtures_asr"]
