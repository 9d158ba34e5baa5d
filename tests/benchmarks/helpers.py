"""Small audio and manifest writers for the benchmarks tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from cl_ssvdo.data import ManifestRow, write_manifest


def write_tone(
    path: Path,
    seconds: float = 1.0,
    sample_rate: int = 16000,
    f0: float = 150.0,
    channels: int = 1,
    seed: int = 0,
    **kwargs,
) -> Path:
    """A harmonic tone with a little noise (not silent), written with soundfile."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    rng = np.random.default_rng(seed)
    sig = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)) * 0.2
    sig = sig + 0.01 * rng.standard_normal(t.size)
    data = np.repeat(sig[:, None], channels, axis=1).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), data, sample_rate, **kwargs)
    return path


def tiny_manifest(root: Path, n: int = 3, name: str = "d_train.csv", **tone_kwargs) -> Path:
    """A stream-layout manifest with n tone wavs under ``root/audio``."""
    rows = []
    for i in range(n):
        seconds = 0.5 + 0.25 * i
        write_tone(root / "audio" / f"u{i}.wav", seconds=seconds, seed=i, **tone_kwargs)
        rows.append(ManifestRow(f"u{i}", seconds, f"audio/u{i}.wav", "spk", f"word {i}", "d"))
    return write_manifest(root / "manifests" / name, rows)
