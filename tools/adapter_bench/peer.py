"""The peer's way: SSVD-O from full factors, W' = U' diag(s') V'^T recomposed every forward.

>>> layer = FullFactorSSVDO(nn.Linear(8, 16), inner_ratio=0.5, outer_rank=2)
>>> (layer.k, layer.l), layer(torch.zeros(3, 8)).shape
((4, 2), torch.Size([3, 16]))
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cl_ssvdo import budget
from cl_ssvdo.baselines import resolve_targets
from cl_ssvdo.ssvdo.settings import DEFAULTS
from tools.adapter_bench.shapes import TARGETS


class FullFactorSSVDO(nn.Module):
    """Reference SSVD-O that keeps full factors and recomposes W' on every forward.

    Stores U (m x r), s (r), V (n x r) and, with an outer rank, a dense U_perp (m x (m - n)),
    like the public SSVD code (which has no outer part; U_perp is the direct extension).
    Same trainable parameters as :class:`cl_ssvdo.SSVDOLinear` (Cayley rotation, tau).
    Used only to measure what the structured forward saves. x: (..., n) -> (..., m).
    """

    def __init__(
        self, base: nn.Linear, inner_ratio: float, outer_rank: int, tau: float = DEFAULTS.tau
    ) -> None:
        super().__init__()
        m, n = base.weight.shape
        self.k = budget.inner_rank(inner_ratio, min(m, n))
        self.l = budget.effective_outer_rank(m, n, outer_rank)
        self.tau = tau
        weight = base.weight.detach()
        U, s, Vh = torch.linalg.svd(weight, full_matrices=self.l > 0)
        r = min(m, n)
        self.register_buffer("U", U[:, :r].contiguous())
        self.register_buffer("s", s)
        self.register_buffer("V", Vh[:r].T.contiguous())
        self.register_buffer("U_perp", U[:, r:].contiguous() if self.l else weight.new_zeros(0))
        bias = base.bias.detach().clone() if base.bias is not None else None
        self.register_buffer("bias", bias)
        opts = {"dtype": weight.dtype, "device": weight.device}
        self.inner_skew = nn.Parameter(torch.zeros(self.k * (self.k - 1) // 2, **opts))
        self.delta_s = nn.Parameter(torch.zeros(self.k, **opts))
        self.outer_L = nn.Parameter(torch.zeros(max(m - n, 0), self.l, **opts))

    def recomposed_weight(self) -> torch.Tensor:
        k, ol = self.k, self.l
        V, U, s = self.V, self.U, self.s
        if k:
            rows, cols = torch.triu_indices(k, k, 1, device=V.device)
            upper = V.new_zeros(k, k).index_put((rows, cols), self.inner_skew)
            skew = upper - upper.T
            eye = torch.eye(k, dtype=V.dtype, device=V.device)
            G = torch.linalg.solve(eye - skew, eye + skew)
            V = torch.cat([V[:, :k] @ G, V[:, k:]], dim=1)
            s = torch.cat([s[:k] + self.delta_s, s[k:]])
        if ol:
            eye = torch.eye(ol, dtype=U.dtype, device=U.device)
            R = torch.linalg.cholesky(self.outer_L.T @ self.outer_L + self.tau * eye)
            Q = torch.linalg.solve_triangular(R.T, self.outer_L, upper=True, left=False)
            C = torch.linalg.solve_triangular(
                R.T, math.sqrt(self.tau) * eye, upper=True, left=False
            )
            U = torch.cat([U[:, :ol] @ C + self.U_perp @ Q, U[:, ol:]], dim=1)
        return (U * s) @ V.T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.recomposed_weight(), self.bias)


def apply_full_factor(model: nn.Module, allocation: Sequence[tuple[float, int]]) -> None:
    """Replace the targets of ``model`` (in order) by :class:`FullFactorSSVDO` (in place)."""
    model.requires_grad_(False)
    for name, (p, ol) in zip(resolve_targets(model, TARGETS), allocation, strict=True):
        parent, _, child = name.rpartition(".")
        base = model.get_submodule(name)
        setattr(model.get_submodule(parent), child, FullFactorSSVDO(base, p, ol))
