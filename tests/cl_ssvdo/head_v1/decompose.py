"""Partial SVD of a frozen weight: the few singular triplets SSVD-O adapts, and the
orthonormal complement of its column space kept as Householder reflectors.

Why not ``torch.linalg.svd``: SSVD-O only changes a handful of components (indices J, |J| = a),
so computing all r of them and storing U (m x r), V (n x r) is wasted work and memory.
Below, A is W in its tall orientation (big x small: W if m >= n, else W^T).

Fast route (``route="auto"``; float32/float16/bfloat16 weights, J = the top a components):
1. Gram matrix A^T A in float32 (lower triangle only, by column blocks: ``eigh`` reads no
   more), full float32 ``eigh``; X = eigenvectors of the top b = a + 8 eigenvalues.
2. One subspace-iteration step with Rayleigh-Ritz: Y = A X and Z = A^T Y (float32 GEMMs);
   R = cholesky(Y^T Y) in float64 (Cholesky QR of Y, Q = Y R^-1 never formed), so
   A^T Q = Z R^-1; eigh of the b x b matrix (Z R^-1)^T (Z R^-1) in float64 -> H, sigma^2;
   U = Q H = Y (R^-1 H), V = Z R^-1 H / sigma; keep the top a.
   A float32 Gram alone leaks eps32 * s_1^2 / gap of the rest of the spectrum into X
   (3e-7 to 6e-6 of s_1 measured); the step damps that leak by (s_i / s_j)^2 and the
   Rayleigh-Ritz makes U^T A = S V^T hold to rounding by construction.
3. Verification: a probe A (V g) - U (S g) with 4 fixed random vectors g. If its relative
   size exceeds 16 eps(float32) (or Cholesky fails, or cond(Y)^2 > 1e8) the result is
   discarded and the float64 route runs. This happens for weights whose top singular values
   tower over the bulk (e.g. 80x), where the float32 Gram cannot resolve the bulk.
Float64 route (float64 weights, non-top index sets such as ``subspace="tail"``, or fallback):
1. Gram matrix in float64, full ``eigh``, keep the eigenvectors of J.
2. Rayleigh-Ritz: thin SVD of A X_J (big x a) in float64.
Both return factors with W V = U diag(s) and U^T W = diag(s) V^T to working precision.

Complement (only for the outer transform, m > n): one ``geqrf`` of W. Its reflectors (m x n
numbers) represent the full Q = H_1 ... H_n; the last m - n columns of Q are an orthonormal
basis U_perp of span(W)^perp = span(U)^perp. ``apply_complement`` multiplies by U_perp with
``torch.ormqr`` (differentiable) without ever forming the m x (m - n) matrix. LAPACK wants the
reflectors column-major (as ``geqrf`` returns them); ``torch.ormqr`` copies any other layout
on every call, so keep them that way (``column_major``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

COMPUTE_DTYPE = torch.float64
ROUTES = ("auto", "float64")
FAST_PAD = 8  # extra Ritz vectors beyond a: resolves near-degenerate pairs at the boundary
FAST_LEAK_TOL = 16.0  # probe residual / s_1 allowed, in units of eps of the working dtype
FAST_MAX_COND2 = 1e8  # (s_1 / s_b)^2 above which Cholesky QR in float64 is not trusted


@dataclass
class TopFactors:
    """Singular triplets of W for the indices J (descending singular-value order).

    U: (m, a), s: (a,), V: (n, a), with W V = U diag(s) and U^T W = diag(s) V^T.
    ``route`` is the route that produced them: "float32" (fast, verified) or "float64".
    """

    U: torch.Tensor
    s: torch.Tensor
    V: torch.Tensor
    route: str = "float64"


def _check_indices(idx: list[int], r: int) -> None:
    if any(b <= a for a, b in zip(idx, idx[1:], strict=False)) or (
        idx and not 0 <= idx[0] <= idx[-1] < r
    ):
        raise ValueError(f"indices must be strictly increasing in [0, {r}), got {idx}")


def singular_triplets(
    weight: torch.Tensor, indices: Sequence[int], route: str = "auto"
) -> TopFactors:
    """Singular triplets of ``weight`` for the given (0-based, descending) indices.

    Arguments
    ---------
    weight : torch.Tensor
        W, shape (m, n).
    indices : sequence of int
        Strictly increasing indices into the descending singular values, each < min(m, n).
    route : str
        "auto": the verified float32 route where it applies (module docstring), else float64;
        "float64": always the float64 route.

    Returns
    -------
    TopFactors
        In ``weight``'s dtype and device.

    Example
    -------
    >>> W = torch.randn(6, 4, dtype=torch.float64)
    >>> f = singular_triplets(W, [0, 1])
    >>> bool(torch.allclose(f.s, torch.linalg.svdvals(W)[:2])), f.route
    (True, 'float64')
    """
    if route not in ROUTES:
        raise ValueError(f"route must be one of {ROUTES}, got {route!r}")
    m, n = weight.shape
    idx = list(indices)
    _check_indices(idx, min(m, n))
    out_dtype = weight.dtype
    if not idx:
        empty = weight.new_zeros
        return TopFactors(empty(m, 0), empty(0), empty(n, 0))
    W = weight.detach()
    if route == "auto" and W.dtype != COMPUTE_DTYPE and idx == list(range(len(idx))):
        fast = _top_triplets_float32(W, len(idx))
        if fast is not None:
            U, s, V = fast
            return TopFactors(U.to(out_dtype), s.to(out_dtype), V.to(out_dtype), "float32")
    U, s, V = _triplets_float64(W, idx)
    return TopFactors(U.to(out_dtype), s.to(out_dtype), V.to(out_dtype), "float64")


def _triplets_float64(W: torch.Tensor, idx: list[int]) -> tuple[torch.Tensor, ...]:
    """(U, s, V) in float64: full float64 eigh of the Gram matrix, then Rayleigh-Ritz."""
    m, n = W.shape
    r = min(m, n)
    W = W.to(COMPUTE_DTYPE)
    tall = m >= n
    A = W if tall else W.T  # (big, small); its right singular vectors come from the Gram
    _, vecs = torch.linalg.eigh(A.T @ A)  # ascending eigenvalues
    order = torch.tensor([r - 1 - j for j in idx], device=W.device)
    small_side = vecs[:, order]
    # Rayleigh-Ritz: exact SVD of A restricted to the chosen subspace.
    big_side, s, zt = torch.linalg.svd(A @ small_side, full_matrices=False)
    small_side = small_side @ zt.T
    return (big_side, s, small_side) if tall else (small_side, s, big_side)


def _lower_gram(A: torch.Tensor, blocks: int) -> torch.Tensor:
    """Lower triangle (and diagonal blocks) of A^T A, (small, small); the rest is zero.

    Column blocks skip the strictly-upper block products: (blocks + 1) / (2 blocks) of the
    multiply-adds of ``A.T @ A``.
    """
    small = A.shape[1]
    if blocks <= 1:
        return A.T @ A
    gram = A.new_zeros(small, small)
    edges = [round(i * small / blocks) for i in range(blocks + 1)]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        gram[lo:, lo:hi] = A[:, lo:].T @ A[:, lo:hi]
    return gram


def _top_triplets_float32(W: torch.Tensor, a: int) -> tuple[torch.Tensor, ...] | None:
    """(U, s, V) in float64 for the top ``a`` components, or None when not verified."""
    m, n = W.shape
    tall = m >= n
    A = W if tall else W.T
    if A.dtype != torch.float32:
        A = A.float()
    small = A.shape[1]
    b = min(small, a + FAST_PAD)
    blocks = 4 if A.device.type == "cpu" and small >= 512 else 1
    _, vecs = torch.linalg.eigh(_lower_gram(A, blocks))  # ascending, reads the lower triangle
    X = vecs[:, small - b :]
    Y = A @ X  # (big, b), one subspace-iteration step starts here
    Z = (A.T @ Y).to(COMPUTE_DTYPE)  # A^T A X, (small, b)
    Y = Y.to(COMPUTE_DTYPE)
    # Cholesky QR of Y without forming Q = Y R^-1 (big x b): only Z R^-1 = A^T Q is needed.
    R, info = torch.linalg.cholesky_ex(Y.T @ Y, upper=True)
    if int(info) != 0:
        return None
    Zq = torch.linalg.solve_triangular(R, Z, upper=True, left=False)  # A^T Q, (small, b)
    sig2, H = torch.linalg.eigh(Zq.T @ Zq)  # ascending
    if not bool(sig2[0] > sig2[-1] / FAST_MAX_COND2):
        return None
    sig2, H = sig2.flip(0)[:a], H.flip(1)[:, :a]
    s = sig2.sqrt()
    small_side = (Zq @ H) / s
    big_side = Y @ torch.linalg.solve_triangular(R, H, upper=True)  # Q H
    # Probe of the leak A V - U S (U^T A = S V^T holds by construction).
    gen = torch.Generator(device=A.device).manual_seed(0)
    g = torch.randn(a, 4, generator=gen, device=A.device, dtype=COMPUTE_DTYPE)
    resid = (A @ (small_side @ g).to(A.dtype)).to(COMPUTE_DTYPE) - big_side @ (s[:, None] * g)
    leak = (resid.norm(dim=0) / g.norm(dim=0)).max() / s[0]
    if not bool(leak <= FAST_LEAK_TOL * torch.finfo(A.dtype).eps):
        return None
    return (big_side, s, small_side) if tall else (small_side, s, big_side)


def column_major(t: torch.Tensor) -> torch.Tensor:
    """``t`` (rows, cols) with column-major strides (1, rows): what LAPACK reads without a copy."""
    return t.mT.contiguous().mT


def complement_reflectors(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Householder QR of W (m x n, m > n): ``(reflectors (m, n), householder_tau (n,))``.

    The full orthogonal factor Q (m x m) of ``torch.geqrf``; its columns n..m-1 are an
    orthonormal basis of the complement of span(W) (= span(U) for full-rank W). The
    reflectors come back column-major (strides (1, m)), the layout ``torch.ormqr`` reads.
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
    return column_major(reflectors.to(weight.dtype)), h_tau.to(weight.dtype)


def apply_complement(
    reflectors: torch.Tensor, householder_tau: torch.Tensor, coords: torch.Tensor
) -> torch.Tensor:
    """U_perp @ coords without forming U_perp.

    Arguments
    ---------
    reflectors : torch.Tensor
        Shape (m, n), from ``complement_reflectors`` (column-major avoids a copy per call).
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
    if reflectors.dtype not in (torch.float32, torch.float64):
        # No half-precision ormqr kernels: apply in float32 (a cast of the reflectors per call).
        out = torch.ormqr(reflectors.float(), householder_tau.float(), padded.float())
        return out.to(coords.dtype)
    return torch.ormqr(reflectors, householder_tau, padded, left=True, transpose=False)


def complement_basis(reflectors: torch.Tensor, householder_tau: torch.Tensor) -> torch.Tensor:
    """Dense U_perp, shape (m, m - n). For tests and inspection only."""
    m, n = reflectors.shape
    eye = torch.eye(m - n, dtype=reflectors.dtype, device=reflectors.device)
    return apply_complement(reflectors, householder_tau, eye)
