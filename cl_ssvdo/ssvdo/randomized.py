"""Randomised top-a singular triplets: a range finder with power iterations, then Rayleigh-Ritz.

Opt-in only (``route="randomized"`` of ``decompose.singular_triplets`` / ``factorise``); the
default ``"auto"`` route never picks it. Why: its accuracy is set by the spectral gap at index
a. After q power iterations with b = a + p columns, the error of component i shrinks like
(s_{b+1} / s_i)^(2q+1); where the spectrum has no gap at a -- the Marchenko-Pastur bulk of a
freshly initialised ``nn.Linear``, or any weight whose index a lies in its bulk -- that ratio
is ~1 and the result is only an approximation in norm (Halko, Martinsson and Tropp 2011):
||A - U diag(s) V^T||_F within a few per cent of the Eckart-Young optimum, but singular values
off by up to ~15 % of s_1 and vectors unrelated to the exact ones (measured on 4096 x 1024,
a = 286, p = 10, q = 2; docs/adapter-speed.md). The layer still starts exactly at W0 and
merges exactly (both hold for any factors), but "the top-a singular components of W0" then
means "an a-dimensional subspace that captures most of their energy".

What holds by construction (tests/cl_ssvdo/test_randomized.py):

- U (m, a) and V (n, a) have orthonormal columns, A V = U diag(s) to rounding;
- s are the singular values of A X for an orthonormal X, so s_i <= sigma_i(A) (interlacing);
- where the spectrum has a gap at a (s_a / s_{b+1} large), U, s, V converge to the exact
  triplets like (s_{b+1} / s_a)^(2q+1).

The sketch is seeded (``torch.Generator`` on the weight's device, seed 0 unless given): the
same weight gives the same factors on every run; the global RNG is not touched.
"""

from __future__ import annotations

import torch

OVERSAMPLE = 10  # p: extra sketch columns beyond a
POWER_ITERATIONS = 2  # q: applications of A^T A, each followed by a QR re-orthonormalisation
SEED = 0


def _orthonormal(X: torch.Tensor) -> torch.Tensor:
    """Orthonormal basis (small, b) of span(X) by Householder QR (robust to rank loss)."""
    return torch.linalg.qr(X, mode="reduced").Q


def randomized_triplets(
    A: torch.Tensor,
    a: int,
    oversample: int = OVERSAMPLE,
    power: int = POWER_ITERATIONS,
    seed: int = SEED,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Approximate top ``a`` singular triplets of a tall A (big, small), big >= small.

    The sketch acts on the small side: X (small, b) with b = min(small, a + oversample) starts
    Gaussian, goes through ``power`` steps X <- orth(A^T (A X)), and Rayleigh-Ritz takes the
    thin SVD of A X (big, b) = U_b diag(s) Z^T, so U = U_b[:, :a], V = X Z[:, :a]. When b
    reaches the small side, X spans everything and the result is the exact thin SVD.
    Cost: 2 power + 1 products of A with b columns, ``power`` + 1 QRs of (small, b), one
    thin SVD of (big, b).

    Arguments
    ---------
    A : torch.Tensor
        Shape (big, small), float32 or float64.
    a : int
        Number of triplets, 1 <= a <= small.
    oversample, power, seed : int
        p >= 0, q >= 0 and the seed of the Gaussian sketch.

    Returns
    -------
    (U, s, V)
        Shapes (big, a), (a,), (small, a), in A's dtype; s descending.

    Example
    -------
    >>> gen = torch.Generator().manual_seed(0)
    >>> A = torch.randn(60, 3, generator=gen) @ torch.randn(3, 20, generator=gen)
    >>> U, s, V = randomized_triplets(A, 3)  # rank 3: an exact gap at a = 3
    >>> bool(torch.allclose(s, torch.linalg.svdvals(A)[:3], rtol=1e-4))
    True
    >>> bool(torch.allclose(A @ V, U * s, atol=1e-4))
    True
    """
    big, small = A.shape
    if big < small:
        raise ValueError(f"A must be tall (big >= small), got shape {(big, small)}")
    if not 1 <= a <= small:
        raise ValueError(f"a must be in [1, {small}], got {a}")
    b = min(small, a + oversample)
    if b == small:
        X = torch.eye(small, dtype=A.dtype, device=A.device)  # the whole space: exact
    else:
        gen = torch.Generator(device=A.device).manual_seed(seed)
        X = _orthonormal(torch.randn(small, b, generator=gen, dtype=A.dtype, device=A.device))
        for _ in range(power):
            X = _orthonormal(A.T @ (A @ X))
    U, s, Zh = torch.linalg.svd(A @ X, full_matrices=False)
    return U[:, :a], s[:a], X @ Zh[:a].T
