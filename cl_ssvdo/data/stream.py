"""Reading a stream folder: ``<root>/stream.json`` and its per-domain manifests.

Layout (docs/architecture.md)::

    <root>/stream.json                    name, ordered domains, splits, sample_rate, resample,
                                          config, hours
    <root>/manifests/<domain>_<split>.csv ID,duration,wav,spk_id,wrd,domain
    <root>/audio/...                      mono wav at ``sample_rate`` (corpus streams may link
                                          their own files and set ``"resample": true``)

Writing a stream (generation, corpus preparation) and the Avalanche benchmark over it live in
``benchmarks.stream``. Depends on the standard library only.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_SPLITS",
    "STREAM_FILE",
    "StreamError",
    "StreamInfo",
    "manifest_path",
    "stream_resamples",
]

STREAM_FILE = "stream.json"
DEFAULT_SPLITS = ("train", "valid", "test")


class StreamError(ValueError):
    """A stream folder, domain or split is missing or malformed."""


def manifest_path(root: str | os.PathLike, domain: str, split: str) -> Path:
    """``<root>/manifests/<domain>_<split>.csv`` (whether or not it exists).

    >>> manifest_path("s", "adult", "test").as_posix()
    's/manifests/adult_test.csv'
    """
    return Path(root) / "manifests" / f"{domain}_{split}.csv"


@dataclass
class StreamInfo:
    """What ``<root>/stream.json`` describes.

    Attributes
    ----------
    root : Path
        The stream folder; manifests' ``wav`` paths are relative to it.
    name : str
    domains : list of str
        In stream order (one Avalanche experience each).
    splits : list of str
    sample_rate : int
    config : dict
        How the stream was made (generator config or preparer arguments).
    hours : dict
        ``hours[domain][split]`` of audio, from the manifests' durations.
    resample : bool
        Whether its audio files may be at other rates and are to be resampled to
        ``sample_rate`` when read (corpus streams); False: another rate is an error.

    Example
    -------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = (root / STREAM_FILE).write_text('{"name": "s", "domains": ["adult", "child"]}')
    >>> info = StreamInfo.load(root)
    >>> info.domains, info.splits, info.sample_rate, info.resample
    (['adult', 'child'], ['train', 'valid', 'test'], 16000, False)
    >>> info.manifest("teen", "test")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cl_ssvdo.data.stream.StreamError: ...: unknown domain 'teen' (domains: ['adult', 'child'])
    """

    root: Path
    name: str
    domains: list[str]
    splits: list[str] = field(default_factory=lambda: list(DEFAULT_SPLITS))
    sample_rate: int = 16000
    config: dict[str, Any] = field(default_factory=dict)
    hours: dict[str, dict[str, float]] = field(default_factory=dict)
    resample: bool = False

    @classmethod
    def load(cls, root: str | os.PathLike) -> StreamInfo:
        """Read ``<root>/stream.json``; raises :class:`StreamError` naming the file and field."""
        root = Path(root)
        path = root / STREAM_FILE
        if not path.is_file():
            raise StreamError(f"{path}: no stream.json (not a stream folder)")
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise StreamError(f"{path}: invalid JSON: {err}") from err
        if not isinstance(meta, dict):
            raise StreamError(f"{path}: expected a JSON object, got {type(meta).__name__}")
        for key in ("name", "domains"):
            if key not in meta:
                raise StreamError(f"{path}: missing field {key!r}")
        if not isinstance(meta["domains"], list) or not meta["domains"]:
            raise StreamError(f"{path}: field 'domains' must be a non-empty list")
        try:
            sample_rate = int(meta.get("sample_rate", 16000))
        except (TypeError, ValueError):
            raise StreamError(
                f"{path}: field 'sample_rate' is not an integer: {meta['sample_rate']!r}"
            ) from None
        if not isinstance(meta.get("resample", False), bool):
            raise StreamError(f"{path}: field 'resample' must be true or false")
        return cls(
            root=root,
            name=str(meta["name"]),
            domains=[str(d) for d in meta["domains"]],
            splits=[str(s) for s in meta.get("splits", DEFAULT_SPLITS)],
            sample_rate=sample_rate,
            config=dict(meta.get("config", {})),
            hours={d: dict(v) for d, v in meta.get("hours", {}).items()},
            resample=meta.get("resample", False),
        )

    def manifest(self, domain: str, split: str) -> Path:
        """Path of ``manifests/<domain>_<split>.csv``; raises if unknown or missing."""
        if domain not in self.domains:
            raise StreamError(f"{self.root}: unknown domain {domain!r} (domains: {self.domains})")
        if split not in self.splits:
            raise StreamError(f"{self.root}: unknown split {split!r} (splits: {self.splits})")
        path = manifest_path(self.root, domain, split)
        if not path.is_file():
            raise StreamError(f"{path}: manifest for domain {domain!r}, split {split!r} is missing")
        return path

    def total_hours(self) -> float:
        """Hours of audio over every domain and split."""
        return sum(h for per_split in self.hours.values() for h in per_split.values())

    def to_json(self) -> dict[str, Any]:
        """The ``stream.json`` content (``resample`` only when set, so older files stay equal)."""
        data: dict[str, Any] = {
            "name": self.name,
            "domains": list(self.domains),
            "splits": list(self.splits),
            "sample_rate": self.sample_rate,
            "config": self.config,
            "hours": self.hours,
        }
        if self.resample:
            data["resample"] = True
        return data


def stream_resamples(manifest: str | os.PathLike) -> bool:
    """Whether the stream a manifest belongs to (``stream.json`` in its stream root, see
    :func:`~cl_ssvdo.data.manifest.default_root`) asks for resampling; False for a manifest
    outside any stream.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = (root / STREAM_FILE).write_text('{"name": "s", "domains": ["a"], "resample": true}')
    >>> stream_resamples(root / "manifests" / "a_test.csv"), stream_resamples(root.parent / "x.csv")
    (True, False)
    """
    from .manifest import default_root

    root = default_root(manifest)
    if not (root / STREAM_FILE).is_file():
        return False
    return StreamInfo.load(root).resample
