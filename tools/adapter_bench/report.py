"""The report: a stack's results as Markdown tables, with the targets of issue 12 as verdicts."""

from __future__ import annotations

from typing import Any

TARGET_STEP_VS_BOUND = 1.10  # measured step x frozen / MAC bound, every share
TARGET_PEER_SPEEDUP = 1.6  # full-factor step / SSVD-O step at shares >= cli.PEER_MIN_SHARE
TARGET_MEM_VS_LORA = 1.10
TARGET_SETUP_VS_SVD = 1 / 3
TARGET_BUFFERS_VS_WEIGHTS = 1.0
TARGET_MERGED_INFERENCE = 1.00


def _verdict(value: float | None, target: float, le: bool) -> str:
    if value is None:
        return "n/a"
    ok = value <= target + 5e-3 if le else value >= target - 5e-3
    return "meets" if ok else "MISSES"


def format_report(result: dict[str, Any], judge: bool = True) -> str:
    """Markdown tables of one stack; ``judge=False`` (smoke shapes) prints "n/a" verdicts."""
    s = result["shape"]
    load = result["load_average"]
    lines = [
        f"### {s['name']}: {s['blocks']} blocks of {s['d']} -> {s['ffn']} -> {s['d']}, "
        f"{s['tokens']} tokens; budget {result['budget']:,} trainable parameters "
        f"(LoRA r={result['lora_rank']}: {result['lora_count']:,})",
        "",
        f"Load average (1 min) before / after: {load['before']} / {load['after']}.",
        "",
        "| variant | trainable | ranks, forward path | step ms | x frozen | x LoRA | MAC bound (x frozen) | measured / bound | MACs/token | peak MB | mem x LoRA |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['variant']} | {r['trainable']:,} | {r['ranks']} | {r['step_ms']:.1f} | "
            f"{r['step_vs_frozen']:.2f} | {r['step_vs_lora']:.2f} | {r['macs_vs_frozen']:.2f} | "
            f"{r['step_vs_bound']:.2f} | {r['macs_per_token'] / 1e6:.1f} M | {r['peak_mb']:.1f} | "
            f"{r['mem_vs_lora']:.2f} |"
        )
    q = result["ratios"]
    inf = result["inference_ms"]
    st = result["setup_s"]
    share = f"{result['default_share']:.2f}"
    verdict = _verdict if judge else (lambda *_: "n/a (smoke)")
    speedups = ", ".join(f"{k}: {v:.2f}" for k, v in q["peer_speedup_by_share"].items())
    table = [
        ("ratio SSVD-O measured / MAC bound, worst share", q["ssvdo_step_vs_bound_worst"], f"<= {TARGET_STEP_VS_BOUND:.2f}", verdict(q["ssvdo_step_vs_bound_worst"], TARGET_STEP_VS_BOUND, True)),
        ("ratio LoRA measured / MAC bound", q["lora_step_vs_bound"], "-", "info"),
        ("ratio SSVD-O step / LoRA step (share " + share + ")", q["ssvdo_step_vs_lora"], "-", "info"),
        (f"ratio full-factor step / SSVD-O step, worst share ({speedups})", q["peer_speedup"], f">= {TARGET_PEER_SPEEDUP:.2f}", verdict(q["peer_speedup"], TARGET_PEER_SPEEDUP, False)),
        (f"ratio merged inference / base ({inf['merged']:.1f} / {inf['base']:.1f} ms)", q["merged_inference_vs_base"], "1.00", verdict(abs(q["merged_inference_vs_base"] - 1.0), 0.03, True)),
        (f"ratio set-up / full SVD ({1e3 * st['ssvdo']:.0f} / {1e3 * st['full_svd']:.0f} ms)", q["setup_vs_full_svd"], f"<= {TARGET_SETUP_VS_SVD:.2f}", verdict(q["setup_vs_full_svd"], TARGET_SETUP_VS_SVD, True)),
        (f"ratio set-up routes: {'+'.join(result['decomposition_routes'])}; randomised set-up (opt-in, approximate) / full SVD ({1e3 * st['ssvdo_randomized']:.0f} ms)", q["randomized_setup_vs_full_svd"], "-", "info"),
        (f"ratio one Householder QR of the outer layers / full SVD ({1e3 * st['complement']:.0f} ms)", q["complement_vs_full_svd"], "-", "info"),
        ("ratio SSVD-O peak memory / LoRA, worst share", q["ssvdo_mem_vs_lora_worst"], f"<= {TARGET_MEM_VS_LORA:.2f}", verdict(q["ssvdo_mem_vs_lora_worst"], TARGET_MEM_VS_LORA, True)),
        ("ratio adapter buffers / frozen weight bytes", q["buffers_vs_frozen_weights"], f"<= {TARGET_BUFFERS_VS_WEIGHTS:.2f}", verdict(q["buffers_vs_frozen_weights"], TARGET_BUFFERS_VS_WEIGHTS, True)),
        ("ratio adapter buffers / frozen weight bytes, worst layer", q["buffers_vs_frozen_weights_worst_layer"], "-", "info"),
        ("ratio SSVD-O unmerged inference / base", q["unmerged_inference_vs_base"], "-", "info"),
        ("ratio LoRA unmerged inference / base", q["lora_unmerged_inference_vs_base"], "-", "info"),
        ("ratio full-factor buffers / frozen weight bytes", q["peer_buffers_vs_frozen_weights"], "-", "info"),
    ]  # fmt: skip
    lines += ["", "| ratio | value | target | verdict |", "|---|---:|---|---|"]
    for name, value, target, v in table:
        shown = "n/a" if value is None else f"{value:.2f}"
        lines.append(f"| {name} | {shown} | {target} | {v} |")
    return "\n".join(lines)
