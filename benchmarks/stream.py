"""Writing a stream's ``stream.json`` and the Avalanche benchmark over a stream.

Reading a stream (``StreamInfo``, the layout, manifests, the dataset) is the data contract in
``cl_ssvdo.data``; this module adds what generation, corpus preparation and the continual run
need on top of it.

Depends on avalanche, torch, ``cl_ssvdo.data`` and the rest of ``benchmarks``; never on models
or MLflow.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cl_ssvdo.data import (
    DEFAULT_SPLITS,
    STREAM_FILE,
    ManifestDataset,
    ManifestError,
    StreamError,
    StreamInfo,
    collate_speech,
    manifest_path,
    read_manifest,
)

__all__ = [
    "make_benchmark",
    "manifest_hours",
    "mark_base_domains",
    "save_stream_json",
    "write_stream_json",
]


def save_stream_json(info: StreamInfo) -> Path:
    """Write ``<info.root>/stream.json`` atomically (temporary file + rename)."""
    path = Path(info.root) / STREAM_FILE
    tmp = path.with_name(STREAM_FILE + ".tmp")
    tmp.write_text(json.dumps(info.to_json(), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def manifest_hours(path: str | os.PathLike) -> float:
    """Hours of audio in a manifest (sum of its durations, 4 decimals)."""
    return round(sum(r.duration for r in read_manifest(path)) / 3600.0, 4)


def write_stream_json(
    root: str | os.PathLike,
    name: str,
    domains: Sequence[str],
    splits: Sequence[str] = DEFAULT_SPLITS,
    config: Mapping[str, Any] | None = None,
    merge: bool = False,
    resample: bool = False,
) -> StreamInfo:
    """Write ``<root>/stream.json`` with hours computed from the manifests present.

    ``resample=True`` records that the stream's audio may be at other rates and is resampled
    when read (corpus preparers link native-rate files in place); without it a file at another
    rate is an error when read.

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
        resample = resample or old.resample
    elif merge:
        cfg = {"sources": [cfg]}
    hours: dict[str, dict[str, float]] = {}
    for domain in domains:
        for split in splits:
            path = manifest_path(root, domain, split)
            if path.is_file():
                hours.setdefault(domain, {})[split] = manifest_hours(path)
    info = StreamInfo(
        root=root,
        name=name,
        domains=domains,
        splits=splits,
        config=cfg,
        hours=hours,
        resample=resample,
    )
    save_stream_json(info)
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
    resample: bool | None = None,
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
        ``skipped_dir`` (default: next to the manifest) and in ``bench.skipped_rows``. The
        validator checks the sample rate too (files at another rate pass only when resampling).
    resample : resample audio at another rate than ``sample_rate`` (default: the stream's
        ``resample`` field); otherwise such a file is a ``ManifestError`` naming it and both
        rates. Each dataset counts its resampled items in ``resampled_ids``; up front,
        ``bench.resampled_rows`` holds ``{"<domain>_<split>": rows at another rate}`` (read from
        the headers; empty when not resampling).
    """
    from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
    from avalanche.benchmarks.utils import AvalancheDataset

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
    resample = info.resample if resample is None else bool(resample)
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
                    sample_rate=rate,
                    convert=resample,
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
    resampled_rows: dict[str, int] = {}
    for split in splits:
        datasets = []
        for domain in order:
            path = info.manifest(domain, split)
            skip = excluded.get(str(path), set()) | excluded.get(f"{domain}_{split}", set())
            base = ManifestDataset(
                path, root=info.root, sample_rate=rate, exclude_ids=skip, resample=resample
            )
            if len(base) == 0:
                raise ManifestError(path, "no utterances left (empty manifest or all excluded)")
            if max_utterances is not None:
                base.rows = base.rows[: int(max_utterances)]
            if resample:
                resampled_rows[f"{domain}_{split}"] = len(base.other_rate_ids())
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
    bench.resampled_rows = resampled_rows
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
