"""Fingerprints of a base model: which weights, trained on which stream.

A pretrained folder's name is a hash of the *configuration* that produced it; two folders with
the same name can still hold different weights (another machine, thread count or seed). The
fingerprint identifies the weights themselves:

- ``weights_sha256``: sha256 over the state dict's tensors in sorted key order (key, dtype,
  shape and the raw little-endian bytes of each tensor, on CPU, contiguous). Independent of
  pickle/zip layout, device and key insertion order, so ``torch.save`` of the same tensors
  always gives the same fingerprint and a single changed bit gives another.
- ``stream_sha256``: sha256 over a stream folder's ``stream.json`` (parsed and re-dumped with
  sorted keys) and the bytes of every ``manifests/*.csv`` (sorted by name). Audio files are not
  read: the manifests name them and carry their durations and transcripts.

:func:`export_pretrained` writes both into ``fingerprint.json`` next to ``model.ckpt``; the
experiment runner logs them to MLflow (``base.weights_sha``, ``base.stream_sha``) and refuses
to resume a run on a base whose weights differ (:class:`BaseMismatchError`).

Must not depend on avalanche, mlflow or benchmarks.

>>> import torch
>>> a = {"w": torch.ones(2, 3), "b": torch.zeros(3)}
>>> b = {"b": torch.zeros(3), "w": torch.ones(2, 3)}
>>> weights_sha256(a) == weights_sha256(b)
True
>>> b["w"][0, 0] = 1.0 + 2**-20
>>> weights_sha256(a) == weights_sha256(b)
False
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

FINGERPRINT_FILE = "fingerprint.json"

__all__ = [
    "FINGERPRINT_FILE",
    "BaseMismatchError",
    "check_same_base",
    "folder_weights_sha",
    "read_fingerprint",
    "short",
    "stream_sha256",
    "weights_sha256",
    "write_fingerprint",
]


class BaseMismatchError(RuntimeError):
    """A run or study is asked to continue on a base model other than the one it started with."""


def weights_sha256(state: Mapping[str, torch.Tensor] | torch.nn.Module) -> str:
    """sha256 (hex) of a state dict (or a module's) over its tensors in sorted key order.

    Non-tensor entries (e.g. SpeechBrain ``_extra_state``) are hashed through ``repr``.
    """
    if isinstance(state, torch.nn.Module):
        state = state.state_dict()
    digest = hashlib.sha256()
    for key in sorted(state):
        value = state[key]
        digest.update(key.encode("utf-8") + b"\0")
        if isinstance(value, torch.Tensor):
            tensor = value.detach().to("cpu").contiguous()
            digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode() + b"\0")
            # Bytes through uint8 so every dtype (bfloat16, bool, ...) hashes the same way.
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            digest.update(repr(value).encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def stream_sha256(root: str | Path) -> str:
    """sha256 (hex) of a stream folder: ``stream.json`` (canonical JSON) and ``manifests/*.csv``.

    Raises ``FileNotFoundError`` naming the folder when it has no ``stream.json``.
    """
    root = Path(root)
    meta = root / "stream.json"
    if not meta.is_file():
        raise FileNotFoundError(f"stream fingerprint: {root} has no stream.json")
    try:
        parsed = json.loads(meta.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"stream fingerprint: {meta} is not valid JSON: {exc}") from exc
    digest = hashlib.sha256(json.dumps(parsed, sort_keys=True).encode("utf-8") + b"\0")
    for manifest in sorted((root / "manifests").glob("*.csv")):
        digest.update(manifest.name.encode("utf-8") + b"\0")
        digest.update(manifest.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def short(sha: str | None) -> str:
    """The first 12 hex digits (for tables and messages); ``"?"`` for None."""
    return sha[:12] if sha else "?"


def write_fingerprint(
    folder: str | Path,
    weights_sha: str,
    stream_sha: str | None = None,
    **extra: Any,
) -> Path:
    """Writes ``<folder>/fingerprint.json`` (``weights_sha256``, ``stream_sha256``, ``extra``)."""
    path = Path(folder) / FINGERPRINT_FILE
    data = {"weights_sha256": weights_sha, "stream_sha256": stream_sha, **extra}
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_fingerprint(folder: str | Path) -> dict[str, Any] | None:
    """``fingerprint.json`` of a pretrained folder as a dict, or None when it has none."""
    path = Path(folder) / FINGERPRINT_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("weights_sha256"), str):
        raise ValueError(f"{path}: field 'weights_sha256' is missing or not a string")
    return data


def folder_weights_sha(folder: str | Path) -> str | None:
    """Weights fingerprint of a pretrained folder, computed from its ``model.ckpt`` (not taken
    from ``fingerprint.json``, which a copied-in checkpoint would leave stale); the recorded one
    when there is no ``model.ckpt`` (a user's own folder); None when there is neither."""
    folder = Path(folder)
    ckpt = folder / "model.ckpt"
    if ckpt.is_file():
        return weights_sha256(torch.load(ckpt, map_location="cpu", weights_only=True))
    recorded = read_fingerprint(folder)
    return None if recorded is None else recorded["weights_sha256"]


def check_same_base(expected: str | None, actual: str, *, what: str, where: str | Path) -> None:
    """Raises :class:`BaseMismatchError` when ``expected`` is set and differs from ``actual``.

    ``what`` names the run or study, ``where`` the file that recorded ``expected``.

    >>> check_same_base(None, "ab" * 32, what="run x", where="state.json")
    >>> check_same_base("ab" * 32, "cd" * 32, what="run x", where="state.json")
    Traceback (most recent call last):
    ...
    cl_ssvdo.asr.fingerprint.BaseMismatchError: run x started on base weights abababababab (state.json) but the base now has weights cdcdcdcdcdcd; restore that base, or start over (--fresh) to use the new one
    """
    if expected and expected != actual:
        raise BaseMismatchError(
            f"{what} started on base weights {short(expected)} ({where}) but the base now has "
            f"weights {short(actual)}; restore that base, or start over (--fresh) to use the "
            "new one"
        )
