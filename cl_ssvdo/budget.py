"""Trainable-parameter accounting for SSVD-O and its baselines, and a budget allocator.

Shapes follow ``nn.Linear``: ``m = out_features``, ``n = in_features``, ``r = min(m, n)``.
Counts (per layer, biases frozen unless stated):

=========  ==========================================================================
SSVD-O     ``k(k-1)/2 + k + (m - n) * l_eff``, ``k = round(p * r)``,
           ``l_eff = 0`` if ``m <= n`` else ``min(l, r, m - n)``
SSVD       SSVD-O with ``l = 0``
LoRA       ``r_lora * (m + n)``
DoRA       ``r_lora * (m + n) + m`` (peft's magnitude vector, one per output row)
PiSSA      ``r_lora * (m + n)``
MiCA       ``r_lora * n`` (peft freezes ``B``, the minor left singular vectors; ``A`` trains)
CorDA      ``r_lora * (m + n)``
OSF        ``r * (m + n + 1)``: the bottom ``r`` singular triplets ``U_low`` (m x r),
           ``S_low`` (r), ``V_low`` (r x n) train; peft's ``effective_rank`` (the frozen top
           part) is ``min(m, n) - r``, so ``r <= min(m, n) - 1``
full       ``m * n`` (``+ m`` with the bias)
=========  ==========================================================================

The rank-like methods (:data:`RANK_METHODS`) are matched to a budget by :func:`match_ranks`
(per-layer rank steps of ``m + n``, ``n`` for MiCA, ``m + n + 1`` for OSF; ranks capped at
``min(m, n)``, ``min(m, n) - 1`` for OSF).

``k``, ``l_eff`` and the SSVD-O count are those of :mod:`cl_ssvdo.ssvdo.settings` (the one
place they are defined; ``round`` rounds halves up).

Allocation rule (:func:`allocate`)
----------------------------------
Given layer shapes, a total budget ``B`` and an inner share ``s``:

1. Split. The outer part may spend ``B_out = floor((1 - s) * B)``, the inner part the rest,
   ``B_in = B - B_out``. Only layers with ``m > n`` can take an outer rank; the outer budget is
   shared among them. If no layer has ``m > n`` the whole budget goes to the inner part (a
   ``UserWarning`` says so when ``s < 1``).
2. Outer fill (water-filling). Starting from ``l = 0`` everywhere, repeatedly raise by one the
   outer rank of the eligible layer with the smallest ``l`` (ties: first layer), each step
   costing ``m - n``, until the next step does not fit in ``B_out`` or every layer is capped.
3. Inner fill (water-filling). Starting from ``k = 0``, repeatedly raise by one the inner rank
   of the layer with the smallest ``(k + 1) / r`` (ties: first layer), each step costing
   ``k + 1``, until the next step does not fit in ``B_in`` or every layer has ``k = r``.
4. Each layer gets ``(p, l) = (k / r, l)`` (which rounds back to ``k``).

Both fills follow a fixed order of steps and stop at the first one that does not fit, so every
layer's ``k`` and ``l`` -- and the total -- are non-decreasing in the budget, and the total never
exceeds it. The price is a small unspent remainder: below one outer step (``m - n``) in the
outer part and below one inner step (``k + 1``) in the inner part; the two parts never lend to
each other (that would break monotonicity), so the share is respected strictly.

Example
-------
>>> shapes = [(64, 16), (16, 64)]
>>> alloc = allocate(shapes, budget=300, inner_share=0.5)
>>> alloc
[(0.75, 3), (0.6875, 0)]
>>> total_params(shapes, alloc)
288
"""

from __future__ import annotations

import heapq
import math
import warnings
from collections.abc import Sequence
from typing import Literal

from cl_ssvdo.ssvdo.settings import check_shape, effective_outer_rank, inner_rank, num_parameters

__all__ = [
    "inner_rank",
    "effective_outer_rank",
    "ssvdo_params",
    "ssvd_params",
    "lora_params",
    "dora_params",
    "pissa_params",
    "mica_params",
    "corda_params",
    "osf_params",
    "full_params",
    "method_params",
    "total_params",
    "allocate",
    "match_rank",
    "match_ranks",
    "RANK_METHODS",
    "rank_cap",
]

RankMethod = Literal["lora", "dora", "pissa", "mica", "corda", "osf"]
#: Methods whose size is a per-layer rank (matched to a budget by :func:`match_ranks`).
RANK_METHODS: tuple[str, ...] = ("lora", "dora", "pissa", "mica", "corda", "osf")
Shape = tuple[int, int]


def ssvdo_params(m: int, n: int, inner_ratio: float, outer_rank: int = 0) -> int:
    """SSVD-O trainable parameters of one ``m x n`` layer: ``k(k-1)/2 + k + (m-n) * l_eff``
    (:func:`cl_ssvdo.ssvdo.settings.num_parameters`).

    >>> ssvdo_params(4096, 1024, 0.25, 16)  # k = 256, l = 16
    82048
    """
    return num_parameters(m, n, inner_ratio, outer_rank)


def ssvd_params(m: int, n: int, inner_ratio: float) -> int:
    """SSVD (inner transform only): ``k(k-1)/2 + k``."""
    return ssvdo_params(m, n, inner_ratio, 0)


def _check_rank(rank: int) -> None:
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank: must be an int >= 1, got {rank!r}")


def lora_params(m: int, n: int, rank: int) -> int:
    """LoRA: ``A`` (rank x n) and ``B`` (m x rank)."""
    check_shape(m, n)
    _check_rank(rank)
    return rank * (m + n)


def dora_params(m: int, n: int, rank: int) -> int:
    """DoRA: LoRA plus a magnitude per output row."""
    return lora_params(m, n, rank) + m


def pissa_params(m: int, n: int, rank: int) -> int:
    """PiSSA: same factors as LoRA, initialised from the top-``rank`` SVD."""
    return lora_params(m, n, rank)


def mica_params(m: int, n: int, rank: int) -> int:
    """MiCA (peft ``init_lora_weights="mica"``): ``B`` (m x rank) is set to the left singular
    vectors of the ``rank`` smallest singular values and frozen; only ``A`` (rank x n) trains."""
    check_shape(m, n)
    _check_rank(rank)
    return rank * n


def corda_params(m: int, n: int, rank: int) -> int:
    """CorDA (peft ``init_lora_weights="corda"``): LoRA's factors, initialised from the SVD of
    the weight times the input covariance of calibration data."""
    return lora_params(m, n, rank)


def osf_params(m: int, n: int, rank: int) -> int:
    """OSF (peft's orthogonal subspace fine-tuning) with ``rank`` trainable singular triplets:
    ``U_low`` (m x rank), ``S_low`` (rank), ``V_low`` (rank x n); the top ``min(m, n) - rank``
    directions stay frozen, so ``rank <= min(m, n) - 1``.

    >>> osf_params(64, 16, 6)
    486
    """
    check_shape(m, n)
    _check_rank(rank)
    if rank > min(m, n) - 1:
        raise ValueError(
            f"rank: OSF keeps at least one frozen direction, so rank <= min(m, n) - 1 = "
            f"{min(m, n) - 1} for a {m} x {n} layer, got {rank}"
        )
    return rank * (m + n + 1)


def rank_cap(method: str, m: int, n: int) -> int:
    """The largest rank ``method`` takes on an ``m x n`` layer: ``min(m, n)`` (MiCA and PiSSA
    need it; beyond it LoRA adds no expressiveness), ``min(m, n) - 1`` for OSF."""
    return min(m, n) - 1 if method == "osf" else min(m, n)


def _rank_step(method: str, m: int, n: int) -> int:
    """Parameters one more rank costs on an ``m x n`` layer."""
    return {"mica": n, "osf": m + n + 1}.get(method, m + n)


def full_params(m: int, n: int, bias: bool = False) -> int:
    """Full fine-tuning of the layer's weight (and bias)."""
    check_shape(m, n)
    return m * n + (m if bias else 0)


def method_params(method: str, m: int, n: int, **setting: float | int | bool) -> int:
    """Dispatch by method name; ``setting`` is ``inner_ratio``/``outer_rank``, ``rank`` or ``bias``."""
    funcs = {
        "ssvdo": ssvdo_params,
        "ssvd": ssvd_params,
        "lora": lora_params,
        "dora": dora_params,
        "pissa": pissa_params,
        "mica": mica_params,
        "corda": corda_params,
        "osf": osf_params,
        "full": full_params,
    }
    if method not in funcs:
        raise ValueError(f"method: unknown {method!r}, expected one of {sorted(funcs)}")
    try:
        return funcs[method](m, n, **setting)
    except TypeError as exc:
        raise ValueError(f"method {method!r}: bad settings {setting} ({exc})") from exc


def _check_shapes(shapes: Sequence[Shape]) -> list[Shape]:
    if len(shapes) == 0:
        raise ValueError("shapes: need at least one (out_features, in_features) pair")
    out = []
    for idx, shape in enumerate(shapes):
        try:
            m, n = shape
        except (TypeError, ValueError) as exc:
            raise ValueError(f"shapes[{idx}]: expected (m, n), got {shape!r}") from exc
        try:
            check_shape(m, n)
        except ValueError as exc:
            raise ValueError(f"shapes[{idx}]: {exc}") from exc
        out.append((m, n))
    return out


def _check_budget(budget: int) -> None:
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
        raise ValueError(f"budget: must be an int >= 0, got {budget!r}")


def total_params(shapes: Sequence[Shape], allocation: Sequence[tuple[float, int]]) -> int:
    """SSVD-O parameters of an allocation ``[(p, l), ...]`` over ``shapes``."""
    shapes = _check_shapes(shapes)
    if len(allocation) != len(shapes):
        raise ValueError(
            f"allocation: {len(allocation)} settings for {len(shapes)} shapes (one per layer)"
        )
    return sum(
        ssvdo_params(m, n, p, ol) for (m, n), (p, ol) in zip(shapes, allocation, strict=True)
    )


def _fill(caps: list[int], step_cost, key, budget: int) -> tuple[list[int], int]:
    """Water-filling: raise the counter with the smallest ``key`` until a step does not fit."""
    level = [0] * len(caps)
    heap = [(key(i, 0), i) for i, cap in enumerate(caps) if cap > 0]
    heapq.heapify(heap)
    spent = 0
    while heap:
        _, i = heap[0]
        cost = step_cost(i, level[i])
        if spent + cost > budget:
            break
        heapq.heappop(heap)
        spent += cost
        level[i] += 1
        if level[i] < caps[i]:
            heapq.heappush(heap, (key(i, level[i]), i))
    return level, spent


def allocate(shapes: Sequence[Shape], budget: int, inner_share: float) -> list[tuple[float, int]]:
    """Per-layer ``(inner_ratio, outer_rank)`` spending at most ``budget`` parameters.

    Arguments
    ---------
    shapes : sequence of (int, int)
        ``(out_features, in_features)`` of each layer, in order.
    budget : int
        Total trainable parameters allowed over all layers.
    inner_share : float
        Fraction of the budget for the inner transform, in [0, 1].

    Returns a list aligned with ``shapes``. See the module docstring for the rule.
    Raises ``ValueError`` naming ``budget`` when nothing non-zero fits.
    """
    shapes = _check_shapes(shapes)
    _check_budget(budget)
    if not (isinstance(inner_share, int | float) and 0.0 <= inner_share <= 1.0):
        raise ValueError(f"inner_share: must be a number in [0, 1], got {inner_share!r}")
    outer_caps = [min(n, m - n) if m > n else 0 for m, n in shapes]
    usable = sum(
        min(m, n) * (min(m, n) + 1) // 2 + (m - n) * cap
        for (m, n), cap in zip(shapes, outer_caps, strict=True)
    )
    if budget > usable:
        warnings.warn(
            f"budget: {budget:,} is more than these {len(shapes)} layers can use at full inner "
            f"and outer rank ({usable:,} trainable parameters); the rest is left unspent",
            UserWarning,
            stacklevel=2,
        )
    if any(outer_caps):
        # The epsilon keeps e.g. 0.7 * 10 = 7.000000000000001 from dropping to 6 elsewhere.
        b_out = min(budget, math.floor((1.0 - inner_share) * budget + 1e-9))
    else:
        b_out = 0
        if inner_share < 1.0:
            warnings.warn(
                f"shapes: no layer has out_features > in_features, so the outer share "
                f"{1.0 - inner_share:.2f} of the budget goes to the inner transform",
                UserWarning,
                stacklevel=2,
            )
    b_in = budget - b_out
    ranks = [min(m, n) for m, n in shapes]
    ls, _ = _fill(
        outer_caps,
        step_cost=lambda i, lvl: shapes[i][0] - shapes[i][1],
        key=lambda i, lvl: (lvl + 1, i),
        budget=b_out,
    )
    ks, _ = _fill(
        ranks,
        step_cost=lambda i, lvl: lvl + 1,
        key=lambda i, lvl: ((lvl + 1) / ranks[i], i),
        budget=b_in,
    )
    if not any(ks) and not any(ls):
        outer_steps = [m - n for (m, n), cap in zip(shapes, outer_caps, strict=True) if cap]
        cheapest = "1 (inner)" + (f" or {min(outer_steps)} (outer)" if outer_steps else "")
        raise ValueError(
            f"budget: {budget} buys no parameter with inner_share={inner_share} (inner part "
            f"{b_in}, outer part {b_out}); the smallest non-zero setting costs {cheapest}"
        )
    return [(k / r, lvl) for k, r, lvl in zip(ks, ranks, ls, strict=True)]


def _check_rank_method(method: str, where: str) -> None:
    if method not in RANK_METHODS:
        raise ValueError(f"method: {where} supports {list(RANK_METHODS)}, got {method!r}")


def _rank_caps(method: str, shapes: Sequence[Shape]) -> list[int]:
    caps = [rank_cap(method, m, n) for m, n in shapes]
    if min(caps) < 1:
        i = caps.index(min(caps))
        raise ValueError(
            f"shapes[{i}]: {method} cannot adapt a {shapes[i][0]} x {shapes[i][1]} layer (its "
            f"largest rank is {caps[i]})"
        )
    return caps


def match_rank(method: RankMethod, shapes: Sequence[Shape], budget: int) -> tuple[int, int]:
    """Largest rank (the same on every layer) whose total count does not exceed ``budget``.

    The rank is capped at the smallest :func:`rank_cap` of the layers (``min(m, n)``: PiSSA
    needs it; beyond it LoRA adds no expressiveness). Returns ``(rank, total_count)``.

    >>> match_rank("lora", [(4096, 1024), (1024, 4096)] * 6, 1_000_000)
    (16, 983040)
    """
    _check_rank_method(method, "match_rank")
    shapes = _check_shapes(shapes)
    _check_budget(budget)
    per_rank = sum(_rank_step(method, m, n) for m, n in shapes)
    fixed = sum(m for m, _ in shapes) if method == "dora" else 0
    rank = min((budget - fixed) // per_rank, min(_rank_caps(method, shapes)))
    if rank < 1:
        raise ValueError(
            f"budget: {budget} is below the smallest {method} setting (rank 1 costs "
            f"{per_rank + fixed} parameters on these layers)"
        )
    return rank, sum(method_params(method, m, n, rank=rank) for m, n in shapes)


def _largest_subset_sum(increments: Sequence[int], limit: int) -> list[int]:
    """Indices of ``increments`` whose sum is the largest not above ``limit``.

    Exact subset sum on a bitset (a Python int). Equal increments are grouped and split in
    binary multiples, so the work grows with the number of distinct layer sizes, not layers.
    Within a group of equal increments the earliest layers are chosen.
    """
    groups: dict[int, list[int]] = {}
    for i, inc in enumerate(increments):
        groups.setdefault(inc, []).append(i)
    items: list[tuple[int, int]] = []  # (increment, how many layers of that size)
    for inc, members in groups.items():
        left, chunk = len(members), 1
        while left:
            take = min(chunk, left)
            items.append((inc, take))
            left, chunk = left - take, 2 * chunk
    mask = (1 << (limit + 1)) - 1
    reach = [1]  # reach[j]: bit t set <=> sum t is reachable with items[:j]
    for inc, take in items:
        reach.append((reach[-1] | (reach[-1] << (inc * take))) & mask)
    total = reach[-1].bit_length() - 1
    chosen = dict.fromkeys(groups, 0)
    for j in range(len(items) - 1, -1, -1):
        if not (reach[j] >> total) & 1:  # not reachable without items[j]: take it
            inc, take = items[j]
            total -= inc * take
            chosen[inc] += take
    return sorted(i for inc, members in groups.items() for i in members[: chosen[inc]])


def match_ranks(method: RankMethod, shapes: Sequence[Shape], budget: int) -> tuple[list[int], int]:
    """Per-layer ranks whose total count is the closest to ``budget`` without exceeding it.

    A uniform rank moves the count in steps of the sum of the layers' rank steps (``m + n``
    for LoRA/DoRA/PiSSA/CorDA, ``n`` for MiCA, ``m + n + 1`` for OSF); per-layer ranks close
    that gap. Rule: the largest level ``r`` such that every layer at ``min(r, cap)`` fits
    (``cap``: :func:`rank_cap`), then rank ``r + 1`` on the subset of the remaining layers
    whose extra step each comes closest to the rest of the budget (exact subset sum; among
    equal-sized layers the first ones in ``shapes``). Ranks therefore differ by at most one
    between layers (except capped layers), the count never exceeds ``budget`` and falls short
    of it by less than one layer's step unless every layer is at its cap. Use with
    ``apply_adapter(..., rank=ranks)``.

    Returns ``(ranks aligned with shapes, total_count)``.

    >>> ranks, count = match_ranks("lora", [(4096, 1024), (1024, 4096)] * 6, 1_000_000)
    >>> ranks, count
    ([17, 17, 17, 16, 16, 16, 16, 16, 16, 16, 16, 16], 998400)
    >>> match_rank("lora", [(4096, 1024), (1024, 4096)] * 6, 1_000_000)[1]
    983040
    """
    _check_rank_method(method, "match_ranks")
    shapes = _check_shapes(shapes)
    _check_budget(budget)
    caps = _rank_caps(method, shapes)
    steps = [_rank_step(method, m, n) for m, n in shapes]
    fixed = sum(m for m, _ in shapes) if method == "dora" else 0

    def count_at(level: int) -> int:
        return fixed + sum(min(level, cap) * step for cap, step in zip(caps, steps, strict=True))

    if count_at(1) > budget:
        raise ValueError(
            f"budget: {budget} is below the smallest {method} setting (rank 1 on every layer "
            f"costs {count_at(1)} parameters on these layers)"
        )
    lo, hi = 1, max(caps)  # largest level that fits, by bisection (count_at is increasing)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if count_at(mid) <= budget else (lo, mid - 1)
    level = lo
    ranks = [min(level, cap) for cap in caps]
    open_layers = [i for i, cap in enumerate(caps) if cap > level]
    extra = _largest_subset_sum([steps[i] for i in open_layers], budget - count_at(level))
    for j in extra:
        ranks[open_layers[j]] += 1
    count = sum(
        method_params(method, m, n, rank=r) for (m, n), r in zip(shapes, ranks, strict=True)
    )
    return ranks, count
