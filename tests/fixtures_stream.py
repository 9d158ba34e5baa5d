"""Fixtures for the synthetic stream (owned by benchmarks).

``tiny_stream``: the ``tiny`` preset (adult -> child -> accent, 240 utterances, ~0.14 h, a few
seconds to generate) in a session temporary folder, or under ``$CL_SSVDO_TEST_CACHE`` when set
(then reused across sessions: the generator caches by config hash).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cl_ssvdo.data import StreamInfo

TINY_CONFIG = {"preset": "tiny", "seed": 0}


@pytest.fixture(scope="session")
def tiny_stream(tmp_path_factory: pytest.TempPathFactory) -> StreamInfo:
    """StreamInfo of the tiny synthetic stream (domains adult, child, accent; train/valid/test)."""
    from benchmarks.synthetic import generate_stream

    cache = os.environ.get("CL_SSVDO_TEST_CACHE")
    cache_dir = Path(cache) if cache else tmp_path_factory.mktemp("streams")
    return generate_stream(TINY_CONFIG, cache_dir, workers=2, progress=False)


@pytest.fixture(scope="session")
def tiny_benchmark(tiny_stream: StreamInfo):
    """Avalanche benchmark over ``tiny_stream``: train/valid/test streams, one experience per domain."""
    from benchmarks.stream import make_benchmark

    return make_benchmark(tiny_stream, splits=("train", "valid", "test"))
