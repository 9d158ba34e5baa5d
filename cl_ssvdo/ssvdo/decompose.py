"""Partial SVD of a frozen weight: the few singular triplets SSVD-O adapts, and the
orthonormal complement of its column space kept as Householder reflectors.

Why not ``torch.linalg.svd``: SSVD-O only changes a handful of components (indices J, |J| = a),
so computing all r of them and storing U (m x r), V (n x r) is wasted work and memory.

Route (exact to the working precision, no iterations):
1. Gram matrix of the smaller side (n x n if m >= n, else m x m) in float64, full ``eigh``,
   keep the eigenvectors of the wanted indices. float64 absorbs the squared condition number
   of the Gram route, so the result is exact to float32 precision for any well-posed weight.
2. One Rayleigh-Ritz step: thin SVD of W V_J (m x a, cheap). It makes U_J orthonormal and
   W V_J = U_J diag(s_J) hold to rounding, even for tiny singular values.
3. Complement (only for the outer transform, m > n): one ``geqrf`` of W. Its reflectors
   (m x n numbers) represent the full Q = H_1 ... H_n; the last m - n columns of Q are an
   orthonormal basis U_perp of span(W)^perp = span(U)^perp. ``apply_complement`` multiplies by
   U_perp with ``torch.ormqr`` (differentiable) without ever forming the m x (m - n) matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

COMPUTE_DTYPE = torch.float64


@dataclass
class TopFactors:
    """Singular triplets of W for the indices J (descending singular-value order).

    U: (m, a), s: (a,), V: (n, a), with W V = U diag(s) and U^T W = diag(s) V^T.
    """

    U: torch.Tensor
    s: torch.Tensor
    V: torch.Tensor


def singular_triplets(weight: torch.Tensor, indices: Sequence[int]) -> TopFactors:
    """Exact singular triplets of ``weight`` for the given (0-based, descending) indices.

    Arguments
    ---------
    weight : torch.Tensor
        W, shape (m, n).
    indices : sequence of int
        Strictly increasing indices into the descending singular values, each < min(m, n).

    Returns
    -------
    TopFactors
        In ``weight``'s dtype and device.

    Example
    -------
    >>> W = torch.randn(6, 4, dtype=torch.float64)
    >>> f = singular_triplets(W, [0, 1])
    >>> bool(torch.allclose(f.s, torch.linalg.svdvals(W)[:2]))
    True
    """
    m, n = weight.shape
    r = min(m, n)
    idx = list(indices)
    if any(b <= a for a, b in zip(idx, idx[1:], strict=False)) or (
        idx and not 0 <= idx[0] <= idx[-1] < r
    ):
        raise ValueError(f"indices must be strictly increasing in [0, {r}), got {idx}")
    out_dtype = weight.dtype
    W = weight.detach().to(COMPUTE_DTYPE)
    if not idx:
        empty = W.new_zeros
        return TopFactors(
            empty(m, 0).to(out_dtype), empty(0).to(out_dtype), empty(n, 0).to(out_dtype)
        )
    tall = m >= n
    A = W if tall else W.T  # (big, small); its right singular vectors come from the Gram
    _, vecs = torch.linalg.eigh(A.T @ A)  # ascending eigenvalues
    order = torch.tensor([r - 1 - j for j in idx], device=W.device)
    small_side = vecs[:, order]
    # Rayleigh-Ritz: exact SVD of A restricted to the chosen subspace.
    big_side, s, zt = torch.linalg.svd(A @ small_side, full_matrices=False)
    small_side = small_side @ zt.T
    U, V = (big_side, small_side) if tall else (small_side, big_side)
    return TopFactors(U.to(out_dtype), s.to(out_dtype), V.to(out_dtype))


def complement_reflectors(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Householder QR of W (m x n, m > n): ``(reflectors (m, n), householder_tau (n,))``.

    The full orthogonal factor Q (m x m) of ``torch.geqrf``; its columns n..m-1 are an
    orthonormal basis of the complement of span(W) (= span(U) for full-rank W).
    """
    m, n = weight.shape
    if m <= n:
        raise ValueError(f"the complement exists only for m > n, got weight shape {(m, n)}")
    # Reflectors are stored in the working dtype anyway: factorising in it (at least float32)
    # is as accurate as factorising in float64 and rounding, and cheaper.
    work = weight.detach()
    if work.dtype not in (torch.float32, torch.float64):
        work = work.float()
    reflectors, h_tau = torch.geqrf(work)
    return reflectors.to(weight.dtype), h_tau.to(weight.dtype)


def apply_complement(
    reflectors: torch.Tensor, householder_tau: torch.Tensor, coords: torch.Tensor
) -> torch.Tensor:
    """U_perp @ coords without forming U_perp.

    Arguments
    ---------
    reflectors : torch.Tensor
        Shape (m, n), from ``complement_reflectors``.
    householder_tau : torch.Tensor
        Shape (n,).
    coords : torch.Tensor
        Shape (m - n, c).

    Returns
    -------
    torch.Tensor
        Shape (m, c): Q_full @ [0_(n x c); coords].
    """
    m, n = reflectors.shape
    padded = torch.cat([coords.new_zeros(n, coords.shape[-1]), coords], dim=0)
    return torch.ormqr(reflectors, householder_tau, padded, left=True, transpose=False)


def complement_basis(reflectors: torch.Tensor, householder_tau: torch.Tensor) -> torch.Tensor:
    """Dense U_perp, shape (m, m - n). For tests and inspection only."""
    m, n = reflectors.shape
    eye = torch.eye(m - n, dtype=reflectors.dtype, device=reflectors.device)
    return apply_complement(reflectors, householder_tau, eye)
