"""Angle per optimiser step of an SSVD-O layer, for parameterisations v1 and v2 (docs/ssvdo.md).

One AdamW step (weight decay 0) from the identity adapter on a real loss gradient: an
SSVDOLinear over a random nn.Linear (the shape of the small model's feed-forward
up-projection by default, 144 -> 576, so m - n = 432), inputs x ~ N(0, 1) of ``--tokens`` rows
and the loss ||y - t||^2 / tokens against random targets t. Measured after the step:

- outer: principal angles between span(U_l) and span(U'_l), largest and root-mean-square;
- inner: rotation angles of G (eigenvalues exp(+-i phi)), largest and root-mean-square (the
  principal angles between span(V_k) and span(V_k G) are 0: G maps the span onto itself);
- singular values: max |s' - s| / s over the k inner components.

Each is printed divided by lr (the design target of v2 is ~1), as the mean over ``--seeds``.

    .venv/bin/python scripts/angle_per_step.py            # the table in docs/ssvdo.md
    .venv/bin/python scripts/angle_per_step.py --quick    # one lr, two taus, one seed
"""

from __future__ import annotations

import argparse
import statistics

import torch
from torch import nn

from cl_ssvdo import SSVDOLinear
from cl_ssvdo.ssvdo.diagnostics import step_angles


def one_step(args: argparse.Namespace, parameterisation: str, tau: float, lr: float, seed: int):
    torch.manual_seed(seed)
    base = nn.Linear(args.in_features, args.out_features)
    layer = SSVDOLinear(
        base,
        inner_ratio=args.inner_ratio,
        outer_rank=args.outer_rank,
        tau=tau,
        parameterisation=parameterisation,
    )
    x = torch.randn(args.tokens, args.in_features)
    target = torch.randn(args.tokens, args.out_features)
    optimiser = torch.optim.AdamW(layer.trainable_parameters, lr=lr, weight_decay=0.0)
    for _ in range(args.steps):
        optimiser.zero_grad()
        ((layer(x) - target).square().sum() / args.tokens).backward()
        optimiser.step()
    return step_angles(layer)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--in-features", type=int, default=144)
    parser.add_argument("--out-features", type=int, default=576)
    parser.add_argument("--inner-ratio", type=float, default=0.25)
    parser.add_argument("--outer-rank", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--steps", type=int, default=1, help="optimiser steps before measuring")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--lr", type=float, nargs="+", default=[1e-3, 5e-3, 1e-2])
    parser.add_argument("--tau", type=float, nargs="+", default=[1e-4, 1e-3, 1e-2, 1.0])
    parser.add_argument("--quick", action="store_true", help="lr 5e-3, tau 1e-3 and 1, 1 seed")
    args = parser.parse_args(argv)
    if args.quick:
        args.lr, args.tau, args.seeds = [5e-3], [1e-3, 1.0], 1
    torch.set_num_threads(1)
    probe = SSVDOLinear(
        nn.Linear(args.in_features, args.out_features),
        inner_ratio=args.inner_ratio,
        outer_rank=args.outer_rank,
    )
    print(
        f"layer {args.in_features} -> {args.out_features} (m - n = "
        f"{args.out_features - args.in_features}), k = {probe.inner_rank}, l = {probe.outer_rank}, "
        f"{args.tokens} tokens, {args.steps} AdamW step(s), mean of {args.seeds} seed(s); "
        "angles and relative singular-value change divided by lr\n"
    )
    keys = ("outer_max", "outer_rms", "inner_max", "inner_rms", "s_rel")
    print("| param. | tau | lr | " + " | ".join(keys) + " |")
    print("|---|---:|---:|" + "---:|" * len(keys))
    for parameterisation in ("v1", "v2"):
        for tau in args.tau:
            for lr in args.lr:
                runs = [one_step(args, parameterisation, tau, lr, s) for s in range(args.seeds)]
                cells = [statistics.fmean(r[k] for r in runs) / lr for k in keys]
                row = " | ".join(f"{c:.3g}" for c in cells)
                print(f"| {parameterisation} | {tau:g} | {lr:g} | {row} |")


if __name__ == "__main__":
    main()
