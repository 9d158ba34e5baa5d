"""Shared fixtures: each fixture module belongs to the package it serves."""

import os

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

pytest_plugins = ["tests.fixtures_stream", "tests.fixtures_asr"]
