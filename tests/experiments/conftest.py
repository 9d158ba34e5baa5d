"""Fixtures for the experiments tests: tiny configs over the real tiny stream and the
pretrained ``ci`` model, each with its own working dir and a fresh SQLite store."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from experiments.config import load_config

# A few optimiser steps per experience: the tests check plumbing and bookkeeping, not WER.
TINY_OVERRIDES = {
    "train.max_steps": 2,
    "train.epochs": 1,
    "train.batch_size": 4,
    "train.eval_batch_size": 16,
    "train.device": "cpu",
    "stream.max_utterances": 8,
}


@pytest.fixture
def tiny_config(tiny_stream, pretrained_ci, tmp_path: Path):
    """``make(name, **overrides) -> config``: a shipped config on the tiny stream and the
    pretrained ci model, working dir and SQLite store under ``tmp_path``."""

    def make(name: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        settings = {
            "workdir": str(tmp_path / "work"),
            "stream.root": str(tiny_stream.root),
            "model.pretrained": str(pretrained_ci),
            "model.preset": "ci",
            **TINY_OVERRIDES,
            **(overrides or {}),
        }
        return load_config(name, settings)

    return make


@pytest.fixture(scope="session")
def store_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh SQLite tracking store, shared by this package's tests (creating one costs seconds)."""
    return f"sqlite:///{(tmp_path_factory.mktemp('store') / 'mlflow.db').as_posix()}"


@pytest.fixture
def closed_port_uri() -> str:
    """``http://127.0.0.1:<port>`` where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
