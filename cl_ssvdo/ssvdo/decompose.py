"""Partial SVD of a frozen weight: the few singular triplets SSVD-O adapts, and the
orthonormal complement of its column space kept as Householder reflectors.

Why not ``torch.linalg.svd``: SSVD-O only changes a handful of components (indices J, |J| = a),
so computing all r of them and storing U (m x r), V (n x r) is wasted work and memory.
Below, A is W in its tall orientation (big x small: W if m >= n, else W^T).

Routes of ``singular_triplets`` (``TopFactors.route`` says which one produced the factors):

- ``"float32"``, the Gram route (``route="auto"``, float32/float16/bfloat16 weights, J = the
  top a components, b = a + 8 at most ``WIDE_BLOCK`` of the small side):
  1. Gram matrix A^T A in float32 (lower triangle only, by column blocks: ``eigh`` reads no
     more); X = eigenvectors of the top b eigenvalues: a float32 ``eigh``, partial
     (``syevr``, only those b) on one CPU thread for large small sides (``partial_eigh``).
  2. One subspace-iteration step with Rayleigh-Ritz: Y = A X and Z = A^T Y (float32 GEMMs);
     R = cholesky(Y^T Y) in float64 (Cholesky QR of Y, Q = Y R^-1 never formed), so
     A^T Q = Z R^-1; eigh of the b x b matrix (Z R^-1)^T (Z R^-1) in float64 -> H, sigma^2;
     U = Q H = Y (R^-1 H), V = Z R^-1 H / sigma; keep the top a.
     A float32 Gram alone leaks eps32 * s_1^2 / gap of the rest of the spectrum into X
     (3e-7 to 6e-6 of s_1 measured); the step damps that leak by (s_i / s_j)^2 and the
     Rayleigh-Ritz makes U^T A = S V^T hold to rounding by construction.
- ``"qr-float32"`` / ``"qr-float64"`` (``qr_triplets``): one float32 ``geqrf`` A = Q [R; 0],
  the triplets (P, s, V) of the small triangle R, U = Q [P; 0] by ``ormqr``. For the outer
  transform ``factorise`` shares this ``geqrf`` with the complement (below) and solves R by
  the Gram route ("qr-float32": R^T R and the subspace step cost a quarter of A's for
  m = 4n). Where b exceeds ``WIDE_BLOCK`` of the small side (J covers most of the spectrum,
  as on small layers at equal budget) the b x b float64 ``eigh`` of step 2 costs as much as
  the whole problem, so R^T R goes to one float64 ``eigh`` instead ("qr-float64": leak
  eps64 s_1^2 / gap, V = X_J, P = R V / s), with or without the complement.
- Verification of every float32 route (``probe_ok``): probes A (V g) - U (S g) and
  A^T (U h) - V (S h) with 4 fixed random vectors each. If one exceeds 16 eps(float32) s_1 |g|
  (or Cholesky fails, or (s_1 / s_b)^2 > 1e8) the result is discarded and the float64 route
  runs. This happens for weights whose top singular values tower over the bulk (e.g. 80x),
  where the float32 Gram cannot resolve the bulk.
- ``"float64"`` (float64 weights, non-top index sets such as ``subspace="tail"``, fallback,
  or ``route="float64"``): float64 Gram, full ``eigh``, the eigenvectors of J, Rayleigh-Ritz
  by a thin SVD of A X_J (big x a) in float64.
- ``"randomized"`` (opt-in only, ``route="randomized"``, top index sets): a seeded range
  finder with power iterations and Rayleigh-Ritz (``randomized``). An approximation where the
  spectrum has no gap at a; no verification, no fallback.

All but the randomised route return factors with W V = U diag(s) and U^T W = diag(s) V^T to
working precision. ``use_route`` sets the route for a block of code (e.g. one injection).

Complement (only for the outer transform, m > n): one ``geqrf`` of W. Its reflectors (m x n
numbers) represent the full Q = H_1 ... H_n; the last m - n columns of Q are an orthonormal
basis U_perp of span(W)^perp = span(U)^perp. ``apply_complement`` multiplies by U_perp with
``torch.ormqr`` (differentiable) without ever forming the m x (m - n) matrix. LAPACK wants the
reflectors column-major (as ``geqrf`` returns them); ``torch.ormqr`` copies any other layout
on every call, so keep them that way (``column_major``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch

from .partial_eigh import top_eigh
from .randomized import randomized_triplets

COMPUTE_DTYPE = torch.float64
ROUTES = ("auto", "float64", "randomized")
WIDE_BLOCK = 0.55  # "auto": J + FAST_PAD above this share of the small side takes the QR route
FAST_PAD = 8  # extra Ritz vectors beyond a: resolves near-degenerate pairs at the boundary
FAST_LEAK_TOL = 16.0  # probe residual / s_1 allowed, in units of eps of the working dtype
FAST_MAX_COND2 = 1e8  # (s_1 / s_b)^2 above which Cholesky QR in float64 is not trusted

_ROUTE: ContextVar[str] = ContextVar("ssvdo_decomposition_route", default="auto")


@dataclass
class TopFactors:
    """Singular triplets of W for the indices J (descending singular-value order).

    U: (m, a), s: (a,), V: (n, a), with W V = U diag(s) and U^T W = diag(s) V^T.
    ``route`` is the route that produced them (module docstring): "float32", "qr-float32",
    "qr-float64" (fast, verified), "float64", "float64-qr-svd" (``completion``) or
    "randomized".
    """

    U: torch.Tensor
    s: torch.Tensor
    V: torch.Tensor
    route: str = "float64"


def _check_route(route: str) -> str:
    if route not in ROUTES:
        raise ValueError(f"route must be one of {ROUTES}, got {route!r}")
    return route


@contextmanager
def use_route(route: str) -> Iterator[None]:
    """Within the block, ``route=None`` (every layer's set-up) means ``route``.

    >>> with use_route("float64"):
    ...     singular_triplets(torch.randn(6, 4), [0]).route
    'float64'
    """
    token = _ROUTE.set(_check_route(route))
    try:
        yield
    finally:
        _ROUTE.reset(token)


def current_route(route: str | None = None) -> str:
    """``route`` if given, else the one ``use_route`` set ("auto" outside any block)."""
    return _check_route(_ROUTE.get() if route is None else route)


def _check_indices(idx: list[int], r: int) -> None:
    if any(b <= a for a, b in zip(idx, idx[1:], strict=False)) or (
        idx and not 0 <= idx[0] <= idx[-1] < r
    ):
        raise ValueError(f"indices must be strictly increasing in [0, {r}), got {idx}")


def tall(weight: torch.Tensor) -> torch.Tensor:
    """A: ``weight`` (m, n) in its tall orientation, (max(m, n), min(m, n)); a view."""
    return weight if weight.shape[0] >= weight.shape[1] else weight.T


def working_copy(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` detached, in float32 unless it is float32 or float64 already."""
    work = weight.detach()
    return work if work.dtype in (torch.float32, torch.float64) else work.float()


def fast_applies(weight: torch.Tensor, idx: list[int]) -> bool:
    """The float32 routes apply: a non-float64 weight and J = the top |J| components."""
    return weight.dtype != COMPUTE_DTYPE and bool(idx) and idx == list(range(len(idx)))


def factors_from_tall(
    weight: torch.Tensor, big: torch.Tensor, s: torch.Tensor, small: torch.Tensor, route: str
) -> TopFactors:
    """TopFactors in ``weight``'s dtype from the tall orientation's (big, s, small)."""
    U, V = (big, small) if weight.shape[0] >= weight.shape[1] else (small, big)
    dtype = weight.dtype
    return TopFactors(U.to(dtype), s.to(dtype), V.to(dtype), route)


def singular_triplets(
    weight: torch.Tensor, indices: Sequence[int], route: str | None = None
) -> TopFactors:
    """Singular triplets of ``weight`` for the given (0-based, descending) indices.

    Arguments
    ---------
    weight : torch.Tensor
        W, shape (m, n).
    indices : sequence of int
        Strictly increasing indices into the descending singular values, each < min(m, n).
    route : str or None
        "auto": a verified float32 route where one applies (module docstring), else float64;
        "float64": always the float64 route; "randomized": the randomised range finder for a
        top index set (float64 for any other). None: the route of ``use_route`` ("auto").

    Returns
    -------
    TopFactors
        U (m, a), s (a,), V (n, a) in ``weight``'s dtype and device.

    Example
    -------
    >>> W = torch.randn(6, 4, dtype=torch.float64)
    >>> f = singular_triplets(W, [0, 1])
    >>> bool(torch.allclose(f.s, torch.linalg.svdvals(W)[:2])), f.route
    (True, 'float64')
    >>> singular_triplets(W.float(), [0, 1]).route  # b = 2 + 8 > 0.55 * 4: most of the spectrum
    'qr-float64'
    """
    route = current_route(route)
    m, n = weight.shape
    idx = list(indices)
    _check_indices(idx, min(m, n))
    if not idx:
        empty = weight.new_zeros
        return TopFactors(empty(m, 0), empty(0), empty(n, 0))
    top = idx == list(range(len(idx)))
    if route == "randomized" and top:
        U, s, V = randomized_triplets(tall(working_copy(weight)), len(idx))
        return factors_from_tall(weight, U, s, V, "randomized")
    if route == "auto" and fast_applies(weight, idx):
        fast = _fast_triplets(working_copy(weight).float(), len(idx))
        if fast is not None:
            return factors_from_tall(weight, *fast)
    return factors_from_tall(weight, *_triplets_float64(weight.detach(), idx), "float64")


def wide_block(a: int, small: int) -> bool:
    """J covers most of the spectrum: b = a + ``FAST_PAD`` > ``WIDE_BLOCK`` x the small side.
    There the float64 ``eigh`` of b x b in the Gram route's step 2 costs about as much as a
    float64 ``eigh`` of the whole small x small problem, so the QR route solves that instead."""
    return a + FAST_PAD > WIDE_BLOCK * small


def qr_route(a: int, small: int) -> str:
    """Name of the route ``qr_triplets`` takes for ``a`` of ``small`` components."""
    return "qr-float64" if wide_block(a, small) else "qr-float32"


def _fast_triplets(W: torch.Tensor, a: int) -> tuple[torch.Tensor, ...] | None:
    """(big, s, small, route) of the float32 W's tall orientation, or None when not verified."""
    A = tall(W)
    if wide_block(a, A.shape[1]):
        reflectors, h_tau = torch.geqrf(A)
        got, route = qr_triplets(A, a, reflectors, h_tau), qr_route(a, A.shape[1])
    else:
        got, route = _gram_triplets(A, a), "float32"
    if got is None or not probe_ok(A, *got):
        return None
    return (*got, route)


def _triplets_float64(W: torch.Tensor, idx: list[int]) -> tuple[torch.Tensor, ...]:
    """(big, s, small) in float64: full float64 eigh of the Gram matrix, then Rayleigh-Ritz."""
    A = tall(W.to(COMPUTE_DTYPE))  # (big, small); its right singular vectors come from the Gram
    r = A.shape[1]
    _, vecs = torch.linalg.eigh(A.T @ A)  # ascending eigenvalues
    order = torch.tensor([r - 1 - j for j in idx], device=W.device)
    small_side = vecs[:, order]
    # Rayleigh-Ritz: exact SVD of A restricted to the chosen subspace.
    big_side, s, zt = torch.linalg.svd(A @ small_side, full_matrices=False)
    return big_side, s, small_side @ zt.T


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


def _gram_triplets(A: torch.Tensor, a: int) -> tuple[torch.Tensor, ...] | None:
    """(big, s, small) in float64 for the top ``a`` components of the float32 tall A (steps 1
    and 2 of the Gram route), or None when the Cholesky QR is not trusted."""
    small = A.shape[1]
    b = min(small, a + FAST_PAD)
    blocks = 4 if A.device.type == "cpu" and small >= 512 else 1
    _, X = top_eigh(_lower_gram(A, blocks), b)  # ascending, reads the lower triangle
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
    return big_side, s, small_side


def _eigh64_triplets(R: torch.Tensor, a: int) -> tuple[torch.Tensor, ...] | None:
    """(P, s, V) in float64 for the top ``a`` of the small square R: float64 Gram and full
    float64 ``eigh`` (leak eps64 s_1^2 / gap: nothing to refine), V = X_J, P = R V / s.
    P^T P = I to eps64 (s_1 / s_a)^2: None where that ratio squared exceeds
    ``FAST_MAX_COND2``."""
    R64 = R.to(COMPUTE_DTYPE)
    V = top_eigh(R64.T @ R64, a)[1].flip(1)
    RV = R64 @ V
    s = torch.linalg.vector_norm(RV, dim=0)
    if not bool(s[-1] ** 2 > s[0] ** 2 / FAST_MAX_COND2):
        return None
    return RV / s, s, V


def qr_triplets(
    A: torch.Tensor, a: int, reflectors: torch.Tensor, householder_tau: torch.Tensor
) -> tuple[torch.Tensor, ...] | None:
    """Top ``a`` triplets (big, s, small) of the float32 tall A (big, small) from its ``geqrf``.

    A = Q [R; 0] with Q = H_1 ... H_small (``reflectors`` (big, small), ``householder_tau``
    (small,)). The triplets (P, s, V) of the triangle R (small, small) come from the Gram
    route on R, or, where J covers most of the spectrum (``wide_block``), from a float64
    ``eigh`` of R^T R; U = Q [P; 0] by ``ormqr``, so U is orthogonal to the complement the same
    reflectors give, to rounding. None when (s_1 / s_b)^2 > ``FAST_MAX_COND2`` (Cholesky QR or
    P = R V / s not trusted); not verified here (``probe_ok`` does that).
    """
    big, small = A.shape
    R = reflectors[:small].triu()
    got = _eigh64_triplets(R, a) if wide_block(a, small) else _gram_triplets(R, a)
    if got is None:
        return None
    P, s, V = got
    coords = A.new_zeros(big, a)
    coords[:small] = P
    return torch.ormqr(reflectors, householder_tau, coords), s, V


def _times(M: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """M @ x for a few columns x; a transposed M as (x^T M^T)^T, which MKL runs ~20x faster
    than its transposed narrow GEMM (39 vs 2 ms for a 4096 x 1024 M, 4 columns)."""
    return M @ x if M.is_contiguous() else (x.T @ M.T).T


def probe_ok(A: torch.Tensor, big: torch.Tensor, s: torch.Tensor, small: torch.Tensor) -> bool:
    """The float32 routes' verification: |A (V g) - U (S g)| and |A^T (U h) - V (S h)| at most
    16 eps(A) s_1 |g| for 4 fixed random g, h (one side holds by construction on each route,
    the probe checks both). A (big, small), U (big, a), s (a,), V (small, a)."""
    a = s.shape[0]
    gen = torch.Generator(device=A.device).manual_seed(0)
    g = torch.randn(2, a, 4, generator=gen, device=A.device, dtype=COMPUTE_DTYPE)
    V, U, s64 = small.to(COMPUTE_DTYPE), big.to(COMPUTE_DTYPE), s.to(COMPUTE_DTYPE)
    right = _times(A, (V @ g[0]).to(A.dtype)).to(COMPUTE_DTYPE) - U @ (s64[:, None] * g[0])
    left = _times(A.T, (U @ g[1]).to(A.dtype)).to(COMPUTE_DTYPE) - V @ (s64[:, None] * g[1])
    leak = torch.cat([right.norm(dim=0), left.norm(dim=0)]) / g.norm(dim=1).flatten()
    return bool(leak.max() <= FAST_LEAK_TOL * torch.finfo(A.dtype).eps * s64[0])


def column_major(t: torch.Tensor) -> torch.Tensor:
    """``t`` (rows, cols) with column-major strides (1, rows): what LAPACK reads without a copy."""
    return t.mT.contiguous().mT


def check_complement(shape: Sequence[int], complement: bool = True) -> None:
    """``ValueError`` when a complement is asked of a weight with m <= n (there is none).

    >>> check_complement((4, 3)); check_complement((3, 3), complement=False)
    """
    m, n = shape
    if complement and m <= n:
        raise ValueError(f"the complement exists only for m > n, got weight shape {(m, n)}")


def complement_reflectors(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Householder QR of W (m x n, m > n): ``(reflectors (m, n), householder_tau (n,))``.

    The full orthogonal factor Q (m x m) of ``torch.geqrf``; its columns n..m-1 are an
    orthonormal basis of the complement of span(W) (= span(U) for full-rank W). The
    reflectors come back column-major (strides (1, m)), the layout ``torch.ormqr`` reads.
    """
    check_complement(weight.shape)
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
