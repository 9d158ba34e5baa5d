"""Per-experience checkpoints of a run, so a killed run resumes where it stopped.

A checkpoint holds what the next experience needs and cannot recompute: the (merged, plain)
model weights, the state of every config plugin (replay buffer, EWC/MAS anchors and
importances, LwF teacher, A-GEM memory, weight-averaging snapshot, adapter records), the RNG
states and the logger's epoch counter. It is written atomically (tmp file + rename) after the
experience's evaluation row is on disk; only the latest one is kept.

Plugins are pickled with ``dill`` (Avalanche's checkpoint pickler) and restored into the
freshly built plugins of the same classes (``__dict__`` update), so the strategy itself
(data loaders, benchmark, evaluator) is never pickled.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dill
import numpy as np
import torch
from torch import nn

__all__ = ["checkpoint_path", "latest_checkpoint", "load_checkpoint", "save_checkpoint"]


def checkpoint_path(folder: str | Path, experience: int) -> Path:
    return Path(folder) / f"exp_{experience:03d}.ckpt"


def latest_checkpoint(folder: str | Path) -> tuple[int, Path] | None:
    """``(experience, path)`` of the newest checkpoint in ``folder`` (None if there is none)."""
    found = sorted(Path(folder).glob("exp_*.ckpt"))
    if not found:
        return None
    path = found[-1]
    return int(path.stem.split("_")[1]), path


def _rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    folder: str | Path,
    experience: int,
    model: nn.Module,
    plugins: Sequence[Any],
    extra: dict[str, Any] | None = None,
    keep_previous: bool = False,
) -> Path:
    """Write the checkpoint after ``experience`` (1-based) and delete older ones."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(folder, experience)
    payload = {
        "experience": experience,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "plugins": list(plugins),
        "plugin_classes": [f"{type(p).__module__}.{type(p).__qualname__}" for p in plugins],
        "rng": _rng_state(),
        "extra": dict(extra or {}),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp, pickle_module=dill)
    tmp.replace(path)
    if not keep_previous:
        for old in folder.glob("exp_*.ckpt"):
            if old != path:
                old.unlink(missing_ok=True)
    return path


def load_checkpoint(
    path: str | Path, model: nn.Module, plugins: Sequence[Any], device: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Restore ``model`` weights, the plugins' state and the RNGs; returns the checkpoint's
    ``extra`` dict (with ``experience``). Raises ``ValueError`` if the plugins differ."""
    payload = torch.load(path, map_location=device, pickle_module=dill, weights_only=False)
    saved = payload["plugins"]
    names = [f"{type(p).__module__}.{type(p).__qualname__}" for p in plugins]
    if names != payload["plugin_classes"]:
        raise ValueError(
            f"checkpoint {path}: plugins {payload['plugin_classes']} do not match the config's {names}"
        )
    model.load_state_dict(payload["model"])
    for fresh, old in zip(plugins, saved, strict=True):
        fresh.__dict__.update(old.__dict__)
    _set_rng_state(payload["rng"])
    return {**payload["extra"], "experience": payload["experience"]}
