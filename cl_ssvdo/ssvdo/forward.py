"""The "hybrid" forward of SSVD-O: one dense W' per step, the frozen input-gradient path, and the
core gradients through the factors.

With dW = U core_top V^T + O core_outer V^T (U: (m, a) frozen, O = U_perp Q: (m, l), V: (n, a)
frozen), ``hybrid_linear`` computes y = x W'^T + b with W' = W0 + dW formed once per call
(``form_weight``), and in backward

    grad x          = g W'                              (the frozen layer's own product), or
                    = g W0 + (g U core_top + g O core_outer) V^T   (no m x n temporary)
    grad core_top   = (g U)^T (x V)                     (a, a)
    grad core_outer = (g O)^T (x V)                     (l, a)
    grad O          = g^T ((x V) core_outer^T)          (m, l)

so the m x n gradient of W' is never formed (the "dense" path pays tokens x m x n for it) and the
token-sized work is n a forward plus m a + 2 m l (+ small) backward: less than the low-rank path's
forward corrections once W' is amortised over enough tokens. Only x V (tokens x a) is saved for
backward, never W' (m x n per layer): memory stays that of the low-rank path. ``recompute``
chooses how grad x is formed (W' again, or the factor form) by the caller's cost model.

Dtypes: under ``torch.autocast`` every product runs in the autocast dtype, like ``F.linear``
there, with W' formed in the weight's dtype first and then cast once; otherwise in x's dtype.
Nothing here reads a tensor value on the host (no device sync).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


def form_weight(
    weight: torch.Tensor | None,
    U: torch.Tensor,
    core_top: torch.Tensor,
    outer_left: torch.Tensor | None,
    core_outer: torch.Tensor | None,
    V: torch.Tensor,
) -> torch.Tensor:
    """dW (``weight`` None) or ``weight`` + dW, (m, n), accumulated by ``addmm``.

    Example
    -------
    >>> U, V = torch.eye(3)[:, :1], torch.eye(2)[:, :1]
    >>> form_weight(torch.zeros(3, 2), U, torch.ones(1, 1), None, None, V)[0].tolist()
    [1.0, 0.0]
    """
    top = core_top @ V.T
    if weight is None:
        delta = U @ top
    else:
        delta = torch.addmm(weight, U.to(weight.dtype), top.to(weight.dtype))
    if outer_left is not None:
        outer = (core_outer @ V.T).to(delta.dtype)
        delta = torch.addmm(delta, outer_left.to(delta.dtype), outer)
    return delta


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype ``F.linear(x, ...)`` computes in here: the autocast dtype where autocast is on."""
    device = x.device.type
    if x.is_floating_point() and torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype


class _HybridLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, U, core_top, outer_left, core_outer, V, recompute):
        cdt = compute_dtype(x)
        with torch.autocast(x.device.type, enabled=False):
            with torch.no_grad():
                w_new = form_weight(weight, U, core_top, outer_left, core_outer, V)
            out = F.linear(x.to(cdt), w_new.to(cdt), None if bias is None else bias.to(cdt))
            del w_new
            needs_cores = any(ctx.needs_input_grad[4:7])
            h = F.linear(x.to(cdt), V.T.to(cdt)) if needs_cores else None
        ctx.cdt, ctx.recompute = cdt, recompute
        ctx.dtypes = (x.dtype, None if bias is None else bias.dtype)
        ctx.save_for_backward(h, weight, U, core_top, outer_left, core_outer, V)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        h, weight, U, core_top, outer_left, core_outer, V = ctx.saved_tensors
        need_x, _, need_b, _, need_top, need_left, need_outer, _, _ = ctx.needs_input_grad
        cdt, (x_dtype, b_dtype) = ctx.cdt, ctx.dtypes
        grads: list[torch.Tensor | None] = [None] * 9
        with torch.autocast(grad.device.type, enabled=False):
            g = grad.to(cdt)
            factor_x = need_x and not ctx.recompute
            gU = g @ U.to(cdt) if (need_top or factor_x) else None
            gO = g @ outer_left.to(cdt) if outer_left is not None else None
            if need_top:
                grads[4] = (gU.T @ h).to(core_top.dtype)
            if outer_left is not None and need_outer:
                grads[6] = (gO.T @ h).to(core_outer.dtype)
            if outer_left is not None and need_left:
                grads[5] = (g.T @ (h @ core_outer.to(cdt).T)).to(outer_left.dtype)
            if need_x:
                if ctx.recompute:
                    w_new = form_weight(weight, U, core_top, outer_left, core_outer, V)
                    grads[0] = (g @ w_new.to(cdt)).to(x_dtype)
                else:
                    coeff = gU @ core_top.to(cdt)
                    if gO is not None:
                        coeff.addmm_(gO, core_outer.to(cdt))
                    grad_x = g @ weight.to(cdt)
                    grads[0] = grad_x.addmm_(coeff, V.T.to(cdt)).to(x_dtype)
            if need_b:
                grads[2] = g.sum(0).to(b_dtype)
        return tuple(grads)


def hybrid_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    U: torch.Tensor,
    core_top: torch.Tensor,
    outer_left: torch.Tensor | None,
    core_outer: torch.Tensor | None,
    V: torch.Tensor,
    *,
    recompute: bool,
) -> torch.Tensor:
    """x (W0 + dW)^T + b by the hybrid path (module docstring). x: (tokens, n) -> (tokens, m).

    ``weight`` (m, n) must be frozen (its gradient would need x, which is not kept).
    ``recompute``: form W' again in backward for grad x (cheaper with many tokens) instead of
    the factor form.

    Example
    -------
    >>> W, U, V = torch.randn(4, 3), torch.eye(4)[:, :2], torch.eye(3)[:, :2]
    >>> core = torch.randn(2, 2, requires_grad=True)
    >>> x = torch.randn(5, 3)
    >>> y = hybrid_linear(x, W, None, U, core, None, None, V, recompute=False)
    >>> bool(torch.allclose(y, x @ (W + U @ core @ V.T).T))
    True
    """
    if weight.requires_grad:
        raise ValueError("hybrid_linear: the base weight must be frozen (requires_grad=False)")
    if x.dim() != 2:
        raise ValueError(f"hybrid_linear: x must be (tokens, n), got shape {tuple(x.shape)}")
    return _HybridLinear.apply(x, weight, bias, U, core_top, outer_left, core_outer, V, recompute)


class DeltaBlocks(NamedTuple):
    """dW = U core_top V^T + outer_left core_outer V^T (see ``SSVDOAdapter.delta_blocks``).

    U: (m, a) frozen; core_top: (a, a); outer_left: U_perp Q, (m, l), or None when l = 0;
    core_outer: (l, a) or None; V: (n, a) frozen.
    """

    U: torch.Tensor
    core_top: torch.Tensor
    outer_left: torch.Tensor | None
    core_outer: torch.Tensor | None
    V: torch.Tensor

    def dense(self, base: torch.Tensor | None = None) -> torch.Tensor:
        """dW, or ``base + dW`` accumulated by ``addmm`` when ``base`` (m, n) is given."""
        return form_weight(base, self.U, self.core_top, self.outer_left, self.core_outer, self.V)

    def add_lowrank_(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """out += x dW^T in place, x: (tokens, n), out: (tokens, m); returns ``out``.

        Three thin products per term: h = x V (tokens, a) once, then (h core^T) left^T
        accumulated into ``out`` by ``addmm_``.
        """
        dtype = out.dtype
        h = F.linear(x, self.V.T.to(x.dtype))
        out.addmm_(F.linear(h, self.core_top.to(h.dtype)).to(dtype), self.U.T.to(dtype))
        if self.outer_left is not None:
            coeff = F.linear(h, self.core_outer.to(h.dtype)).to(dtype)
            out.addmm_(coeff, self.outer_left.T.to(dtype))
        return out


def cheapest_path(m: int, n: int, a: int, ol: int, tokens: int, training: bool) -> str:
    """The forward path with the fewest multiply-adds for a call over ``tokens`` rows of an
    ``m x n`` adapter changing ``a`` components with outer rank ``ol``: "lowrank", "hybrid"
    (training only) or "dense" (no gradient).

    With w = a + l, forming W' = W0 + dW costs F = w n (a + m) per call:

    - low-rank, per token: forward n a + a w + m w; training adds m w + m l (grads of the
      low-rank activations and of U_perp Q), 2 a w (core) and n a (input).
    - hybrid (training only, :func:`hybrid_linear`): F, and per token n a (x V),
      m w + m l + a w + a l (core and U_perp Q gradients), and for the input gradient
      either F again or n a + a w per token, whichever is less.
    - dense (no gradient; with one it is never chosen: it pays tokens m n for the gradient
      of W' and 2 F): F per call, nothing per token beyond the base product.

    >>> cheapest_path(1024, 256, 8, 8, tokens=4, training=False)
    'lowrank'
    """
    w = a + ol
    form = w * n * (a + m)
    if not training:
        return "lowrank" if tokens * (n * a + a * w + m * w) <= form else "dense"
    lowrank = tokens * (2 * n * a + 3 * a * w + 2 * m * w + m * ol)
    hybrid = form + tokens * (n * a + m * w + m * ol + a * w + a * ol)
    hybrid += min(form, tokens * (n * a + a * w))
    return "lowrank" if lowrank <= hybrid else "hybrid"


def recompute_input_grad(m: int, n: int, a: int, ol: int, tokens: int) -> bool:
    """Hybrid path: form W' again for grad x (F) rather than n a + a w per token."""
    w = a + ol
    return w * n * (a + m) < tokens * (n * a + a * w)
