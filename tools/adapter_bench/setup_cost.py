"""Set-up cost: SSVD-O injection of every target against one thin SVD of the same weights
(part of every stack's report; alone with ``python -m tools.adapter_bench --setup-only``).

Timed interleaved (like the train steps), each figure the statistic over ``repeats`` rounds:

- ``ssvdo``: ``apply_adapter(deepcopy(base), "ssvdo", ...)`` on the default route ("auto"),
  minus ``copy`` (the deepcopy alone);
- ``ssvdo_randomized``: the same under ``decompose.use_route("randomized")`` (opt-in route,
  an approximation where the spectrum has no gap at a: ``cl_ssvdo.ssvdo.randomized``);
- ``full_svd``: ``torch.linalg.svd(A, full_matrices=False)`` of every weight in its tall
  orientation A;
- ``complement``: one float32 ``geqrf`` of each weight with an outer rank, what a separate
  Householder QR costs (the "auto" route shares it with the triplets).

>>> from cl_ssvdo.baselines import resolve_targets
>>> from tools.adapter_bench.shapes import FFStack
>>> base = FFStack(8, 32, 1)
>>> alloc = [(0.5, 2), (0.5, 2)]
>>> cost = setup_cost(base, resolve_targets(base, TARGETS), alloc, torch.device("cpu"), 1)
>>> sorted(cost["seconds"]), cost["routes"]
(['complement', 'full_svd', 'ssvdo', 'ssvdo_randomized'], ['qr-float64'])
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from cl_ssvdo import budget
from cl_ssvdo.baselines import apply_adapter
from cl_ssvdo.ssvdo.decompose import tall, use_route
from tools.adapter_bench.shapes import TARGETS, StackShape, build_stack
from tools.adapter_bench.timing import load_average, median_time


def setup_cost(
    base: nn.Module,
    names: Sequence[str],
    allocation: Any,
    device: torch.device,
    repeats: int,
    stat: Callable[[Sequence[float]], float] = statistics.median,
) -> dict[str, Any]:
    """Seconds of each part (module docstring), ratios to ``full_svd`` and the routes taken.

    Arguments
    ---------
    base : nn.Module
        The frozen stack; ``names`` its target ``nn.Linear`` modules (in ``TARGETS`` order).
    allocation : Any
        Per-layer SSVD-O settings for ``apply_adapter`` (``budget.allocate``'s result).
    repeats : int
        Rounds; each round times every part once.

    Returns
    -------
    dict
        ``seconds`` (part -> s), ``vs_full_svd`` (part -> ratio), ``routes`` (sorted route
        names of the "auto" set-up: ``TopFactors.route``).
    """
    weights = [base.get_submodule(n).weight.detach() for n in names]
    model = copy.deepcopy(base)
    handle = apply_adapter(model, "ssvdo", list(TARGETS), allocation=allocation)
    layers = [model.get_submodule(n) for n in handle.targets]
    outer = [layer.outer_rank > 0 for layer in layers]

    def inject() -> None:
        apply_adapter(copy.deepcopy(base), "ssvdo", list(TARGETS), allocation=allocation)

    def randomized() -> None:
        with use_route("randomized"):
            inject()

    def complements() -> None:
        for w, has_outer in zip(weights, outer, strict=True):  # handle.targets == names
            if has_outer:
                torch.geqrf(w.float())

    def full_svd() -> None:
        # Tall orientation (same factors): LAPACK's SVD of a wide matrix is several times
        # slower here and would flatter the comparison.
        for w in weights:
            torch.linalg.svd(tall(w), full_matrices=False)

    timers: dict[str, Callable[[], Any]] = {
        "copy": lambda: copy.deepcopy(base),
        "ssvdo": inject,
        "ssvdo_randomized": randomized,
        "complement": complements,
        "full_svd": full_svd,
    }
    times: dict[str, list[float]] = {k: [] for k in timers}
    for _ in range(max(1, repeats)):
        for key, fn in timers.items():
            times[key].append(median_time(fn, device, 0, 1, stat))
    seconds = {k: stat(v) for k, v in times.items()}
    copy_s = seconds.pop("copy")
    for key in ("ssvdo", "ssvdo_randomized"):
        seconds[key] = max(seconds[key] - copy_s, 0.0)
    routes = sorted({layer.decomposition_route for layer in layers})
    return {
        "seconds": seconds,
        "vs_full_svd": {k: v / seconds["full_svd"] for k, v in seconds.items()},
        "routes": routes,
    }


def stack_setup_cost(
    shape: StackShape,
    *,
    budget_params: int | None,
    lora_rank: int,
    default_share: float,
    repeats: int,
    device: torch.device,
    seed: int,
    stat: Callable[[Sequence[float]], float] = statistics.median,
) -> dict[str, Any]:
    """``setup_cost`` of one stack at the default share of its budget (``--setup-only``):
    the stack built as ``bench_stack`` builds it (same seed, same allocation)."""
    load_before = load_average()
    base, names, shapes, budget_params = build_stack(shape, device, seed, budget_params, lora_rank)
    alloc = budget.allocate(shapes, budget_params, default_share)
    cost = setup_cost(base, names, alloc, device, repeats, stat)
    return {
        "shape": shape.__dict__,
        "budget": budget_params,
        "default_share": default_share,
        "allocation": alloc,
        "load_average": {"before": load_before, "after": load_average()},
        **cost,
    }


def format_setup(result: dict[str, Any]) -> str:
    """One Markdown table row of ``stack_setup_cost``'s result (header: ``SETUP_HEADER``)."""
    s, sec, q = result["shape"], result["seconds"], result["vs_full_svd"]
    load = result["load_average"]
    return (
        f"| {s['name']} ({s['blocks']} x {s['d']}->{s['ffn']}->{s['d']}) | "
        f"{'+'.join(result['routes'])} | {1e3 * sec['ssvdo']:.0f} | {1e3 * sec['full_svd']:.0f} | "
        f"**{q['ssvdo']:.2f}** | {q['ssvdo_randomized']:.2f} | {q['complement']:.2f} | "
        f"{load['before']} / {load['after']} |"
    )


SETUP_HEADER = (
    "| stack | routes | set-up ms | thin SVD ms | set-up / SVD | randomised / SVD | "
    "QR of outer layers / SVD | load before / after |\n|---|---|---:|---:|---:|---:|---:|---|"
)
