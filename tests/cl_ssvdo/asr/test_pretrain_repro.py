"""Pretraining is bit-reproducible: same seed, threads and commit give the same weights, in
fresh processes (issue 19), and a resumed run continues the same random stream."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cl_ssvdo.asr import CharTokenizer, pretrain
from cl_ssvdo.asr.fingerprint import read_fingerprint, weights_sha256
from cl_ssvdo.asr.pretrain import build_seeded_asr
from cl_ssvdo.asr.reproducibility import deterministic_algorithms

ROOT = Path(__file__).resolve().parents[3]


def _pretrain_in_fresh_process(tiny_stream, out: Path, seed: int) -> subprocess.Popen:
    args = [
        sys.executable,
        "-m",
        "cl_ssvdo.asr.pretrain",
        "--train",
        str(tiny_stream.manifest("adult", "train")),
        "--valid",
        str(tiny_stream.manifest("adult", "valid")),
        "--out-dir",
        str(out),
        "--preset",
        "ci",
        "--max-steps",
        "24",
        "--batch-size",
        "4",
        "--warmup-steps",
        "4",
        "--patience",
        "0",
        "--threads",
        "1",
        "--seed",
        str(seed),
        "--no-progress",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.slow
def test_two_pretrainings_in_fresh_processes_give_identical_weights(tiny_stream, tmp_path) -> None:
    """Two processes (torch seeds its generator at random in each) pretrain the ci preset for
    24 steps with the same seed, side by side: identical weight fingerprints, and not those of
    the initial weights (the runs trained)."""
    runs = {name: tmp_path / name for name in ("a", "b")}
    procs = {
        name: _pretrain_in_fresh_process(tiny_stream, out, seed=3) for name, out in runs.items()
    }
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"pretraining {name} failed:\n{err[-3000:]}"
    prints = {}
    for name, out in runs.items():
        assert json.loads((out / "summary.json").read_text())["steps"] == 24
        recorded = read_fingerprint(out / "pretrained")
        assert recorded is not None
        state = torch.load(out / "pretrained" / "model.ckpt", map_location="cpu")
        assert recorded["weights_sha256"] == weights_sha256(state)  # written = what is on disk
        prints[name] = recorded["weights_sha256"]
    assert prints["a"] == prints["b"]
    assert prints["a"] != weights_sha256(build_seeded_asr("ci", CharTokenizer().vocab_size, 3))


def test_initial_weights_are_a_function_of_the_seed() -> None:
    torch.manual_seed(12345)  # whatever state the generator had before does not matter
    a = build_seeded_asr("ci", 29, 5)
    torch.seed()
    b = build_seeded_asr("ci", 29, 5)
    assert weights_sha256(a) == weights_sha256(b)
    assert weights_sha256(a) != weights_sha256(build_seeded_asr("ci", 29, 6))


@pytest.mark.slow
def test_resume_is_bit_identical_with_dropout(tiny_stream, tmp_path, one_thread) -> None:
    """Dropout on: a run stopped at step 3 and resumed to step 6 (a new process would start a
    new DataLoader mid-epoch) has the same weights as one that ran 6 steps straight."""
    from cl_ssvdo.data import ManifestDataset

    ds = ManifestDataset(tiny_stream.manifest("adult", "train"), root=tiny_stream.root)
    items = [ds[i] for i in range(8)]
    tok = CharTokenizer()
    kw = dict(
        batch_size=2,
        lr=3e-3,
        warmup_steps=2,
        schedule_steps=6,
        max_epochs=10,
        ckpt_every_minutes=None,
        export=False,
        restore_best=False,
        progress=False,
        seed=4,
    )
    pretrain(build_seeded_asr("ci", tok.vocab_size, 4), tok, items, None,
             out_dir=tmp_path / "r", max_steps=3, **kw)  # fmt: skip
    torch.seed()  # a different process: the generator is not where the first call left it
    resumed = build_seeded_asr("ci", tok.vocab_size, 99)
    result = pretrain(resumed, tok, items, None, out_dir=tmp_path / "r", max_steps=6, **kw)
    assert result.resumed_from_step == 3
    straight = build_seeded_asr("ci", tok.vocab_size, 4)
    pretrain(straight, tok, items, None, out_dir=tmp_path / "s", max_steps=6, **kw)
    assert weights_sha256(resumed) == weights_sha256(straight)


def test_deterministic_algorithms_restores_the_previous_setting() -> None:
    before = torch.are_deterministic_algorithms_enabled()
    with deterministic_algorithms():
        assert torch.are_deterministic_algorithms_enabled()
    assert torch.are_deterministic_algorithms_enabled() == before
