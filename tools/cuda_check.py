"""CUDA checks of the SSVD-O layer that a CPU machine cannot make (issue 12's GPU items).

Run on a machine with a GPU (``python -m tools.cuda_check --json out.json``); on CPU it says so
and exits 0 without checking anything. For each shape and forward path it checks:

- the start: ``W' = W0`` to float32 precision on the device;
- a bf16-autocast train step: finite loss and gradients, and the adapter's output close to the
  float64 CPU reference (relative error reported);
- no host synchronisation in the step (``torch.cuda.set_sync_debug_mode("error")``);
- merge then unmerge: the merged weight equals the adapter's product, and unmerge restores W0
  bit for bit;
- step time and peak memory against a frozen ``nn.Linear`` and peft LoRA at the same budget.

Example
-------
>>> from tools.cuda_check import SHAPES
>>> SHAPES[0]
(384, 1536, 1500)
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import torch
from torch import nn

from cl_ssvdo.ssvdo import SSVDOLinear
from tools.adapter_bench.timing import median_time

# (in, out, tokens): Whisper-tiny fc1 on a 30 s window, its fc2, an OWSM-like FFN.
SHAPES = [(384, 1536, 1500), (1536, 384, 1500), (1024, 4096, 4096)]
PATHS = ["lowrank", "hybrid", "dense"]


def _layer(n_in: int, n_out: int, device: str, seed: int = 0) -> SSVDOLinear:
    torch.manual_seed(seed)
    base = nn.Linear(n_in, n_out).to(device)
    return SSVDOLinear(base, inner_ratio=0.25, outer_rank=min(16, max(n_out - n_in, 0)))


def _perturb(layer: SSVDOLinear, scale: float = 1e-2) -> None:
    """Move every adapter parameter away from zero so the check exercises real rotations."""
    with torch.no_grad():
        for p in layer.parameters():
            if p.requires_grad and p.numel():
                p.add_(scale * torch.randn_like(p))


def _time_ms(fn, device: str) -> float:
    """Median of 20 synced calls after 3 warm-ups, in ms (the adapter benchmark's timer)."""
    return 1e3 * median_time(fn, torch.device(device), warmup=3, repeats=20)


def check_shape(
    n_in: int, n_out: int, tokens: int, path: str, device: str = "cuda"
) -> dict[str, Any]:
    """All checks for one layer shape and forward path on ``device`` (cpu: a smoke run)."""
    cuda = device.startswith("cuda")
    layer = _layer(n_in, n_out, device)
    layer.forward_path = path
    w0 = layer.base_layer.weight.detach().clone()
    with torch.no_grad():
        start_err = float((layer.merged_weight() - w0).abs().max() / w0.abs().max())
    _perturb(layer)
    x = torch.randn(8, tokens // 8, n_in, device=device)

    ref = _layer(n_in, n_out, "cpu")  # the same seed: same base weights, then the same params
    ref.load_state_dict(
        {k: v.cpu() if torch.is_tensor(v) else v for k, v in layer.state_dict().items()}
    )
    ref = ref.double()
    with torch.no_grad():
        y_ref = ref(x.cpu().double())

    def step() -> torch.Tensor:
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16):
            y = layer(x)
        loss = y.float().square().mean()
        loss.backward()
        return y

    if cuda:
        torch.cuda.set_sync_debug_mode("error")
    try:
        y = step()
        sync_free = True
    except RuntimeError as err:  # a host sync raises under "error"
        sync_free, y = False, None
        sync_error = str(err).splitlines()[0]
    finally:
        if cuda:
            torch.cuda.set_sync_debug_mode("default")
    if y is None:
        y = step()
    grads = [p.grad for p in layer.parameters() if p.requires_grad and p.numel()]
    finite = bool(torch.isfinite(y).all()) and all(bool(torch.isfinite(g).all()) for g in grads)
    rel_err = float((y.double().cpu() - y_ref).norm() / y_ref.norm())

    with torch.no_grad():
        expected = layer.merged_weight().clone()
        layer.merge()
        merge_err = float((layer.base_layer.weight - expected).abs().max())
        layer.unmerge()
        unmerge_exact = bool(torch.equal(layer.base_layer.weight, w0))

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t_ssvdo = _time_ms(step, device)
    mem_ssvdo = torch.cuda.max_memory_allocated() if cuda else 0
    trainable = sum(p.numel() for p in layer.parameters() if p.requires_grad)
    frozen = nn.Linear(n_in, n_out).to(device).requires_grad_(False)
    xf = x.clone().requires_grad_(True)

    def frozen_step() -> None:
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16):
            frozen(xf).float().square().mean().backward()

    t_frozen = _time_ms(frozen_step, device)
    out: dict[str, Any] = {
        "shape": [n_in, n_out, tokens],
        "path": path,
        "start_rel_err": start_err,
        "bf16_rel_err_vs_fp64_cpu": rel_err,
        "finite": finite,
        "sync_free": sync_free,
        "merge_max_err": merge_err,
        "unmerge_bit_exact": unmerge_exact,
        "step_ms": t_ssvdo,
        "frozen_step_ms": t_frozen,
        "peak_mib": mem_ssvdo / 2**20,
        "trainable": trainable,
    }
    if not sync_free:
        out["sync_error"] = sync_error
    if cuda:
        out.update(_lora(n_in, n_out, x, trainable))
    return out


def _lora(n_in: int, n_out: int, x: torch.Tensor, budget: int) -> dict[str, Any]:
    """peft LoRA at the SSVD-O layer's budget (rank = budget / (in + out))."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        return {}
    rank = max(1, round(budget / (n_in + n_out)))
    model = get_peft_model(
        nn.Sequential(nn.Linear(n_in, n_out)).cuda(), LoraConfig(r=rank, target_modules=["0"])
    )

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            model(x).float().square().mean().backward()

    torch.cuda.reset_peak_memory_stats()
    ms = _time_ms(step, "cuda")
    return {
        "lora_rank": rank,
        "lora_step_ms": ms,
        "lora_peak_mib": torch.cuda.max_memory_allocated() / 2**20,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument(
        "--cpu-smoke", action="store_true", help="tiny shapes on CPU (checks the script)"
    )
    args = parser.parse_args(argv)
    if args.cpu_smoke:
        rows = [check_shape(32, 96, 64, path, "cpu") for path in PATHS]
        print("\n".join(json.dumps(r) for r in rows))
        return 0 if all(r["finite"] and r["unmerge_bit_exact"] for r in rows) else 1
    if not torch.cuda.is_available():
        print("tools.cuda_check: no CUDA device here; nothing checked")
        return 0
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    rows = []
    for n_in, n_out, tokens in SHAPES:
        for path in PATHS:
            row = check_shape(n_in, n_out, tokens, path)
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows},
                fh,
                indent=1,
            )
    bad = [r for r in rows if not (r["finite"] and r["sync_free"] and r["unmerge_bit_exact"])]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
