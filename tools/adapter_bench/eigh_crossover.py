"""Where the partial ``syevr`` of ``cl_ssvdo.ssvdo.partial_eigh`` beats torch's full ``eigh``.

``python -m tools.adapter_bench.eigh_crossover [--sizes 512,1024] [--shares 0.1,0.3]``
prints, per matrix size n and share b / n, the time of ``syevr`` for the top b eigenpairs
divided by the time of ``torch.linalg.eigh`` (all pairs), both on one thread, float32, on the
Gram matrix of a random (n + 5) x n matrix; min of ``--repeats``. Values below 1 favour the
partial route; ``PARTIAL_MIN_SIZE`` and ``PARTIAL_MAX_SHARE`` were set from this table
(docs/adapter-speed.md).

>>> rows = crossover([16], [0.25], repeats=1)
>>> rows[0]["n"], rows[0]["b"], rows[0]["ratio"] > 0
(16, 4, True)
"""

from __future__ import annotations

import argparse
import functools
import os

import torch
from threadpoolctl import threadpool_limits

from cl_ssvdo.ssvdo.partial_eigh import syevr_top
from cl_ssvdo.ssvdo.serial import one_intra_op_thread

from .timing import median_time

__all__ = ["crossover", "main"]


def crossover(sizes: list[int], shares: list[float], repeats: int = 5) -> list[dict]:
    """One row per (n, share): n, b, ms of ``torch.linalg.eigh``, ms of ``syevr``, ratio."""
    cpu = torch.device("cpu")
    rows = []
    with one_intra_op_thread(), threadpool_limits(limits=1, user_api="blas"):
        for n in sizes:
            A = torch.randn(n + 5, n, generator=torch.Generator().manual_seed(n))
            gram = A.T @ A
            full = median_time(functools.partial(torch.linalg.eigh, gram), cpu, 1, repeats, min)
            for share in shares:
                b = max(1, min(n, round(share * n)))
                run = functools.partial(syevr_top, gram, b)
                part = median_time(run, cpu, 1, repeats, min)
                rows.append(
                    {"n": n, "b": b, "full_ms": 1e3 * full, "partial_ms": 1e3 * part,
                     "ratio": part / full}
                )  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> None:
    """Print the crossover table as markdown."""
    parser = argparse.ArgumentParser(prog="python -m tools.adapter_bench.eigh_crossover")
    parser.add_argument("--sizes", default="144,384,512,768,1024,2048")
    parser.add_argument("--shares", default="0.1,0.2,0.3,0.4,0.5,0.75")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    sizes = [int(v) for v in args.sizes.split(",")]
    shares = [float(v) for v in args.shares.split(",")]
    print(
        f"partial syevr / full eigh, float32, 1 thread, min of {args.repeats}; "
        f"load average {os.getloadavg()[0]:.2f}\n"
    )
    rows = crossover(sizes, shares, args.repeats)
    print("| n | eigh ms | " + " | ".join(f"b = {s} n" for s in shares) + " |")
    print("|---:|---:|" + "---:|" * len(shares))
    for n in sizes:
        mine = [r for r in rows if r["n"] == n]
        cells = " | ".join(f"{r['ratio']:.2f}" for r in mine)
        print(f"| {n} | {mine[0]['full_ms']:.1f} | {cells} |")


if __name__ == "__main__":
    main()
