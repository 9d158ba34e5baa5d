"""Would padding SSVD-O's component count a to a multiple of 16 pay off on the CPU?

``python -m tools.adapter_bench.width_alignment [--widths 143,287] [--outer-rank 27]``
times one training call of :func:`cl_ssvdo.ssvdo.forward.hybrid_linear` (forward and backward,
``recompute=True``, float32, one thread) on an m x n up-projection at each width a and at a
rounded up to the next multiple of 16, interleaved round-robin so that load on the machine hits
both alike, and prints the median times and padded / unpadded. Thin GEMMs whose width is a
multiple of 16 run 20-30 % faster in OpenBLAS/MKL; this measures what that is worth per step,
where W' = W0 + dW and the frozen-size products dominate (docs/adapter-speed.md).

>>> rows = compare_widths([5], tokens=8, m=32, n=16, outer_rank=2, repeats=1)
>>> rows[0]["a"], rows[0]["padded"], rows[0]["ratio"] > 0
(5, 16, True)
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch

from cl_ssvdo.ssvdo.forward import hybrid_linear
from cl_ssvdo.ssvdo.serial import one_intra_op_thread

from .timing import load_average

__all__ = ["compare_widths", "main"]


def _training_call(x: torch.Tensor, weight: torch.Tensor, a: int, outer_rank: int) -> Callable:
    m, n = weight.shape
    gen = torch.Generator().manual_seed(a)
    U = torch.linalg.qr(torch.randn(m, a, generator=gen))[0]
    V = torch.linalg.qr(torch.randn(n, a, generator=gen))[0]
    core = torch.zeros(a, a, requires_grad=True)
    outer_left = torch.randn(m, outer_rank, generator=gen).requires_grad_(True)
    core_outer = torch.zeros(outer_rank, a, requires_grad=True)
    x = x.clone().requires_grad_(True)

    def call() -> None:
        y = hybrid_linear(x, weight, None, U, core, outer_left, core_outer, V, recompute=True)
        y.sum().backward()

    return call


def compare_widths(
    widths: list[int],
    tokens: int = 2048,
    m: int = 4096,
    n: int = 1024,
    outer_rank: int = 27,
    repeats: int = 9,
) -> list[dict]:
    """One row per width a: a, the padded width, median ms of each, padded / unpadded."""
    with one_intra_op_thread():
        gen = torch.Generator().manual_seed(0)
        weight = torch.randn(m, n, generator=gen) * n**-0.5
        x = torch.randn(tokens, n, generator=gen)
        pairs = {a: (a, min(16 * math.ceil(a / 16), n)) for a in widths}
        calls = {w: _training_call(x, weight, w, outer_rank) for p in pairs.values() for w in p}
        times: dict[int, list[float]] = {w: [] for w in calls}
        for call in calls.values():
            call()  # warm-up
        for _ in range(repeats):
            for w, call in calls.items():
                start = time.perf_counter()
                call()
                times[w].append(time.perf_counter() - start)
    rows = []
    for a, (plain, padded) in pairs.items():
        plain_ms = 1e3 * statistics.median(times[plain])
        padded_ms = 1e3 * statistics.median(times[padded])
        rows.append(
            {"a": a, "padded": padded, "plain_ms": plain_ms, "padded_ms": padded_ms,
             "ratio": padded_ms / plain_ms}
        )  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> None:
    """Print the comparison as markdown."""
    parser = argparse.ArgumentParser(prog="python -m tools.adapter_bench.width_alignment")
    parser.add_argument("--widths", default="143,287,431")
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--shape", default="4096x1024", help="m x n of the adapted layer")
    parser.add_argument("--outer-rank", type=int, default=27)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(argv)
    m, n = (int(v) for v in args.shape.split("x"))
    widths = [int(v) for v in args.widths.split(",")]
    print(
        f"hybrid training call, {m}x{n}, {args.tokens} tokens, l = {args.outer_rank}, float32, "
        f"1 thread, median of {args.repeats} interleaved; load average {load_average()}\n"
    )
    print("| a | ms | padded to | ms | padded / a |")
    print("|---:|---:|---:|---:|---:|")
    for r in compare_widths(widths, args.tokens, m, n, args.outer_rank, args.repeats):
        print(
            f"| {r['a']} | {r['plain_ms']:.1f} | {r['padded']} | {r['padded_ms']:.1f} "
            f"| {r['ratio']:.3f} |"
        )


if __name__ == "__main__":
    main()
