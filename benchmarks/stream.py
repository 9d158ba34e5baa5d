"""A stream on disk (``stream.json`` + per-domain manifests) and the Avalanche benchmark over it.

Layout (docs/architecture.md)::

    <root>/stream.json                    name, ordered domains, splits, sample_rate, config, hours
    <root>/manifests/<domain>_<split>.csv ID,duration,wav,spk_id,wrd,domain
    <root>/audio/...                      16 kHz mono 16-bit wav (real corpora may keep their own
                                          files; the dataset resamples)

Depends on avalanche, torch and the rest of ``benchmarks``; never on models or MLflow.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.manifest import ManifestError, read_manifest

__all__ = ["StreamError", "StreamInfo", "make_benchmark", "mark_base_domains", "write_stream_json"]

STREAM_FILE = "stream.json"
DEFAULT_SPLITS = ("train", "valid", "test")


class StreamError(ValueError):
    """A stream folder, domain or split is missing or malformed."""


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
    """

    root: Path
    name: str
    domains: list[str]
    splits: list[str] = field(default_factory=lambda: list(DEFAULT_SPLITS))
    sample_rate: int = 16000
    config: dict[str, Any] = field(default_factory=dict)
    hours: dict[str, dict[str, float]] = field(default_factory=dict)

    @classmethod
    def load(cls, root: str | os.PathLike) -> StreamInfo:
        """Read ``<root>/stream.json``; raises :class:`StreamError` naming the file and field."""
        root = Path(root)
        path = root / STREAM_FILE
        if not path.is_file():
            raise StreamError(f"{path}: no stream.json (not a stream folder)")
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise StreamError(f"{path}: invalid JSON: {err}") from err
        for key in ("name", "domains"):
            if key not in meta:
                raise StreamError(f"{path}: missing field {key!r}")
        if not isinstance(meta["domains"], list) or not meta["domains"]:
            raise StreamError(f"{path}: field 'domains' must be a non-empty list")
        return cls(
            root=root,
            name=str(meta["name"]),
            domains=[str(d) for d in meta["domains"]],
            splits=[str(s) for s in meta.get("splits", DEFAULT_SPLITS)],
            sample_rate=int(meta.get("sample_rate", 16000)),
            config=dict(meta.get("config", {})),
            hours={d: dict(v) for d, v in meta.get("hours", {}).items()},
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
        return sum(h for per_split in self.hours.values() for h in per_split.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "domains": list(self.domains),
            "splits": list(self.splits),
            "sample_rate": self.sample_rate,
            "config": self.config,
            "hours": self.hours,
        }

    def save(self) -> Path:
        """Write ``stream.json`` atomically."""
        path = self.root / STREAM_FILE
        tmp = path.with_name(STREAM_FILE + ".tmp")
        tmp.write_text(
            json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n", encoding="utf-8"
        )
        os.replace(tmp, path)
        return path


def manifest_path(root: str | os.PathLike, domain: str, split: str) -> Path:
    return Path(root) / "manifests" / f"{domain}_{split}.csv"


def manifest_hours(path: str | os.PathLike) -> float:
    return round(sum(r.duration for r in read_manifest(path)) / 3600.0, 4)


def write_stream_json(
    root: str | os.PathLike,
    name: str,
    domains: Sequence[str],
    splits: Sequence[str] = DEFAULT_SPLITS,
    config: Mapping[str, Any] | None = None,
    merge: bool = False,
) -> StreamInfo:
    """Write ``<root>/stream.json`` with hours computed from the manifests present.

    With ``merge=True`` an existing stream.json keeps its domains (new ones are appended in the
    given order), splits and config (the new config is stored under ``config["sources"]``), so
    several preparers can build one stream (e.g. LibriSpeech adult + MyST child).
    """
    root = Path(root)
    domains = list(domains)
    splits = list(splits)
    cfg: dict[str, Any] = dict(config or {})
    if merge and (root / STREAM_FILE).is_file():
        old = StreamInfo.load(root)
        domains = old.domains + [d for d in domains if d not in old.domains]
        splits = old.splits + [s for s in splits if s not in old.splits]
        # re-running a preparer replaces its earlier record instead of piling up copies
        sources = [
            s
            for s in old.config.get("sources", [])
            if not (s.get("corpus") == cfg.get("corpus") and s.get("domains") == cfg.get("domains"))
        ]
        sources.append(cfg)
        cfg = {"sources": sources}
        name = old.name
    elif merge:
        cfg = {"sources": [cfg]}
    hours: dict[str, dict[str, float]] = {}
    for domain in domains:
        for split in splits:
            path = manifest_path(root, domain, split)
            if path.is_file():
                hours.setdefault(domain, {})[split] = manifest_hours(path)
    info = StreamInfo(root=root, name=name, domains=domains, splits=splits, config=cfg, hours=hours)
    info.save()
    return info


def make_benchmark(
    info: StreamInfo | str | os.PathLike,
    splits: Iterable[str] = DEFAULT_SPLITS,
    domains: Sequence[str] | None = None,
    sample_rate: int | None = None,
    exclude_ids: Mapping[str, Iterable[str]] | None = None,
    max_utterances: int | None = None,
    validate: str | None = None,
    skipped_dir: str | Path | None = None,
    charset: Iterable[str] | str | None = None,
):
    """An Avalanche benchmark with one experience per domain, in stream order, per split.

    Built with ``benchmark_from_datasets``; each experience's dataset is an
    ``AvalancheDataset([ManifestDataset], collate_fn=collate_speech)`` whose items are the base
    tuples ``(wav[T], wrd, utt_id)`` unchanged (no task labels or targets are attached). Streams
    are named after the splits: ``train_stream``, ``valid_stream``, ``test_stream``. Each
    experience also carries ``.domain`` and ``.split``; the benchmark carries ``.domains`` and
    ``.stream_info``.

    Arguments
    ---------
    info : StreamInfo or path to the stream root
    splits : which splits become streams (each must have a manifest for every domain).
    domains : a subset/reordering of ``info.domains`` (default: all, in stream order).
    sample_rate : audio rate of the items (default: the stream's).
    exclude_ids : ``{manifest path or "<domain>_<split>": ids}`` to leave out, e.g. from
        :func:`benchmarks.validate.validate_stream` with ``policy="skip"``.
    max_utterances : keep at most the first N utterances of each experience (smoke tests).
    validate : None (no checks), "error" or "skip": run
        :func:`benchmarks.validate.validate_manifest` on every manifest first with this policy
        (and ``charset``); skipped rows are left out, listed in ``<manifest>.skipped.tsv`` in
        ``skipped_dir`` (default: next to the manifest) and in ``bench.skipped_rows``.
    """
    from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
    from avalanche.benchmarks.utils import AvalancheDataset

    from benchmarks.dataset import ManifestDataset, collate_speech

    if not isinstance(info, StreamInfo):
        info = StreamInfo.load(info)
    splits = list(splits)
    if not splits:
        raise StreamError("make_benchmark: 'splits' is empty")
    order = list(domains) if domains is not None else list(info.domains)
    for d in order:
        if d not in info.domains:
            raise StreamError(f"make_benchmark: unknown domain {d!r} (stream has {info.domains})")
    rate = int(sample_rate or info.sample_rate)
    excluded = {str(k): set(v) for k, v in (exclude_ids or {}).items()}
    skipped_rows: list[dict[str, str]] = []
    if validate is not None:
        from benchmarks.validate import validate_manifest

        for split in splits:
            for domain in order:
                report = validate_manifest(
                    info.manifest(domain, split),
                    charset=charset,
                    policy=validate,
                    root=info.root,
                    skipped_dir=skipped_dir,
                )
                excluded.setdefault(f"{domain}_{split}", set()).update(report.skipped_ids)
                skipped_rows += [
                    {
                        "manifest": f"{domain}_{split}",
                        "id": r.row_id,
                        "field": r.field,
                        "reason": r.reason,
                    }
                    for r in report.skipped
                ]

    streams: dict[str, list] = {}
    for split in splits:
        datasets = []
        for domain in order:
            path = info.manifest(domain, split)
            skip = excluded.get(str(path), set()) | excluded.get(f"{domain}_{split}", set())
            base = ManifestDataset(path, root=info.root, sample_rate=rate, exclude_ids=skip)
            if len(base) == 0:
                raise ManifestError(path, "no utterances left (empty manifest or all excluded)")
            if max_utterances is not None:
                base.rows = base.rows[: int(max_utterances)]
            datasets.append(AvalancheDataset([base], collate_fn=collate_speech))
        streams[split] = datasets
    bench = benchmark_from_datasets(**streams)
    for split in splits:
        for exp, domain in zip(getattr(bench, f"{split}_stream"), order, strict=True):
            exp.domain = domain
            exp.split = split
    bench.domains = order
    bench.stream_info = info
    bench.skipped_rows = skipped_rows
    return bench


def mark_base_domains(bench, base_domains: Sequence[str] | None):
    """Mark the leading ``base_domains`` of ``bench`` as evaluate-only (a pretrained base's own
    domain, e.g. adult speech for Whisper): their test experiences stay (forgetting is measured
    on them), their training experiences get ``evaluate_only = True`` and are never trained on.

    They must be the first domains of the benchmark, so the WER matrix keeps its layout (row
    ``i`` after experience ``i``; an evaluate-only experience's row equals the row before it).
    Sets ``bench.base_domains``; returns ``bench``.
    """
    base = list(base_domains or [])
    order = list(bench.domains)
    if base != order[: len(base)]:
        raise StreamError(
            f"base_domains {base} must be the first domains of the stream, in order ({order})"
        )
    if len(base) == len(order):
        raise StreamError(f"base_domains {base}: no domain is left to train on ({order})")
    for exp in getattr(bench, "train_stream", []):
        exp.evaluate_only = exp.domain in base
    bench.base_domains = base
    return bench
