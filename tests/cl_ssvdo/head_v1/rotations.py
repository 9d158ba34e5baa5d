"""Rotation maps of SSVD-O: the inner (right-side) rotation and the outer (left-side) one.

Pure tensor functions, no state. See ``docs/ssvdo.md`` and the method note for the maths.

Inner: a skew-symmetric K (k x k, stored as its k(k-1)/2 strictly-upper entries) is mapped to a
rotation G, either the Cayley map (I - K)^-1 (I + K) (exactly orthogonal) or the first-order
map I + 2K of the SSVD code (orthogonal only to first order).

Outer: L ((m - n) x l) and tau > 0 give R = cholesky(L^T L + tau I), C = sqrt(tau) R^-T and
Q = L R^-T; [C; Q] has orthonormal columns for every L, and (C, Q) = (I, 0) at L = 0.
"""

from __future__ import annotations

import functools

import torch

ROTATIONS = ("cayley", "linear")


def skew_from_vector(vec: torch.Tensor, k: int) -> torch.Tensor:
    """Build the skew-symmetric K from its strictly upper-triangular entries.

    Arguments
    ---------
    vec : torch.Tensor
        Shape (k(k-1)/2,), row-major order of ``torch.triu_indices(k, k, 1)``.
    k : int
        Size of K.

    Returns
    -------
    torch.Tensor
        K, shape (k, k), with K^T = -K.

    Example
    -------
    >>> K = skew_from_vector(torch.tensor([1.0, 2.0, 3.0]), 3)
    >>> bool(torch.equal(K, -K.T))
    True
    """
    if vec.shape != (k * (k - 1) // 2,):
        raise ValueError(
            f"vec must have shape ({k * (k - 1) // 2},) for k={k}, got {tuple(vec.shape)}"
        )
    rows, cols = _triu_indices(k, vec.device)
    upper = vec.new_zeros(k, k).index_put((rows, cols), vec)
    return upper - upper.T


@functools.lru_cache(maxsize=64)
def _triu_indices(k: int, device: torch.device) -> torch.Tensor:
    """Strictly-upper indices of a k x k matrix, built once per (k, device) (every step needs them)."""
    return torch.triu_indices(k, k, 1, device=device)


def cayley(skew: torch.Tensor) -> torch.Tensor:
    """Cayley map G = (I - K)^-1 (I + K) of a skew-symmetric K, shape (k, k) -> (k, k).

    I - K is always invertible for skew K (eigenvalues 1 - i*lambda), and G is orthogonal.
    """
    # LU has no half-precision kernels on every device, and rounding I - K to 8 bits of
    # mantissa would cost orthogonality: solve in float32 at least.
    work = skew if skew.dtype in (torch.float32, torch.float64) else skew.float()
    eye = torch.eye(work.shape[-1], dtype=work.dtype, device=work.device)
    return torch.linalg.solve(eye - work, eye + work).to(skew.dtype)


def linear_rotation(skew: torch.Tensor) -> torch.Tensor:
    """First-order map G = I + 2K (what the SSVD code uses), shape (k, k) -> (k, k)."""
    eye = torch.eye(skew.shape[-1], dtype=skew.dtype, device=skew.device)
    return eye + 2.0 * skew


def inner_rotation(vec: torch.Tensor, k: int, rotation: str) -> torch.Tensor:
    """Rotation G (k x k) from the stored free entries ``vec`` (k(k-1)/2,)."""
    skew = skew_from_vector(vec, k)
    if rotation == "cayley":
        return cayley(skew)
    if rotation == "linear":
        return linear_rotation(skew)
    raise ValueError(f"rotation must be one of {ROTATIONS}, got {rotation!r}")


def outer_rotation(outer_L: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Coefficients of the outer rotation U'_l = U_l C + U_perp Q.

    Arguments
    ---------
    outer_L : torch.Tensor
        L, shape (m - n, l).
    tau : float
        Positive regulariser; the rotation angle grows like |L| / sqrt(tau).

    Returns
    -------
    C : torch.Tensor
        sqrt(tau) R^-T, shape (l, l).
    Q : torch.Tensor
        L R^-T, shape (m - n, l).

    Example
    -------
    >>> C, Q = outer_rotation(torch.zeros(5, 2, dtype=torch.float64), 1e-3)
    >>> bool(torch.allclose(C, torch.eye(2, dtype=torch.float64))), bool((Q == 0).all())
    (True, True)
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    # Evaluated in float64: the error of [C; Q]^T [C; Q] = I grows like eps * cond(L^T L + tau I),
    # and cond reaches |L|^2 / tau when L is near rank-deficient (as early in training), which
    # in float32 costs orthonormality (1e-3 measured at |L| / sqrt(tau) ~ 240); in float64 it
    # stays at rounding level. The matrices are only (m - n) x l, so this is cheap.
    L64 = outer_L.to(torch.float64)
    eye = torch.eye(outer_L.shape[-1], dtype=torch.float64, device=outer_L.device)
    R = torch.linalg.cholesky(L64.T @ L64 + tau * eye)
    # Solve X R^T = B for X = B R^-T; R^T is upper-triangular.
    Rt = R.T
    Q = torch.linalg.solve_triangular(Rt, L64, upper=True, left=False)
    # sqrt of tau as cholesky puts it on R's diagonal at L = 0, so that C is exactly I there.
    sqrt_tau = torch.sqrt(torch.tensor(tau, dtype=torch.float64, device=outer_L.device))
    C = torch.linalg.solve_triangular(Rt, sqrt_tau * eye, upper=True, left=False)
    return C.to(outer_L.dtype), Q.to(outer_L.dtype)
