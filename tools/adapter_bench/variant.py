"""One model under test (frozen, LoRA, SSVD-O, full-factor) and its train step.

>>> v = Variant("frozen", nn.Linear(4, 4).requires_grad_(False), [])
>>> v.num_trainable, v.step(torch.ones(2, 4, requires_grad=True)).shape
(0, torch.Size([]))
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from cl_ssvdo.baselines import AdapterHandle


@dataclass
class Variant:
    """One model under test and its train step."""

    label: str
    model: nn.Module
    trainable: list[nn.Parameter]
    handle: AdapterHandle | None = None
    detail: str = ""
    optimizer: torch.optim.Optimizer | None = None
    times: list[float] = field(default_factory=list)
    macs: float = 0.0  # arithmetic_macs: multiply-adds per token of a train step

    def __post_init__(self) -> None:
        if self.trainable:
            self.optimizer = torch.optim.AdamW(self.trainable, lr=1e-4)

    @property
    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.trainable)

    def step(self, x: torch.Tensor) -> torch.Tensor:
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)
        x.grad = None
        loss = self.model(x).float().square().mean()
        loss.backward()
        if self.optimizer is not None:
            self.optimizer.step()
        return loss


def variant_ranks(handle: AdapterHandle, tokens: int) -> str:
    """k and l over the layers, and the forward path the layers pick for a train step."""
    layers = [handle.model.get_submodule(n) for n in handle.targets]
    ks = sorted({layer.inner_rank for layer in layers})
    ls = sorted({layer.outer_rank for layer in layers if layer.out_features > layer.in_features})
    paths = sorted({la.forward_kind(tokens, True) for la in layers})
    fmt = lambda v: "/".join(map(str, v)) if len(v) <= 2 else f"{v[0]}..{v[-1]}"  # noqa: E731
    return f"k={fmt(ks)} l={fmt(ls or [0])}, {'+'.join(paths)}"
