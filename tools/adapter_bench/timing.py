"""Wall-clock timing: device sync, the statistic over repeats, the machine's load average.

>>> median_time(lambda: None, torch.device("cpu"), warmup=1, repeats=3) >= 0.0
True
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

STATISTICS: dict[str, Callable[[Sequence[float]], float]] = {
    "median": statistics.median,
    "min": min,
}


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing to wait for on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(
    fn: Callable[[], Any],
    device: torch.device,
    warmup: int,
    repeats: int,
    stat: Callable[[Sequence[float]], float] = statistics.median,
) -> float:
    """``stat`` (median unless ``--stat min``) of ``repeats`` timed calls, in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return stat(times)


def load_average() -> float | None:
    """1-minute load average of the machine (None where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None
