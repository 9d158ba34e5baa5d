"""The top eigenpairs of a symmetric matrix without the others: LAPACK ``syevr`` on the CPU.

``torch.linalg.eigh`` computes every eigenpair (``syevd``). The Gram routes of ``decompose``
need only the top b of n (b = a + 8). ``syevr`` makes the same tridiagonal reduction, then
computes (MRRR) and back-transforms only the b wanted vectors. Measured against torch's
``eigh`` on one thread (float32; docs/adapter-speed.md, "Set-up"), ``syevr`` pays only on large
matrices and small shares: 0.79 of the time at n = 1024, b = 0.3 n (0.62 at n = 2048, 0.91 at
n = 768), but 1.0 at n = 512 and 1.3-2.6x slower at n <= 384 or b >= 0.5 n. Hence
``PARTIAL_MIN_SIZE`` and ``PARTIAL_MAX_SHARE``: of the benchmark's stacks only the
OWSM-like 1024 x 4096 layers take it (n = 1024, b = 294), whose set-up went from 0.58 to 0.52
of a thin SVD.

``syevr`` comes from SciPy, whose LAPACK is its own OpenBLAS, so it is taken only where torch
itself runs on one thread (as every study and sweep child does), and SciPy's BLAS is held to
one thread for the call (``threadpoolctl``). With two threads torch's parallel ``syevd`` was
faster: the OWSM-like set-up measured 0.52 of a thin SVD with it, 0.58 with a one-thread
``syevr`` and 0.72 with a two-thread one.
"""

from __future__ import annotations

import functools

import scipy.linalg
import torch
from threadpoolctl import ThreadpoolController

PARTIAL_MIN_SIZE = 768  # n below this: torch's full ``syevd`` is as fast or faster
PARTIAL_MAX_SHARE = 0.3  # b above this share of n: likewise


@functools.cache
def _blas_threads() -> ThreadpoolController:
    return ThreadpoolController()


def uses_partial(sym: torch.Tensor, b: int) -> bool:
    """Whether ``top_eigh`` takes the partial ``syevr`` route for ``sym`` and ``b``."""
    return (
        sym.device.type == "cpu"
        and torch.get_num_threads() == 1
        and sym.dtype in (torch.float32, torch.float64)
        and sym.shape[0] >= PARTIAL_MIN_SIZE
        and b <= PARTIAL_MAX_SHARE * sym.shape[0]
    )


def top_eigh(sym: torch.Tensor, b: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``b`` largest eigenvalues of the symmetric ``sym`` and their eigenvectors, in
    ascending order, read from its lower triangle (as ``torch.linalg.eigh`` reads it).

    Arguments
    ---------
    sym : torch.Tensor
        (n, n), symmetric; only the lower triangle (with the diagonal) is read.
    b : int
        How many of the largest eigenpairs, 1 <= b <= n.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        Eigenvalues (b,) ascending and orthonormal eigenvectors (n, b), in ``sym``'s dtype and
        on its device. CUDA tensors, other dtypes, n below ``PARTIAL_MIN_SIZE``, b above
        ``PARTIAL_MAX_SHARE`` of n and more than one intra-op thread go through
        ``torch.linalg.eigh``.

    Example
    -------
    >>> A = torch.randn(50, 20, dtype=torch.float64)
    >>> vals, vecs = top_eigh(A.T @ A, 5)
    >>> tuple(vecs.shape), bool(torch.allclose(vals, torch.linalg.eigvalsh(A.T @ A)[-5:]))
    ((20, 5), True)
    """
    n = sym.shape[0]
    if not 1 <= b <= n:
        raise ValueError(f"top_eigh: b = {b} must lie in [1, {n}]")
    sym = sym.detach()
    if not uses_partial(sym, b):
        vals, vecs = torch.linalg.eigh(sym)
        return vals[n - b :], vecs[:, n - b :]
    with _blas_threads().limit(limits=1, user_api="blas"):
        return syevr_top(sym, b)


def syevr_top(sym: torch.Tensor, b: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``syevr`` (SciPy) for the top ``b`` eigenpairs of the CPU float32/float64 ``sym``,
    lower triangle, ascending; no checks and SciPy's BLAS on its own thread count (use
    :func:`top_eigh`; ``tools.adapter_bench.eigh_crossover`` times this call alone)."""
    n = sym.shape[0]
    vals, vecs = scipy.linalg.eigh(
        sym.detach().numpy(),
        lower=True,
        subset_by_index=[n - b, n - 1],
        driver="evr",
        check_finite=False,
    )
    return torch.from_numpy(vals), torch.from_numpy(vecs)
