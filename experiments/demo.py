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

__all__ = ["run_demo"]


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
    lines.append(
        f"\nparent run {result.parent_run_id}; files in {result.folder}; "
        f"{(time.perf_counter() - started) / 60:.1f} min. Review: cl-ssvdo ui"
    )
    return "\n".join(lines)
