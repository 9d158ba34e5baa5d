"""``SSVDOAdapter``: the SSVD-O state of one m x n weight (trainable generators and the frozen
factors they act on) and its forward paths; ``SSVDOLinear`` (``layer``) pairs it with a base
``nn.Linear`` and the peft layer keeps one per adapter name.

W0 = U diag(s) V^T (m x n). Trainable: the k(k-1)/2 free entries of a skew K (inner rotation of
k right singular vectors, Cayley or first-order), ds (k shifts of their singular values), and
L ((m - n) x l, outer rotation of the top-l left singular vectors into the complement of span(U)).
Only a handful of components J change, so the adapter keeps just those (U_J, s_J, V_J) plus
Householder reflectors for the complement. Settings, ranks and counts: ``settings``.
This module must not depend on peft, speechbrain, avalanche or mlflow.

Example
-------
>>> adapter = SSVDOAdapter(16, 8, inner_ratio=0.5, outer_rank=2)
>>> adapter.decompose_weight(torch.randn(16, 8))
>>> adapter.inner_rank, adapter.outer_rank, adapter.delta_weight().abs().max().item()
(4, 2, 0.0)
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .decompose import apply_complement
from .factorise import factorise
from .forward import DeltaBlocks, cheapest_path, hybrid_linear, recompute_input_grad
from .rotations import inner_rotation, inner_scale, outer_rotation, outer_rotation_cholesky
from .serial import serial_call
from .settings import DEFAULTS, ssvdo_ranks, validate_settings

FORWARD_PATHS = ("auto", "lowrank", "hybrid", "dense")
GENERATORS = ("inner_skew", "delta_s", "outer_L")


def component_indices(rank: int, inner_rank: int, outer_rank: int, subspace: str) -> list[int]:
    """Indices J (into descending singular values) that the adapter changes.

    "top": 0 .. max(k, l) - 1. "tail": the top l (outer) and the last k (inner).
    """
    if subspace == "top":
        return list(range(max(inner_rank, outer_rank)))
    return sorted(set(range(outer_rank)) | set(range(rank - inner_rank, rank)))


class SSVDOAdapter(nn.Module):
    """The SSVD-O state of one m x n weight: trainable generators and the frozen factors they act on.

    Holds no weight of its own: ``SSVDOLinear`` pairs it with a base ``nn.Linear``, and the peft
    layer keeps one per adapter name. Arguments as in ``SSVDOLinear``, plus the layer shape.

    Parameters (trainable), each registered only where it has entries (else the attribute is
    None and ``trainable_parameters`` leaves it out): ``inner_skew`` (k(k-1)/2,) for k >= 2,
    ``delta_s`` (k,) for k >= 1, ``outer_L`` (m - n, l) for l >= 1.
    Buffers (persistent, so a saved adapter never depends on recomputing the same SVD signs):
    ``svd_U`` (m, a), ``svd_s`` (a,), ``svd_V`` (n, a), ``perp_reflectors`` (m, n) and
    ``perp_tau`` (n,) when l > 0 (else empty).

    The parameter side (what the forward path consumes): ``inner_rotation()`` (G, k x k),
    ``outer_factors()`` ((C, Q): l x l and (m - n) x l) and ``new_singular_values()`` (s'_J),
    each from the stored generators under ``parameterisation`` ("v1" or "v2", see
    ``rotations``).
    """

    def __init__(
        self,
        out_features: int,
        in_features: int,
        inner_ratio: float,
        outer_rank: int = DEFAULTS.outer_rank,
        tau: float = DEFAULTS.tau,
        rotation: str = DEFAULTS.rotation,
        subspace: str = DEFAULTS.subspace,
        parameterisation: str = DEFAULTS.parameterisation,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        validate_settings(inner_ratio, outer_rank, tau, rotation, subspace, parameterisation)
        self.out_features, self.in_features = int(out_features), int(in_features)
        self.forward_path = "auto"
        self.decomposition_route: str | None = None  # TopFactors.route of the last set-up
        self._configure(
            inner_ratio,
            outer_rank,
            tau,
            rotation,
            subspace,
            parameterisation,
            dtype=dtype,
            device=device,
        )
        self.register_load_state_dict_pre_hook(_drop_empty_generators)

    # ----------------------------------------------------------------- set-up
    def _configure(
        self,
        inner_ratio: float,
        outer_rank: int,
        tau: float,
        rotation: str,
        subspace: str,
        parameterisation: str,
        *,
        dtype: torch.dtype | None,
        device: torch.device | str | None,
    ) -> None:
        m, n = self.out_features, self.in_features
        self.inner_ratio = float(inner_ratio)
        self.requested_outer_rank = int(outer_rank)
        self.inner_rank, self.outer_rank = ssvdo_ranks(m, n, inner_ratio, outer_rank)
        if m > n and self.outer_rank < self.requested_outer_rank:
            warnings.warn(
                f"outer_rank: {outer_rank} capped at {self.outer_rank} for a {m}x{n} layer "
                f"(the outer rank is at most min(r, m - n))",
                UserWarning,
                stacklevel=3,
            )
        self.tau = float(tau)
        self.rotation = rotation
        self.subspace = subspace
        self.parameterisation = parameterisation
        self._indices = component_indices(min(m, n), self.inner_rank, self.outer_rank, subspace)
        k, outer, a = self.inner_rank, self.outer_rank, len(self._indices)
        self._inner_start = 0 if subspace == "top" else a - k
        opts = {"dtype": dtype, "device": device}
        shapes = {
            "inner_skew": (k * (k - 1) // 2,),
            "delta_s": (k,),
            "outer_L": (max(m - n, 0), outer),
        }
        for name, shape in shapes.items():
            empty = math.prod(shape) == 0
            self.register_parameter(
                name, None if empty else nn.Parameter(torch.zeros(shape, **opts))
            )
        self.register_buffer("svd_U", torch.zeros(m, a, **opts))
        self.register_buffer("svd_s", torch.zeros(a, **opts))
        self.register_buffer("svd_V", torch.zeros(n, a, **opts))
        # Column-major (strides (1, m)), as geqrf returns it and ormqr reads it: any other
        # layout makes every ormqr call (forward and backward) copy all m x n numbers.
        reflectors = torch.zeros((n, m) if outer else (0, 0), **opts).mT
        self.register_buffer("perp_reflectors", reflectors)
        self.register_buffer("perp_tau", torch.zeros(n if outer else 0, **opts))

    @property
    def num_components(self) -> int:
        """a = |J|, the number of singular components that change (max(k, l) for "top")."""
        return len(self._indices)

    @property
    def generator_names(self) -> tuple[str, ...]:
        """Names of the registered generators, in the order of ``GENERATORS``."""
        return tuple(name for name in GENERATORS if getattr(self, name) is not None)

    @property
    def trainable_parameters(self) -> tuple[nn.Parameter, ...]:
        """The registered generators among (inner_skew, delta_s, outer_L), in that order."""
        return tuple(getattr(self, name) for name in self.generator_names)

    @torch.no_grad()
    def decompose_weight(self, weight: torch.Tensor, route: str | None = None) -> None:
        """Factorise ``weight`` (m, n) and reset the generators to zero (adapter = identity).

        ``factorise.factorise`` picks the route (``route``, or the one ``decompose.use_route``
        set; "auto" by default). A weight with a numerically zero singular value among J takes
        the exact route of ``completion.exact_factors`` (float64 QR + SVD of R), which makes
        U_J, V_J and U_perp consistent; see ``docs/ssvdo.md``.
        """
        if tuple(weight.shape) != (self.out_features, self.in_features):
            raise ValueError(
                f"weight shape {tuple(weight.shape)} != adapter shape {(self.out_features, self.in_features)}"
            )
        factors, reflectors, h_tau = factorise(
            weight, self._indices, complement=bool(self.outer_rank), route=route
        )
        self.decomposition_route = factors.route
        self.svd_U.copy_(factors.U)
        self.svd_s.copy_(factors.s)
        self.svd_V.copy_(factors.V)
        if self.outer_rank:
            self.perp_reflectors.copy_(reflectors)
            self.perp_tau.copy_(h_tau)
        for param in self.trainable_parameters:
            param.zero_()

    # ------------------------------------------------------- parameter side
    def inner_rotation(self, inner_skew: torch.Tensor | None = None) -> torch.Tensor | None:
        """G (k, k) from ``inner_skew`` (default: the parameter), None when k <= 1.

        v1: K = skew(inner_skew); v2: K = skew(inner_skew) / (2 sqrt(k - 1)).
        """
        k = self.inner_rank
        if k < 2:
            return None
        vec = self.inner_skew if inner_skew is None else inner_skew
        scale = inner_scale(k) if self.parameterisation == "v2" else 1.0
        return inner_rotation(vec, k, self.rotation, scale)

    def outer_factors(
        self, outer_L: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(C (l, l), Q (m - n, l)) from ``outer_L`` (default: the parameter), None when l = 0.

        v1: the Cholesky form with the configured tau (bit for bit as before). v2: the QR form
        with tau = m - n, i.e. the rotation of L / sqrt(m - n) with tau = 1: the principal
        angles satisfy tan(theta_i) = sigma_i(L) / sqrt(m - n), whatever ``tau`` says.
        """
        if not self.outer_rank:
            return None
        L = self.outer_L if outer_L is None else outer_L
        if self.parameterisation == "v1":
            return outer_rotation_cholesky(L, self.tau)
        return outer_rotation(L, float(L.shape[0]))

    def new_singular_values(self, delta_s: torch.Tensor | None = None) -> torch.Tensor:
        """s'_J (a,) from ``delta_s`` (default: the parameter): s + ds (v1) or s exp(ds) (v2)
        at the k inner positions, s elsewhere."""
        s, k = self.svd_s, self.inner_rank
        if k == 0:
            return s
        ds = self.delta_s if delta_s is None else delta_s
        start = self._inner_start
        if k == self.num_components:
            inner = s
        else:
            inner = s[start : start + k]
        inner = inner + ds if self.parameterisation == "v1" else inner * torch.exp(ds)
        if k == self.num_components:
            return inner
        return torch.cat([s[:start], inner, s[start + k :]])

    def _inner_block(self, G: torch.Tensor) -> torch.Tensor:
        """G_full (a, a): G at the inner positions, I elsewhere (G itself when k = a)."""
        a, k, start = self.num_components, self.inner_rank, self._inner_start
        if k == a:
            return G
        opts = {"dtype": G.dtype, "device": G.device}
        return torch.block_diag(torch.eye(start, **opts), G, torch.eye(a - start - k, **opts))

    # ----------------------------------------------------------------- maths
    def _complement(self, coords: torch.Tensor) -> torch.Tensor:
        return apply_complement(self.perp_reflectors, self.perp_tau, coords)

    def adapted_factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The changed components of W' = U' diag(s') V'^T: U'_J (m, a), s'_J (a,), V'_J (n, a).

        All other singular components of W' equal those of W0.
        """
        outer = self.outer_factors()
        G = self.inner_rotation()
        U = self.svd_U
        if outer is not None:
            C, Q = outer
            top = self.outer_rank
            U = torch.cat([U[:, :top] @ C + self._complement(Q), U[:, top:]], dim=1)
        V = self.svd_V if G is None else self.svd_V @ self._inner_block(G)
        return U, self.new_singular_values(), V

    def _cores(self, *generators: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(core_top,) or (core_top, U_perp Q, core_outer) from the registered generators
        (``trainable_parameters`` order; see ``delta_blocks``): a x a and (m - n) x l
        operations and one ``ormqr``."""
        given = dict(zip(self.generator_names, generators, strict=True))
        outer = self.outer_factors(given.get("outer_L"))
        G = self.inner_rotation(given.get("inner_skew"))
        s_new = self.new_singular_values(given.get("delta_s"))
        if G is None:
            scaled = torch.diag(s_new)
        else:
            scaled = s_new[:, None] * self._inner_block(G).T  # diag(s') G_full^T, (a, a)
        shift = torch.diag(self.svd_s)
        if outer is None:
            return (scaled - shift,)
        C, Q = outer
        top = self.outer_rank
        core_top = torch.cat([C @ scaled[:top], scaled[top:]], dim=0) - shift
        return core_top, self._complement(Q), scaled[:top]

    def delta_blocks(self) -> DeltaBlocks:
        """Factors of dW = W' - W0 with the frozen and the trainable left factor apart.

        With U'_J = U_J C_full + U_perp [Q, 0] and V'_J = V_J G_full:
        dW = U_J core_top V_J^T + (U_perp Q) core_outer V_J^T, where
        core_top = C_full diag(s') G_full^T - diag(s) and core_outer = (diag(s') G_full^T)[:l].
        Keeping U_J (a buffer) apart from U_perp Q means autograd never computes a gradient
        for the m x a frozen factor, only for the m x l one. The parameter side (everything
        that does not scale with the tokens, ``ormqr`` included: blocked into 32-column
        panels it is many small parallel regions too) runs on one CPU thread
        (``serial.serial_call``); the token-sized products in the forward keep every thread.
        """
        cores = serial_call(self._cores, *self.trainable_parameters)
        if len(cores) == 1:
            return DeltaBlocks(self.svd_U, cores[0], None, None, self.svd_V)
        return DeltaBlocks(self.svd_U, cores[0], cores[1], cores[2], self.svd_V)

    def delta_parts(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """dW = left @ core @ V_J^T (rank <= a + l <= 2a) in one piece.

        Returns
        -------
        left : torch.Tensor
            [U_J, U_perp Q], shape (m, a + l).
        core : torch.Tensor
            [core_top; core_outer], shape (a + l, a).
        V : torch.Tensor
            V_J, shape (n, a) (a frozen buffer).
        """
        blocks = self.delta_blocks()
        if blocks.outer_left is None:
            return blocks.U, blocks.core_top, blocks.V
        left = torch.cat([blocks.U, blocks.outer_left], dim=1)
        return left, torch.cat([blocks.core_top, blocks.core_outer], dim=0), blocks.V

    def delta_weight(self) -> torch.Tensor:
        """dW = W' - W0, shape (m, n)."""
        return self.delta_blocks().dense()

    def adapted_weight(self, weight: torch.Tensor) -> torch.Tensor:
        """W' = ``weight`` + dW, shape (m, n), with dW accumulated into a copy of ``weight``."""
        return self.delta_blocks().dense(weight)

    def forward_kind(self, tokens: int, training: bool) -> str:
        """The forward path for a call over ``tokens`` rows: "lowrank", "hybrid" or "dense"
        (``forward_path`` forces one; "auto": ``forward.cheapest_path``)."""
        if self.forward_path not in FORWARD_PATHS:
            raise ValueError(
                f"forward_path must be one of {FORWARD_PATHS}, got {self.forward_path!r}"
            )
        if self.forward_path != "auto":
            return self.forward_path
        return cheapest_path(
            self.out_features,
            self.in_features,
            self.num_components,
            self.outer_rank,
            tokens,
            training,
        )

    def _recompute_for_input_grad(self, tokens: int) -> bool:
        """Hybrid path: form W' again for grad x rather than per token (``forward``)."""
        return recompute_input_grad(
            self.out_features, self.in_features, self.num_components, self.outer_rank, tokens
        )

    def _use_lowrank(self, tokens: int, training: bool) -> bool:
        """``forward_kind(tokens, training) == "lowrank"``."""
        return self.forward_kind(tokens, training) == "lowrank"

    def lowrank_delta(self, x: torch.Tensor) -> torch.Tensor:
        """x dW^T through the factors, x: (..., n) -> (..., m)."""
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        out = x2.new_zeros(x2.shape[0], self.out_features)
        return self.delta_blocks().add_lowrank_(out, x2).view(*lead, self.out_features)

    def adapted_linear(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        """x W'^T + b with W' = weight + dW, by the cheaper path. x: (..., n) -> (..., m)."""
        if self.num_components == 0:
            return F.linear(x, weight, bias)
        training = torch.is_grad_enabled() and any(
            p.requires_grad for p in self.trainable_parameters
        )
        tokens = x.numel() // max(self.in_features, 1)
        kind = self.forward_kind(tokens, training)
        if kind == "hybrid" and not training:
            kind = "dense"  # no gradient wanted: the hybrid path is the dense one
        if kind == "hybrid" and (weight.requires_grad or (bias is not None and bias.requires_grad)):
            kind = "lowrank"  # a trainable base needs x for its gradient; the hybrid keeps x V
        if training and not x.is_contiguous() and self.forward_path == "auto":
            # torch.matmul flattens a strided (..., n) input differently when the weight needs
            # a gradient, so a dense W' (even == W0 at init) would round unlike the base layer.
            kind = "lowrank"
        if kind == "hybrid":
            x2 = x.reshape(-1, self.in_features)
            b = self.delta_blocks()
            out = hybrid_linear(
                x2,
                weight,
                bias,
                b.U,
                b.core_top,
                b.outer_left,
                b.core_outer,
                b.V,
                recompute=self._recompute_for_input_grad(tokens),
            )
            return out.view(*x.shape[:-1], self.out_features)
        if kind == "lowrank":
            if not x.is_contiguous():
                # Flattening would copy x, and F.linear on the copy rounds differently from
                # F.linear on x: keep the base product on x itself.
                return F.linear(x, weight, bias) + self.lowrank_delta(x)
            # The low-rank terms accumulate into the base output in place (addmm_): no
            # tokens x m temporary and no extra pass over it. F.linear keeps only its inputs
            # for backward, so writing into its output is safe for autograd. A contiguous x
            # flattens to a view, and F.linear on it is the very same GEMM as on x.
            x2 = x.view(-1, self.in_features)
            out = self.delta_blocks().add_lowrank_(F.linear(x2, weight, bias), x2)
            return out.view(*x.shape[:-1], self.out_features)
        return F.linear(x, self.adapted_weight(weight).to(x.dtype), bias)

    def extra_repr(self) -> str:
        return (
            f"out_features={self.out_features}, in_features={self.in_features}, "
            f"inner_rank={self.inner_rank}, outer_rank={self.outer_rank}, tau={self.tau:g}, "
            f"rotation={self.rotation!r}, subspace={self.subspace!r}, "
            f"parameterisation={self.parameterisation!r}"
        )


def _drop_empty_generators(module: SSVDOAdapter, state_dict: dict, prefix: str, *args: Any) -> None:
    """Checkpoints from before zero-size generators were dropped carry them as empty tensors
    (e.g. ``outer_L`` of shape (m - n, 0)): skip those where this adapter has none."""
    for name in GENERATORS:
        key = prefix + name
        value = state_dict.get(key)
        if getattr(module, name) is None and torch.is_tensor(value) and value.numel() == 0:
            del state_dict[key]
