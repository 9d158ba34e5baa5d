"""Generate the synthetic stream: plan every utterance from seeded RNGs, synthesise in parallel.

Planning is pure Python and deterministic: each utterance gets its own ``random.Random`` seeded
from ``sha256(seed, domain, split, voice, index)``, which picks its sentence and its transform
parameters. Test sentences are drawn first, then valid sentences (avoiding test ones), then
training sentences (avoiding both). Synthesis runs in ``workers`` threads (each drives engine
subprocesses), with a tqdm bar; each wav appears atomically, so a killed run resumes where it
stopped. ``stream.json`` is written last and marks the cache entry complete.

Depends on soundfile and cl_ssvdo.progress (tqdm); never on torch models.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sys
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import soundfile as sf

from benchmarks.stream import write_stream_json
from benchmarks.synthetic.engines import SynthesisJob, check_voices, synthesize_batch
from benchmarks.synthetic.grammar import sentence
from benchmarks.synthetic.presets import GENERATOR_VERSION, SyntheticConfig
from benchmarks.synthetic.transforms import domain_transform
from benchmarks.synthetic.voices import Voice, domain_spec
from cl_ssvdo.data import ManifestRow, StreamInfo, manifest_path, write_manifest

__all__ = ["PlannedUtterance", "generate_stream", "plan_stream", "stream_dir"]

SPLITS = ("train", "valid", "test")
SAMPLE_RATE = 16000
BATCH_SIZE = 16


@dataclass(frozen=True)
class PlannedUtterance:
    utt_id: str
    domain: str
    split: str
    voice: Voice
    text: str
    engine_options: tuple[str, ...]
    effects: tuple[str, ...]

    @property
    def rel_wav(self) -> str:
        return f"audio/{self.domain}/{self.split}/{self.utt_id}.wav"


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _voices_for(config: SyntheticConfig, domain: str) -> dict[str, tuple[tuple[Voice, ...], int]]:
    spec = domain_spec(domain)
    n_train, n_valid, n_test, max_train, max_test = config.sizes(spec.kind)
    train_voices = spec.train[:max_train] if max_train is not None else spec.train
    test_voices = spec.test[:max_test] if max_test is not None else spec.test
    return {
        "train": (train_voices, n_train),
        "valid": (train_voices, n_valid),
        "test": (test_voices, n_test),
    }


def plan_stream(config: SyntheticConfig | Mapping[str, Any] | str) -> list[PlannedUtterance]:
    """Every utterance of the stream (deterministic in the config and seed)."""
    config = SyntheticConfig.from_any(config)
    held_out: set[str] = set()
    planned: list[PlannedUtterance] = []
    for split in ("test", "valid", "train"):  # held-out sentences first
        avoid = set(held_out)
        for domain in config.domains:
            kind = domain_spec(domain).kind
            voices, count = _voices_for(config, domain)[split]
            for voice in voices:
                for i in range(count):
                    rng = _rng(config.seed, domain, split, voice.id, i)
                    text = sentence(rng)
                    while text in avoid:
                        text = sentence(rng)
                    if split != "train":
                        held_out.add(text)
                    options, effects = domain_transform(kind, voice, rng)
                    utt_id = f"{domain}-{split}-{voice.id}-{i:04d}"
                    planned.append(
                        PlannedUtterance(utt_id, domain, split, voice, text, options, effects)
                    )
    return planned


def stream_dir(
    config: SyntheticConfig | Mapping[str, Any] | str, cache_dir: str | os.PathLike
) -> Path:
    """``<cache_dir>/<name>-<preset>-<config hash>``."""
    config = SyntheticConfig.from_any(config)
    return Path(cache_dir) / f"{config.name}-{config.preset}-{config.digest()}"


def _is_complete(root: Path, config: SyntheticConfig) -> bool:
    if not (root / "stream.json").is_file():
        return False
    return all(manifest_path(root, d, s).is_file() for d in config.domains for s in SPLITS)


def _batches(todo: list[PlannedUtterance]) -> list[list[PlannedUtterance]]:
    groups: dict[tuple[str, str, str], list[PlannedUtterance]] = {}
    for utt in todo:
        groups.setdefault((utt.domain, utt.split, utt.voice.id), []).append(utt)
    return [g[i : i + BATCH_SIZE] for g in groups.values() for i in range(0, len(g), BATCH_SIZE)]


def _synthesize(root: Path, todo: list[PlannedUtterance], workers: int, progress: bool) -> None:
    from cl_ssvdo.progress import progress_bar

    work_dir = root / ".work"
    batches = _batches(todo)
    bar = progress_bar(total=len(todo), unit="utt", desc="synthesising", disable=not progress)

    def run(batch: list[PlannedUtterance]) -> int:
        jobs = [
            SynthesisJob(u.text, u.voice, root / u.rel_wav, u.engine_options, u.effects)
            for u in batch
        ]
        synthesize_batch(jobs, work_dir, SAMPLE_RATE)
        return len(batch)

    pool = ThreadPoolExecutor(max_workers=max(1, int(workers)))
    try:
        futures = [pool.submit(run, b) for b in batches]
        for fut in as_completed(futures):
            bar.update(fut.result())  # re-raises the first failure
    finally:
        # On failure or Ctrl-C: drop queued batches; finished wavs stay for the resume.
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    shutil.rmtree(work_dir, ignore_errors=True)


def _rows(root: Path, planned: list[PlannedUtterance]) -> dict[tuple[str, str], list[ManifestRow]]:
    rows: dict[tuple[str, str], list[ManifestRow]] = {}
    for utt in planned:
        info = sf.info(str(root / utt.rel_wav))
        duration = info.frames / info.samplerate
        rows.setdefault((utt.domain, utt.split), []).append(
            ManifestRow(utt.utt_id, duration, utt.rel_wav, utt.voice.id, utt.text, utt.domain)
        )
    return rows


def _voice_table(config: SyntheticConfig) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for domain in config.domains:
        per_split = _voices_for(config, domain)
        train_ids = {v.id for v in per_split["train"][0]}
        test_ids = {v.id for v in per_split["test"][0]}
        table[domain] = {
            "kind": domain_spec(domain).kind,
            "description": domain_spec(domain).description,
            **{s: [v.id for v in per_split[s][0]] for s in SPLITS},
            "per_voice": {s: per_split[s][1] for s in SPLITS},
            "shared": sorted(train_ids & test_ids),
        }
    return table


def generate_stream(
    config: SyntheticConfig | Mapping[str, Any] | str | None,
    cache_dir: str | os.PathLike,
    workers: int = 2,
    progress: bool = True,
) -> StreamInfo:
    """Generate (or load from cache) the synthetic stream described by ``config``.

    Arguments
    ---------
    config : SyntheticConfig, dict, preset name or None (the ``small`` default stream).
    cache_dir : folder holding one sub-folder per config hash (never in git).
    workers : parallel synthesis threads (each runs engine subprocesses).
    progress : show a tqdm bar and print the hours generated.

    Returns
    -------
    StreamInfo of ``<cache_dir>/<name>-<preset>-<hash>``.

    Example
    -------
    One adult voice, one utterance per split (``{"preset": "tiny"}`` alone gives the 240
    utterances of the test stream, ``None`` the default ``small`` one):

    >>> import tempfile
    >>> tiny = {"domains": ["adult"], "max_train_voices": 1, "max_test_voices": 1,
    ...         "train_per_voice": 1, "valid_per_voice": 1, "test_per_voice": 1}
    >>> with tempfile.TemporaryDirectory() as cache:
    ...     info = generate_stream(tiny, cache, workers=1, progress=False)
    ...     generate_stream(tiny, cache, progress=False).root == info.root  # cached
    True
    >>> info.domains, info.splits
    (['adult'], ['train', 'valid', 'test'])
    """
    config = SyntheticConfig.from_any(config)
    root = stream_dir(config, cache_dir)
    if _is_complete(root, config):
        return StreamInfo.load(root)
    started = time.perf_counter()
    planned = plan_stream(config)
    check_voices({u.voice for u in planned})
    root.mkdir(parents=True, exist_ok=True)
    todo = [u for u in planned if not (root / u.rel_wav).is_file()]
    _synthesize(root, todo, workers, progress)
    for stray in (root / "audio").rglob("*.part.wav"):
        stray.unlink(missing_ok=True)
    for (domain, split), rows in _rows(root, planned).items():
        write_manifest(manifest_path(root, domain, split), rows)
    stream_config = {
        "generator": "benchmarks.synthetic",
        "version": GENERATOR_VERSION,
        **config.to_dict(),
        "hash": config.digest(),
        "voices": _voice_table(config),
    }
    info = write_stream_json(root, config.name, config.domains, SPLITS, stream_config)
    elapsed = time.perf_counter() - started
    (root / "generation.json").write_text(
        json.dumps(
            {
                "utterances_total": len(planned),
                "utterances_synthesised": len(todo),
                "seconds": round(elapsed, 1),
                "workers": workers,
                "hours": round(info.total_hours(), 3),
            },
            indent=2,
        )
        + "\n"
    )
    if progress:
        print(describe(info, len(planned), len(todo), elapsed), file=sys.stderr)
    return info


def describe(info: StreamInfo, n_total: int, n_new: int, seconds: float) -> str:
    """A one-paragraph summary: utterances, seconds and hours per domain and split."""
    lines = [
        f"stream {info.name} at {info.root}: {n_total} utterances ({n_new} synthesised in "
        f"{seconds:.1f} s), {info.total_hours():.2f} h of audio"
    ]
    for domain in info.domains:
        per = info.hours.get(domain, {})
        lines.append(f"  {domain}: " + ", ".join(f"{s} {h:.3f} h" for s, h in per.items()))
    return "\n".join(lines)
