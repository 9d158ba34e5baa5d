"""Rotation maps of SSVD-O: the inner (right-side) rotation and the outer (left-side) one.

Pure tensor functions, no state. See ``docs/ssvdo.md`` and the method note for the maths.

Inner: a skew-symmetric K (k x k, stored as its k(k-1)/2 strictly-upper entries) is mapped to a
rotation G, either the Cayley map (I - K)^-1 (I + K) (exactly orthogonal) or the first-order
map I + 2K of the SSVD code (orthogonal only to first order).

Outer: L ((m - n) x l) and tau > 0 define [C; Q] = [sqrt(tau) I; L] R^-1 with R the upper
triangle of the QR of [sqrt(tau) I; L] (positive diagonal), i.e. R^T R = L^T L + tau I.
[C; Q] has orthonormal columns for every L and (C, Q) = (I, 0) at L = 0.
``outer_rotation`` takes the Q factor of that QR directly (orthonormal to rounding at every
scale); ``outer_rotation_cholesky`` is the earlier Cholesky form, kept bit for bit for
``parameterisation="v1"``.

Parameterisations (``PARAMETERISATIONS``): "v1" uses the stored generators as they are (K, L,
s + ds); "v2" scales them so that one optimiser step of size lr per entry turns each adapted
direction by about lr radians and shifts each singular value by about lr relative
(``inner_scale``, ``outer_scale``, and s' = s exp(ds)). Derivation in ``docs/ssvdo.md``.
"""

from __future__ import annotations

import functools
import math

import torch

from .settings import PARAMETERISATIONS, ROTATIONS  # noqa: F401 (re-exported)


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
    ``solve_ex`` skips the singularity check, which would cost a host sync on CUDA (same LU,
    same numbers as ``solve``).
    """
    # LU has no half-precision kernels on every device, and rounding I - K to 8 bits of
    # mantissa would cost orthogonality: solve in float32 at least.
    work = skew if skew.dtype in (torch.float32, torch.float64) else skew.float()
    eye = torch.eye(work.shape[-1], dtype=work.dtype, device=work.device)
    return torch.linalg.solve_ex(eye - work, eye + work)[0].to(skew.dtype)


def linear_rotation(skew: torch.Tensor) -> torch.Tensor:
    """First-order map G = I + 2K (what the SSVD code uses), shape (k, k) -> (k, k)."""
    eye = torch.eye(skew.shape[-1], dtype=skew.dtype, device=skew.device)
    return eye + 2.0 * skew


def inner_rotation(vec: torch.Tensor, k: int, rotation: str, scale: float = 1.0) -> torch.Tensor:
    """Rotation G (k x k) from the stored free entries ``vec`` (k(k-1)/2,), K = scale * skew(vec).

    ``scale`` is 1 for parameterisation v1 and ``inner_scale(k)`` for v2 (a host float: no
    device round trip).
    """
    skew = skew_from_vector(vec, k)
    if scale != 1.0:
        skew = skew * scale
    if rotation == "cayley":
        return cayley(skew)
    if rotation == "linear":
        return linear_rotation(skew)
    raise ValueError(f"rotation must be one of {ROTATIONS}, got {rotation!r}")


def inner_scale(k: int) -> float:
    """v2 factor of K: 1 / (2 sqrt(k - 1)) for k >= 2.

    Column j of G - I is ~2 K[:, j], which has k - 1 free entries: when each moves by lr the
    direction v_j turns by ~2 lr sqrt(k - 1) under v1 and by ~lr under v2; the root-mean-square
    rotation angle of G is at most lr for any step of at most lr per entry.

    >>> inner_scale(5)
    0.25
    """
    return 1.0 / (2.0 * math.sqrt(k - 1)) if k >= 2 else 1.0


def outer_scale(rows: int) -> float:
    """v2 factor of L with tau taken out: L_eff / sqrt(tau) = L / sqrt(m - n), ``rows`` = m - n.

    Column j of L (m - n entries) sets how far u_j turns (tan of the angle ~ |L_j| / sqrt(tau)):
    with each entry moving by lr it turns by ~lr sqrt(m - n) / sqrt(tau) under v1 and by ~lr
    under v2, whatever tau; the root-mean-square principal angle is at most lr.

    >>> outer_scale(16)
    0.25
    """
    return 1.0 / math.sqrt(rows) if rows >= 1 else 1.0


def outer_rotation(outer_L: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Coefficients of the outer rotation U'_l = U_l C + U_perp Q, by Householder QR.

    [C; Q] is the orthonormal factor of the QR of [sqrt(tau) I; L] with the signs fixed so that
    R has a positive diagonal: then R^T R = L^T L + tau I, R^T is the Cholesky factor of the
    Cholesky form and C = sqrt(tau) R^-1, Q = L R^-1 are the same matrices, but orthonormal to
    rounding for every L (the Cholesky form loses eps * |L|^2 / tau). At L = 0 the reflectors
    are trivial and C = I, Q = 0 exactly. Runs in the working dtype (float32 at least: no
    half-precision QR), no host sync, differentiable (``torch.linalg.qr`` has autograd).

    Arguments
    ---------
    outer_L : torch.Tensor
        L, shape (m - n, l), m - n >= 1.
    tau : float
        Positive regulariser (a host float); the angles satisfy tan(theta_i) = sigma_i(L) / sqrt(tau).

    Returns
    -------
    C : torch.Tensor
        Shape (l, l).
    Q : torch.Tensor
        Shape (m - n, l).

    Example
    -------
    >>> C, Q = outer_rotation(torch.zeros(5, 2), 1e-3)
    >>> bool(torch.equal(C, torch.eye(2))), bool((Q == 0).all())
    (True, True)
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    work = outer_L if outer_L.dtype in (torch.float32, torch.float64) else outer_L.float()
    width = work.shape[-1]
    eye = torch.eye(width, dtype=work.dtype, device=work.device)
    stacked = torch.cat([math.sqrt(tau) * eye, work], dim=0)
    factor, triangle = torch.linalg.qr(stacked, mode="reduced")
    # Householder QR returns R with diagonal signs of its choice; flip the columns whose
    # diagonal is negative (the diagonal is never 0: the top block has full rank).
    signs = torch.where(triangle.diagonal() < 0, -1.0, 1.0).to(work.dtype)
    factor = factor * signs
    return factor[:width].to(outer_L.dtype), factor[width:].to(outer_L.dtype)


def outer_rotation_cholesky(outer_L: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The earlier outer rotation (``parameterisation="v1"``), unchanged bit for bit.

    R = cholesky(L^T L + tau I) in float64, Q = L R^-T, C = sqrt(tau) R^-T. Orthonormal to
    ~eps64 * |L|^2 / tau (4e-4 at |L| / sqrt(tau) = 1e6); raises ``LinAlgError`` near 1e8.
    Shapes as in ``outer_rotation``.

    Example
    -------
    >>> C, Q = outer_rotation_cholesky(torch.zeros(5, 2, dtype=torch.float64), 1e-3)
    >>> bool(torch.allclose(C, torch.eye(2, dtype=torch.float64))), bool((Q == 0).all())
    (True, True)
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
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
