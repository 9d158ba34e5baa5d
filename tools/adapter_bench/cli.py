"""Adapter benchmark: SSVD-O against peft LoRA, the frozen model and full-factor recomposition.

The command line (``python -m tools.adapter_bench``): flags, the device, the run over the
chosen stacks, the printed report and the JSON file.
"""

from __future__ import annotations

import argparse
import json
import platform
from collections.abc import Sequence
from typing import Any

import torch

from tools.adapter_bench.report import format_report
from tools.adapter_bench.setup_cost import SETUP_HEADER, format_setup, stack_setup_cost
from tools.adapter_bench.shapes import QUICK, STACKS, StackShape
from tools.adapter_bench.stack import bench_stack
from tools.adapter_bench.timing import STATISTICS, load_average

DEFAULT_SHARES = (1.0, 0.75, 0.5, 0.25, 0.0)
PEER_MIN_SHARE = 0.25  # the full-factor reference runs at every measured share >= this


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tools.adapter_bench", description=__doc__.split("\n")[0]
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--stacks", default=",".join(STACKS), help=f"comma-separated, from {', '.join(STACKS)}"
    )
    which.add_argument("--small", action="store_true", help="only the small stack (d=256)")
    which.add_argument(
        "--quick", action="store_true", help="tiny shapes, 1 repeat: smoke test, no verdicts"
    )
    p.add_argument("--blocks", type=int, default=None, help="override every stack's blocks")
    p.add_argument("--tokens", type=int, default=None, help="override every stack's tokens")
    p.add_argument(
        "--budget",
        type=int,
        default=None,
        help="trainable parameters (default: LoRA at --lora-rank)",
    )
    p.add_argument("--lora-rank", type=int, default=16, help="sets the default budget")
    p.add_argument("--shares", default=",".join(map(str, DEFAULT_SHARES)), help="inner shares")
    p.add_argument("--default-share", type=float, default=0.5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads on CPU")
    p.add_argument(
        "--stat", choices=sorted(STATISTICS), default="median", help="min resists background load"
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:i]")
    p.add_argument("--no-peer", action="store_true", help="skip the full-factor reference")
    p.add_argument(
        "--peer-default-only",
        action="store_true",
        help=f"full-factor reference at the default share only (not every share >= {PEER_MIN_SHARE})",
    )
    p.add_argument(
        "--setup-only",
        action="store_true",
        help="only the set-up cost (SSVD-O injection vs thin SVD) at the default share",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    try:
        args.shares = [float(v) for v in args.shares.split(",") if v.strip()]
    except ValueError:
        p.error(f"--shares: expected comma-separated numbers, got {args.shares!r}")
    if not args.shares or any(not 0.0 <= v <= 1.0 for v in args.shares):
        p.error(f"--shares: values must lie in [0, 1], got {args.shares}")
    if args.default_share not in args.shares:
        args.shares.append(args.default_share)
    for name in ("blocks", "tokens", "lora_rank", "repeats", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')}: must be >= 1")
    args.stacks = ["small"] if args.small else [v.strip() for v in args.stacks.split(",") if v]
    unknown = [v for v in args.stacks if v not in STACKS]
    if unknown or not args.stacks:
        p.error(f"--stacks: unknown {unknown}, choose from {list(STACKS)}")
    if args.warmup < 0:
        p.error("--warmup: must be >= 0")
    return args


def _device(name: str) -> torch.device:
    """``--device``: "auto" (CUDA when present), "cpu" or "cuda[:i]" (refused without a GPU)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise SystemExit(f"--device: {name!r} is not a device ({err})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            f"--device {name}: no CUDA device here (torch.cuda.is_available() is False); "
            "run on a machine with a GPU or use --device cpu"
        )
    if device.type not in ("cpu", "cuda"):
        raise SystemExit(f"--device: only cpu and cuda are supported, got {name!r}")
    return device


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the report and return the results (a JSON-ready dict)."""
    args = _parse(argv)
    stat = STATISTICS[args.stat]
    device = _device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    if args.quick:
        stacks = [QUICK]
        args.warmup, args.repeats, args.lora_rank = 0, 1, 4
    else:
        stacks = [
            StackShape(st.name, st.d, st.ffn, args.blocks or st.blocks, args.tokens or st.tokens)
            for st in (STACKS[name] for name in args.stacks)
        ]
    peer_shares = [args.default_share]
    if not (args.quick or args.peer_default_only):
        peer_shares = sorted({v for v in args.shares if v >= PEER_MIN_SHARE} | set(peer_shares))
    if args.no_peer:
        peer_shares = []
    machine = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    )
    print(
        f"tools.adapter_bench on {machine}, torch {torch.__version__}; times: {args.stat} of "
        f"{args.repeats} after {args.warmup} warm-up; load average {load_average()}",
        flush=True,
    )

    def log(msg: str) -> None:
        print(msg, flush=True)

    if args.setup_only:
        return _setup_only(args, stacks, device, stat, machine)
    results = []
    for shape in stacks:
        result = bench_stack(
            shape,
            budget_params=args.budget,
            lora_rank=args.lora_rank,
            shares=args.shares,
            default_share=args.default_share,
            warmup=args.warmup,
            repeats=args.repeats,
            device=device,
            peer_shares=peer_shares,
            seed=args.seed,
            log=log,
            stat=stat,
        )
        results.append(result)
        print("\n" + format_report(result, judge=not args.quick) + "\n", flush=True)
    memory_note = (
        "torch.cuda.max_memory_allocated"
        if device.type == "cuda"
        else "params + buffers + AdamW state + peak of storages allocated in one step (LiveBytes)"
    )
    report = {
        "machine": machine,
        "torch": torch.__version__,
        "memory_measure": memory_note,
        "statistic": args.stat,
        "argv": list(argv) if argv is not None else None,
        "stacks": results,
    }
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2, default=str)
    return report


def _setup_only(
    args: argparse.Namespace,
    stacks: Sequence[StackShape],
    device: torch.device,
    stat: Any,
    machine: str,
) -> dict[str, Any]:
    """``--setup-only``: one table row per stack (``setup_cost.format_setup``)."""
    print("\n" + SETUP_HEADER, flush=True)
    results = []
    for shape in stacks:
        result = stack_setup_cost(
            shape,
            budget_params=args.budget,
            lora_rank=args.lora_rank,
            default_share=args.default_share,
            repeats=args.repeats,
            device=device,
            seed=args.seed,
            stat=stat,
        )
        results.append(result)
        print(format_setup(result), flush=True)
    report = {"machine": machine, "torch": torch.__version__, "statistic": args.stat}
    report["setup"] = results
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2, default=str)
    return report
