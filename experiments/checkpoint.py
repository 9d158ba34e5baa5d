"""Per-experience checkpoints of a run, so a killed run resumes where it stopped — as data only.

A checkpoint holds what the next experience needs and cannot recompute: the (merged, plain)
model weights, the state of every config plugin (replay buffer, EWC/MAS anchors and
importances, A-GEM memory, weight-averaging snapshot, adapter records), the RNG states and the
run's counters. It is written atomically (tmp file + rename) after the experience's evaluation
row is committed.

File format (``exp_<i>.ckpt``): ``torch.save`` of ``{"format", "json", "tensors"}`` where
``tensors`` is a flat ``{name: Tensor}`` dict and ``json`` a JSON text describing everything
else, with tensors referenced by name. It is read with ``torch.load(weights_only=True)``, so a
crafted file cannot execute code: there are no pickled objects. Plugin state is encoded from
each plugin's ``__dict__``; values that are not state (callables, modules) are kept from the
freshly built plugin; Avalanche datasets (replay buffers, A-GEM memories) are stored as
``(manifest, row)`` references and rebuilt from the run's own benchmark on load; objects inside
a plugin (e.g. a storage policy) are rebuilt only for classes of this project's packages and
Avalanche's storage policies.

The two newest checkpoints are kept: a truncated or corrupt newest one is a
:class:`CheckpointError` and :func:`load_latest` falls back to the previous good one. Next to
them, ``model_exp_<i>.pt`` holds the plain model state after every experience
(``model_exp_000.pt`` = the base), read by :func:`load_model_state` (used by export).

Example
-------
>>> import tempfile, torch
>>> folder = tempfile.mkdtemp()
>>> model = torch.nn.Linear(2, 2)
>>> _ = save_checkpoint(folder, 1, model, [], extra={"global_epoch": 3})
>>> load_checkpoint(checkpoint_path(folder, 1), torch.nn.Linear(2, 2), [])["global_epoch"]
3
>>> sorted(load_model_state(folder, 1))
['bias', 'weight']
"""

from __future__ import annotations

import bisect
import dataclasses
import importlib
import json
import random
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "CheckpointError",
    "checkpoint_path",
    "dataset_refs",
    "latest_checkpoint",
    "load_checkpoint",
    "load_latest",
    "load_model_state",
    "resume_point",
    "model_state_path",
    "save_checkpoint",
]

FORMAT = 2
KEEP = 2
# Classes a checkpoint may rebuild inside a plugin's state (never anything else).
_ALLOWED_MODULES = ("strategies.", "cl_ssvdo.", "experiments.", "avalanche.training.storage_policy")

DatasetResolver = Callable[[list[list[Any]]], Any]


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (truncated, corrupt, foreign format, other plugins)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        super().__init__(f"checkpoint {path}: {reason}")


def checkpoint_path(folder: str | Path, experience: int) -> Path:
    return Path(folder) / f"exp_{experience:03d}.ckpt"


def model_state_path(folder: str | Path, experience: int) -> Path:
    return Path(folder) / f"model_exp_{experience:03d}.pt"


def _checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    found = []
    for path in Path(folder).glob("exp_*.ckpt"):
        try:
            found.append((int(path.stem.split("_")[1]), path))
        except (IndexError, ValueError):
            continue
    return sorted(found)


def latest_checkpoint(folder: str | Path) -> tuple[int, Path] | None:
    """``(experience, path)`` of the newest checkpoint in ``folder`` (None if there is none)."""
    found = _checkpoints(folder)
    return found[-1] if found else None


# -- encoding: plain values + named tensors -----------------------------------------------------
class _Encoder:
    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}

    def tensor(self, value: torch.Tensor) -> dict[str, str]:
        key = f"t{len(self.tensors)}"
        self.tensors[key] = value.detach().cpu().clone()
        return {"__tensor__": key}

    def encode(self, value: Any, where: str) -> Any:
        from avalanche.benchmarks.utils import AvalancheDataset

        if value is None or isinstance(value, bool | int | str):
            return value
        if isinstance(value, float):
            return {"__float__": repr(value)}  # nan/inf survive, JSON stays strict
        if isinstance(value, np.generic):
            return self.encode(value.item(), where)
        if isinstance(value, torch.Tensor):
            return self.tensor(value)
        if isinstance(value, np.ndarray):
            return {
                "__ndarray__": self.tensor(
                    torch.from_numpy(
                        value.astype(np.int64) if value.dtype == np.uint32 else value.copy()
                    )
                ),
                "dtype": str(value.dtype),
            }
        if isinstance(value, torch.device | torch.dtype):
            return {"__torch__": str(value)}
        if isinstance(value, list):
            return [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, tuple):
            return {"__tuple__": [self.encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
        if isinstance(value, set | frozenset):
            return {"__set__": [self.encode(v, f"{where}{{}}") for v in sorted(value, key=repr)]}
        if isinstance(value, dict):
            return {
                "__dict__": [
                    [self.encode(k, f"{where} key"), self.encode(v, f"{where}[{k!r}]")]
                    for k, v in value.items()
                ]
            }
        if isinstance(value, random.Random):
            return {"__random__": self.encode(value.getstate(), where)}
        if isinstance(value, AvalancheDataset):
            return {"__dataset__": dataset_refs(value, where)}
        if isinstance(value, nn.Module):
            raise TypeError(f"{where}: a module ({type(value).__name__}) is not checkpoint state")
        if dataclasses.is_dataclass(value) or hasattr(value, "__dict__"):
            cls = type(value)
            name = f"{cls.__module__}:{cls.__qualname__}"
            if not cls.__module__.startswith(_ALLOWED_MODULES):
                raise TypeError(f"{where}: objects of {name} are not checkpoint state")
            state = {k: self.encode(v, f"{where}.{k}") for k, v in vars(value).items()}
            return {"__object__": name, "state": state}
        raise TypeError(f"{where}: {type(value).__name__} is not checkpoint state")


def dataset_refs(dataset: Any, where: str) -> list[list[Any]]:
    """``[[manifest path, row], ...]``: an Avalanche dataset over ``ManifestDataset`` leaves."""
    flat = dataset._flat_data
    leaves = flat._datasets
    cum = flat._cumulative_sizes
    indices = flat._indices
    refs = []
    for i in range(len(flat)):
        g = int(indices[i]) if indices is not None else i
        leaf = bisect.bisect_right(cum, g)
        local = g - (cum[leaf - 1] if leaf else 0)
        manifest = getattr(leaves[leaf], "manifest", None)
        if manifest is None:
            raise TypeError(f"{where}: a dataset over {type(leaves[leaf]).__name__} (no manifest)")
        refs.append([str(manifest), local])
    return refs


class _Decoder:
    def __init__(self, tensors: Mapping[str, torch.Tensor], datasets: DatasetResolver | None):
        self.tensors = tensors
        self.datasets = datasets

    def decode(self, value: Any, fresh: Any = None) -> Any:
        if not isinstance(value, dict):
            if isinstance(value, list):
                return [self.decode(v) for v in value]
            return value
        if "__tensor__" in value:
            return self.tensors[value["__tensor__"]]
        if "__float__" in value:
            return float(value["__float__"])
        if "__ndarray__" in value:
            return self.decode(value["__ndarray__"]).numpy().astype(value["dtype"])
        if "__torch__" in value:
            text = value["__torch__"]
            return (
                getattr(torch, text.split(".", 1)[1])
                if text.startswith("torch.")
                else torch.device(text)
            )
        if "__tuple__" in value:
            return tuple(self.decode(v) for v in value["__tuple__"])
        if "__set__" in value:
            return {self.decode(v) for v in value["__set__"]}
        if "__dict__" in value:
            return {_hashable(self.decode(k)): self.decode(v) for k, v in value["__dict__"]}
        if "__random__" in value:
            rng = random.Random()
            rng.setstate(self.decode(value["__random__"]))
            return rng
        if "__dataset__" in value:
            if self.datasets is None:
                raise TypeError("the checkpoint holds datasets but no dataset resolver was given")
            return self.datasets(value["__dataset__"])
        if "__object__" in value:
            cls = _allowed_class(value["__object__"])
            obj = fresh if type(fresh) is cls else cls.__new__(cls)
            restore_state(obj, value["state"], self)
            return obj
        raise TypeError(f"unknown checkpoint value {sorted(value)}")


def _hashable(value: Any) -> Any:
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value


def _allowed_class(name: str) -> type:
    module, _, qualname = name.partition(":")
    if not module.startswith(_ALLOWED_MODULES):
        raise TypeError(f"class {name} may not be rebuilt from a checkpoint")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, type):
        raise TypeError(f"{name} is not a class")
    return obj


def plugin_state(plugin: Any, encoder: _Encoder, where: str) -> dict[str, Any]:
    """The encoded ``__dict__`` of ``plugin``; values that are not state are left out."""
    out = {}
    for key, value in vars(plugin).items():
        try:
            out[key] = encoder.encode(value, f"{where}.{key}")
        except TypeError:
            if callable(value) or isinstance(value, nn.Module) or key.startswith("_"):
                continue  # rebuilt with the fresh plugin
            raise
    return out


def restore_state(obj: Any, state: Mapping[str, Any], decoder: _Decoder) -> None:
    """Set the decoded ``state`` on ``obj`` (nested objects restored into their fresh copy)."""
    current = vars(obj)
    for key, value in state.items():
        current[key] = decoder.decode(value, current.get(key))


# -- RNG -----------------------------------------------------------------------------------------
def _rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


# -- save / load ---------------------------------------------------------------------------------
def _class_name(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _atomic_save(payload: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def save_checkpoint(
    folder: str | Path,
    experience: int,
    model: nn.Module,
    plugins: Sequence[Any],
    extra: Mapping[str, Any] | None = None,
    keep_previous: bool = False,
) -> Path:
    """Write the checkpoint after ``experience`` (0 = the base, before any training) and the
    plain model state ``model_exp_<i>.pt``; keeps the newest ``KEEP`` checkpoints (all of them
    with ``keep_previous``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    encoder = _Encoder()
    model_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    body = {
        "experience": int(experience),
        "plugin_classes": [_class_name(p) for p in plugins],
        "plugins": [plugin_state(p, encoder, f"plugins[{i}]") for i, p in enumerate(plugins)],
        "rng": encoder.encode(_rng_state(), "rng"),
        "extra": encoder.encode(dict(extra or {}), "extra"),
    }
    tensors = {**encoder.tensors, **{f"model/{k}": v for k, v in model_state.items()}}
    _atomic_save(model_state, model_state_path(folder, experience))
    path = checkpoint_path(folder, experience)
    _atomic_save({"format": FORMAT, "json": json.dumps(body), "tensors": tensors}, path)
    if not keep_previous:
        for _, old in _checkpoints(folder)[:-KEEP]:
            old.unlink(missing_ok=True)
    return path


def _read(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        raise CheckpointError(path, f"truncated or corrupt ({type(exc).__name__}: {exc})") from exc
    except Exception as exc:  # weights_only refuses any pickled object: not our format
        raise CheckpointError(
            path, f"not a data-only checkpoint, refused ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(path, f"unknown format (expected format {FORMAT})")
    try:
        body = json.loads(payload["json"])
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise CheckpointError(path, f"corrupt description ({exc})") from exc
    return body, payload["tensors"]


def load_checkpoint(
    path: str | Path,
    model: nn.Module,
    plugins: Sequence[Any],
    device: str | torch.device = "cpu",
    datasets: DatasetResolver | None = None,
) -> dict[str, Any]:
    """Restore ``model`` weights, the plugins' state and the RNGs exactly; returns the
    checkpoint's ``extra`` dict (with ``experience``).

    ``datasets(refs)`` rebuilds a dataset from ``[[manifest, row], ...]`` (needed when a
    plugin holds data, e.g. replay). Raises :class:`CheckpointError` for an unreadable
    checkpoint or one whose plugins differ from ``plugins``.
    """
    body, tensors = _read(path)
    names = [_class_name(p) for p in plugins]
    if names != body["plugin_classes"]:
        raise CheckpointError(
            path, f"plugins {body['plugin_classes']} do not match the config's {names}"
        )
    decoder = _Decoder(tensors, datasets)
    model_state = {k[len("model/") :]: v for k, v in tensors.items() if k.startswith("model/")}
    model.load_state_dict(model_state)
    model.to(device)
    for plugin, state in zip(plugins, body["plugins"], strict=True):
        restore_state(plugin, state, decoder)
    _set_rng_state(decoder.decode(body["rng"]))
    return {**decoder.decode(body["extra"]), "experience": body["experience"]}


def load_latest(
    folder: str | Path,
    model: nn.Module,
    plugins: Sequence[Any],
    device: str | torch.device = "cpu",
    datasets: DatasetResolver | None = None,
    at_most: int | None = None,
) -> dict[str, Any] | None:
    """Load the newest usable checkpoint (``experience <= at_most``), falling back past
    unreadable ones with a warning; None when there is none."""
    for experience, path in reversed(_checkpoints(folder)):
        if at_most is not None and experience > at_most:
            continue
        try:
            _read(path)  # check before touching the model
        except CheckpointError as exc:
            warnings.warn(
                f"{exc}; falling back to the previous checkpoint", RuntimeWarning, stacklevel=2
            )
            continue
        return load_checkpoint(path, model, plugins, device, datasets)
    return None


def resume_point(folder: str | Path, at_most: int | None = None) -> tuple[int, Path, dict] | None:
    """``(experience, path, extra)`` of the newest readable checkpoint with ``experience <=
    at_most`` (unreadable ones are skipped with a warning); None when there is none. Reads only
    the description, never touches a model."""
    for experience, path in reversed(_checkpoints(folder)):
        if at_most is not None and experience > at_most:
            continue
        try:
            body, tensors = _read(path)
        except CheckpointError as exc:
            warnings.warn(
                f"{exc}; falling back to the previous checkpoint", RuntimeWarning, stacklevel=2
            )
            continue
        extra = _Decoder(tensors, None).decode(body["extra"])
        return experience, path, extra
    return None


def load_model_state(folder: str | Path, experience: int) -> dict[str, torch.Tensor]:
    """The plain model's state dict after ``experience`` (0 = the base) of a run's checkpoint
    folder (``RUN_DIR/checkpoints``); ``FileNotFoundError`` names what is missing."""
    path = model_state_path(folder, experience)
    if not path.is_file():
        kept = sorted(p.name for p in Path(folder).glob("model_exp_*.pt"))
        hint = (
            f"kept: {kept}"
            if kept
            else "the run kept none: it ran with train.checkpoint: false (the Whisper CPU "
            "default); rerun it with --set train.checkpoint=true"
        )
        raise FileNotFoundError(f"no model state after experience {experience}: {path} ({hint})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(path, f"truncated or corrupt ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict):
        raise CheckpointError(path, "not a state dict")
    return state
