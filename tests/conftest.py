"""Shared fixtures and test-session settings; each fixture module belongs to the package it serves."""

import os
import sys

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
# Test models are tiny: one thread is faster than two and immune to a busy neighbour core.
torch.set_num_threads(1)

pytest_plugins = ["tests.fixtures_stream", "tests.fixtures_asr"]


def shield_speechbrain_lazy_modules() -> None:
    """Keep hypothesis from importing SpeechBrain's lazy modules.

    hypothesis (6.155) scans every module in ``sys.modules`` and reads its ``__file__``; on
    SpeechBrain's ``LazyModule`` / ``DeprecatedModuleRedirect`` proxies that read imports the
    target (k2, spacy, flair, ...), which fails here and aborts collection. Marking unloaded
    proxies as file-less makes the scan skip them.
    """
    for module in list(sys.modules.values()):
        if type(module).__module__ != "speechbrain.utils.importutils":
            continue
        state = vars(module)
        if state.get("lazy_module") is None and "__file__" not in state:
            state["__file__"] = None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items) -> None:
    shield_speechbrain_lazy_modules()


@pytest.fixture(autouse=True)
def _shield_lazy_modules() -> None:
    shield_speechbrain_lazy_modules()
