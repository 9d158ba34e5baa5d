"""Fixtures for ASR models (owned by cl_ssvdo.asr).

- ``char_tokenizer``: the default :class:`CharTokenizer` (29 classes, blank 0).
- ``ci_model``: a freshly built ``ci`` preset model (seeded; function scope, ~0.1 s).
- ``pretrained_ci``: path of a pretrained folder holding a ``ci`` model trained for
  ``PRETRAIN_STEPS`` steps on the tiny stream's first domain (adult) and exported; built once per
  session (~30 s on one core). Load a private copy with ``pretrained_ci_model``.
- ``pretrained_ci_model``: ``(model, tokenizer)`` freshly loaded from ``pretrained_ci``.
- ``one_thread``: runs a test with ``torch.set_num_threads(1)`` (see :func:`torch_threads`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from cl_ssvdo.asr import CTCASR, CharTokenizer, build_asr, load_pretrained, pretrain


@contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """Temporarily sets torch's intra-op threads.

    Training steps of these small models ran 13x slower with 2 threads than with 1 when the
    2 cores were shared with other processes (OpenMP spin-waiting), so training fixtures and
    tests use 1 thread.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Runs the test with one torch thread."""
    with torch_threads(1):
        yield


PRETRAIN_STEPS = 300
PRETRAIN_KW = dict(lr=3e-3, warmup_steps=30, batch_size=8, early_stopping_patience=0)


@pytest.fixture(scope="session")
def char_tokenizer() -> CharTokenizer:
    """The default character tokenizer (space, apostrophe, a-z; blank 0)."""
    return CharTokenizer()


@pytest.fixture
def ci_model(char_tokenizer: CharTokenizer) -> CTCASR:
    """A freshly initialised ``ci`` preset model (seed 0)."""
    torch.manual_seed(0)
    return build_asr("ci", char_tokenizer.vocab_size)


@pytest.fixture(scope="session")
def pretrained_ci(tiny_stream, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a ``ci`` model trained ``PRETRAIN_STEPS`` steps on the tiny stream's adult data."""
    from cl_ssvdo.data import ManifestDataset

    first = tiny_stream.domains[0]
    train = ManifestDataset(tiny_stream.manifest(first, "train"), root=tiny_stream.root)
    valid = ManifestDataset(tiny_stream.manifest(first, "valid"), root=tiny_stream.root)
    tokenizer = CharTokenizer()
    torch.manual_seed(0)
    model = build_asr("ci", tokenizer.vocab_size)
    with torch_threads(1):
        result = pretrain(
            model,
            tokenizer,
            train,
            valid,
            out_dir=tmp_path_factory.mktemp("pretrained_ci"),
            max_epochs=10_000,
            max_steps=PRETRAIN_STEPS,
            restore_best=False,
            ckpt_every_minutes=None,
            progress=False,
            **PRETRAIN_KW,
        )
    assert result.steps == PRETRAIN_STEPS and result.pretrained_dir is not None
    return result.pretrained_dir


@pytest.fixture
def pretrained_ci_model(pretrained_ci: Path) -> tuple[CTCASR, CharTokenizer]:
    """A private copy of the pretrained ``ci`` model and its tokenizer."""
    model, tokenizer, _ = load_pretrained(pretrained_ci)
    return model, tokenizer
