"""Fixtures for the scale tests: the experiments package's tiny configs (tiny stream, the
pretrained ``ci`` model), and a free loopback port."""

from __future__ import annotations

import socket

import pytest

from tests.experiments.conftest import TINY_OVERRIDES, tiny_config  # noqa: F401  (fixture)

TINY_TRAIN = {k: v for k, v in TINY_OVERRIDES.items() if k.startswith("train.")}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def micro_sweep(tiny_config):  # noqa: F811  (the imported fixture)
    """``make(workdir) -> config``: the 2-run micro sweep (SSVD-O and LoRA at 8000 parameters,
    seed 0) on the tiny stream, two experiences, in its own working dir."""

    def make(workdir, **extra):
        return tiny_config(
            "demo",
            {
                "workdir": str(workdir),
                "sweep.budgets": [8000],
                "sweep.overrides": TINY_TRAIN,
                "stream.domains": ["adult", "child", "accent"],
                "tracking.experiment": "micro-sweep",
                **extra,
            },
        )

    return make
