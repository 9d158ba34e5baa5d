"""One stack, measured: every variant's train step interleaved, memory, set-up, inference, ratios."""

from __future__ import annotations

import copy
import gc
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from cl_ssvdo import budget
from cl_ssvdo.baselines import apply_adapter
from tools.adapter_bench.arithmetic import arithmetic_macs
from tools.adapter_bench.memory import adapter_buffer_bytes, step_memory
from tools.adapter_bench.peer import apply_full_factor
from tools.adapter_bench.setup_cost import setup_cost
from tools.adapter_bench.shapes import TARGETS, StackShape, build_stack
from tools.adapter_bench.timing import load_average, median_time, sync
from tools.adapter_bench.variant import Variant, variant_ranks


def bench_stack(
    shape: StackShape,
    *,
    budget_params: int | None,
    lora_rank: int,
    shares: Sequence[float],
    default_share: float,
    warmup: int,
    repeats: int,
    device: torch.device,
    peer_shares: Sequence[float],
    seed: int,
    log: Callable[[str], None],
    stat: Callable[[Sequence[float]], float] = statistics.median,
) -> dict[str, Any]:
    """Measure one stack (see :mod:`tools.adapter_bench`); a JSON-ready dict of rows, set-up
    and inference times and ratios. ``stat`` reduces the repeats (median, or min)."""
    load_before = load_average()
    base, names, shapes, budget_params = build_stack(shape, device, seed, budget_params, lora_rank)
    ranks, lora_count = budget.match_ranks("lora", shapes, budget_params)
    rank_label = "/".join(map(str, sorted(set(ranks), reverse=True)))
    x = torch.randn(shape.tokens, shape.d, device=device, requires_grad=True)
    log(f"[{shape.name}] d={shape.d} ffn={shape.ffn} blocks={shape.blocks} tokens={shape.tokens}")

    variants = [Variant("frozen", base, [])]
    variants[0].macs = arithmetic_macs("frozen", shapes, shape.tokens)
    lora_model = copy.deepcopy(base)
    lora = apply_adapter(lora_model, "lora", list(TARGETS), rank=ranks)
    lora_v = Variant(f"peft LoRA r={rank_label}", lora_model, lora.trainable_parameters(), lora)
    lora_v.macs = arithmetic_macs("lora", shapes, shape.tokens, ranks)
    variants.append(lora_v)
    ssvdo_by_share: dict[float, Variant] = {}
    setup: dict[str, float] = {}
    for share in shares:
        alloc = budget.allocate(shapes, budget_params, share)
        model = copy.deepcopy(base)
        sync(device)
        start = time.perf_counter()
        handle = apply_adapter(model, "ssvdo", list(TARGETS), allocation=alloc)
        sync(device)
        if share == default_share:
            setup["ssvdo_first"] = time.perf_counter() - start
        v = Variant(
            f"SSVD-O inner share {share:.2f}" + (" (default)" if share == default_share else ""),
            model,
            handle.trainable_parameters(),
            handle,
            variant_ranks(handle, shape.tokens),
        )
        layers = [model.get_submodule(n) for n in handle.targets]
        v.macs = arithmetic_macs(
            "ssvdo",
            shapes,
            shape.tokens,
            [
                (la.num_components, la.outer_rank, la.forward_kind(shape.tokens, True))
                for la in layers
            ],
        )
        ssvdo_by_share[share] = v
        variants.append(v)
    default_alloc = budget.allocate(shapes, budget_params, default_share)
    peer_by_share: dict[float, Variant] = {}
    for share in peer_shares:
        peer_model = copy.deepcopy(base)
        apply_full_factor(peer_model, budget.allocate(shapes, budget_params, share))
        trainable = [p for p in peer_model.parameters() if p.requires_grad]
        peer_v = Variant(f"full-factor recomposition, share {share:.2f}", peer_model, trainable)
        peer_layers = [peer_model.get_submodule(n) for n in names]
        peer_v.macs = arithmetic_macs(
            "peer", shapes, shape.tokens, [(la.k, la.l) for la in peer_layers]
        )
        peer_by_share[share] = peer_v
        variants.append(peer_v)
    peer = bool(peer_by_share)

    # Train steps, interleaved.
    for rep in range(warmup + repeats):
        for v in variants:
            sync(device)
            start = time.perf_counter()
            v.step(x)
            sync(device)
            if rep >= warmup:
                v.times.append(time.perf_counter() - start)
        log(f"  round {rep + 1}/{warmup + repeats} done")
    memory = {v.label: step_memory(v, x) for v in variants}

    frozen_t = stat(variants[0].times)
    lora_t = stat(variants[1].times)
    frozen_mem, lora_mem = memory[variants[0].label]["peak"], memory[variants[1].label]["peak"]
    rows = []
    for v in variants:
        t, mem = stat(v.times), memory[v.label]["peak"]
        rows.append(
            {
                "variant": v.label,
                "trainable": v.num_trainable,
                "ranks": v.detail,
                "step_ms": 1e3 * t,
                "step_ms_all": [1e3 * sec for sec in v.times],
                "step_vs_frozen": t / frozen_t,
                "macs_per_token": v.macs,
                "macs_vs_frozen": v.macs / variants[0].macs,
                "step_vs_bound": (t / frozen_t) / (v.macs / variants[0].macs),
                "step_vs_lora": t / lora_t,
                "peak_mb": mem / 2**20,
                "mem_vs_frozen": mem / frozen_mem,
                "mem_vs_lora": mem / lora_mem,
                "memory_parts": memory[v.label],
            }
        )

    # Set-up: decomposition of all targets vs one full thin SVD of the same weights.
    cost = setup_cost(base, names, default_alloc, device, min(3, repeats), stat)
    setup.update(cost["seconds"])
    routes = cost["routes"]

    # Adapter buffers vs the frozen weights they sit beside.
    default_v = ssvdo_by_share[default_share]
    per_layer = adapter_buffer_bytes(default_v.model, default_v.handle.targets)
    extra, frozen_bytes = (sum(col) for col in zip(*per_layer, strict=True))
    worst_layer = max(e / f for e, f in per_layer)
    peer_extra = None
    if peer:
        any_peer = next(iter(peer_by_share.values()))
        peer_layers = adapter_buffer_bytes(any_peer.model, default_v.handle.targets)
        peer_extra = sum(e for e, _ in peer_layers)

    # Inference: merged SSVD-O (after the training steps above) vs the base model.
    def infer(model: nn.Module) -> Callable[[], None]:
        xi = x.detach()

        def run() -> None:
            with torch.inference_mode():
                model(xi)

        return run

    inf_unmerged = {}
    for v in (default_v, variants[1]):
        inf_unmerged[v.label] = median_time(infer(v.model), device, warmup, repeats, stat)
    merged = default_v.handle.merge()
    inf_base = inf_merged = 0.0
    base_times, merged_times = [], []
    for _ in range(warmup + repeats):  # interleaved, like the train steps
        base_times.append(median_time(infer(base), device, 0, 1, stat))
        merged_times.append(median_time(infer(merged), device, 0, 1, stat))
    inf_base = stat(base_times[warmup:])
    inf_merged = stat(merged_times[warmup:])

    default_row = next(r for r in rows if r["variant"] == default_v.label)
    row_of = {r["variant"]: r for r in rows}
    ssvdo_rows = [row_of[v.label] for v in ssvdo_by_share.values()]
    peer_speedups = {
        f"{share:.2f}": stat(pv.times) / stat(ssvdo_by_share[share].times)
        for share, pv in peer_by_share.items()
    }
    ratios = {
        "ssvdo_step_vs_lora": default_row["step_vs_lora"],
        "ssvdo_step_vs_frozen": default_row["step_vs_frozen"],
        "ssvdo_step_vs_bound_worst": max(r["step_vs_bound"] for r in ssvdo_rows),
        "lora_step_vs_bound": rows[1]["step_vs_bound"],
        "peer_speedup_by_share": peer_speedups,
        "peer_speedup": min(peer_speedups.values()) if peer else None,
        "ssvdo_mem_vs_lora_worst": max(r["mem_vs_lora"] for r in ssvdo_rows),
        "merged_inference_vs_base": inf_merged / inf_base,
        "unmerged_inference_vs_base": inf_unmerged[default_v.label] / inf_base,
        "lora_unmerged_inference_vs_base": inf_unmerged[variants[1].label] / inf_base,
        "setup_vs_full_svd": setup["ssvdo"] / setup["full_svd"],
        "randomized_setup_vs_full_svd": cost["vs_full_svd"]["ssvdo_randomized"],
        "complement_vs_full_svd": cost["vs_full_svd"]["complement"],
        "buffers_vs_frozen_weights": extra / frozen_bytes,
        "buffers_vs_frozen_weights_worst_layer": worst_layer,
        "peer_buffers_vs_frozen_weights": (peer_extra / frozen_bytes) if peer else None,
        "ssvdo_mem_vs_lora": default_row["mem_vs_lora"],
    }
    del variants, ssvdo_by_share, peer_by_share, merged
    gc.collect()
    return {
        "load_average": {"before": load_before, "after": load_average()},
        "shape": shape.__dict__,
        "budget": budget_params,
        "lora_rank": rank_label,
        "lora_ranks": ranks,
        "lora_count": lora_count,
        "default_share": default_share,
        "rows": rows,
        "setup_s": setup,
        "decomposition_routes": routes,
        "inference_ms": {
            "base": 1e3 * inf_base,
            "merged": 1e3 * inf_merged,
            **{f"unmerged {k}": 1e3 * t for k, t in inf_unmerged.items()},
        },
        "ratios": ratios,
    }
