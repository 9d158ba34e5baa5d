"""``cl-ssvdo demo``: the README's main command.

Generates the small stream (cached), pretrains the base model (or reuses it), runs SSVD-O and
LoRA at matched budgets over adult -> child -> accent as one sweep (a parent MLflow run with two
children), and returns both WER matrices and the comparison as text.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from experiments.results import format_matrix
from experiments.sweep import run_sweep

__all__ = ["base_lines", "run_demo"]


def base_lines(results: Sequence[Any]) -> list[str]:
    """One line per base model the runs (``RunResult``) used: folder and fingerprints."""
    from cl_ssvdo.asr.fingerprint import short
    from experiments.run_dir import RunDir

    bases = {}
    for result in results:
        state = RunDir(result.run_dir).state()
        sha = state.get("base_weights_sha")
        bases[(state.get("base_model", "?"), sha)] = state.get("base_stream_sha")
    return [
        f"base model {folder}: weights sha256 {short(sha)}, stream sha256 {short(stream)}"
        for (folder, sha), stream in sorted(bases.items(), key=str)
    ]


def run_demo(
    config: Mapping[str, Any],
    *,
    tracking_uri: str | None = None,
    progress: bool = True,
    overrides: Sequence[str] = (),
    source: str | None = None,
    fresh: bool = False,
) -> str:
    """Run the demo sweep and return the text to print."""
    started = time.perf_counter()
    result = run_sweep(
        config,
        tracking_uri=tracking_uri,
        progress=progress,
        overrides=overrides,
        source=source,
        fresh=fresh,
    )
    lines = []
    for child in result.children:
        lines.append(format_matrix(child.wer, child.domains, f"WER (%) of {child.name}"))
        trainable = max(child.trainable.values(), default=0)
        lines.append(f"  trainable parameters per experience: {trainable:,}\n")
    lines.append("Comparison (final metrics; WER points; BWT < 0 means forgetting):")
    lines.append(result.table_text)
    lines += ["", *base_lines(result.children)]
    lines.append(
        f"\nparent run {result.parent_run_id}; files in {result.folder}; "
        f"{(time.perf_counter() - started) / 60:.1f} min. Review: cl-ssvdo ui"
    )
    return "\n".join(lines)
