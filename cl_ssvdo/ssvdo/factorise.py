"""The set-up of one SSVD-O layer: the triplets of J and, for the outer transform, the
Householder reflectors of the complement, by the cheapest route that passes the checks.

- Outer transform (m > n) on the "auto" route with a top index set: one float32 ``geqrf`` of
  W serves both; the triplets come from its triangle R (``decompose.qr_triplets``: the Gram
  route on R, or a float64 ``eigh`` of R^T R where J covers most of the spectrum), U = Q [P; 0]; the
  result is verified like every float32 route and replaced by the float64 route's triplets
  when the probe rejects it (the reflectors are kept: they are exact to float32 either way).
- Otherwise ``decompose.singular_triplets`` (its route) and, where needed, its own ``geqrf``
  (``decompose.complement_reflectors``).
- A numerically zero singular value among J: ``completion.exact_factors`` (float64 QR + SVD
  of R), which ties U_J, V_J and U_perp together; see ``completion``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .completion import exact_factors, is_rank_deficient
from .decompose import (
    TopFactors,
    check_complement,
    column_major,
    complement_reflectors,
    current_route,
    factors_from_tall,
    fast_applies,
    probe_ok,
    qr_route,
    qr_triplets,
    singular_triplets,
    working_copy,
)

Factors = tuple[TopFactors, torch.Tensor | None, torch.Tensor | None]


def factorise(
    weight: torch.Tensor, indices: Sequence[int], complement: bool, route: str | None = None
) -> Factors:
    """Singular triplets of ``weight`` for ``indices`` and, with ``complement``, the
    reflectors whose full Q has U_perp (the complement of span(W)) in its last m - n columns.

    Arguments
    ---------
    weight : torch.Tensor
        W, shape (m, n).
    indices : sequence of int
        Strictly increasing indices into the descending singular values (< min(m, n)).
    complement : bool
        Also return the reflectors (m, n, column-major) and their scalars (n,); needs m > n.
    route : str or None
        As in ``decompose.singular_triplets`` (None: the route of ``decompose.use_route``).

    Returns
    -------
    (TopFactors, reflectors or None, householder_tau or None)
        U (m, a), s (a,), V (n, a) and the reflectors, all in ``weight``'s dtype.

    Example
    -------
    >>> W = torch.randn(40, 8)
    >>> f, refl, h = factorise(W, range(3), complement=True)
    >>> f.route, tuple(refl.shape), refl.stride()
    ('qr-float64', (40, 8), (1, 40))
    >>> from cl_ssvdo.ssvdo.decompose import complement_basis
    >>> bool((complement_basis(refl, h).T @ f.U).abs().max() < 1e-5)
    True
    """
    check_complement(weight.shape, complement)
    idx = list(indices)
    route = current_route(route)
    if complement and route == "auto" and fast_applies(weight, idx):
        factors, reflectors, h_tau = _shared_qr(weight, idx)
    else:
        factors = singular_triplets(weight, idx, route)
        reflectors = h_tau = None
        if complement:
            reflectors, h_tau = complement_reflectors(weight)
    if is_rank_deficient(factors.s, weight):
        return exact_factors(weight, idx, complement)
    return factors, reflectors, h_tau


def _shared_qr(weight: torch.Tensor, idx: list[int]) -> Factors:
    """One float32 ``geqrf`` of the tall W (m > n) for the triplets and the complement."""
    A = working_copy(weight).float()
    reflectors, h_tau = torch.geqrf(A)
    got = qr_triplets(A, len(idx), reflectors, h_tau)
    if got is not None and probe_ok(A, *got):
        factors = factors_from_tall(weight, *got, qr_route(len(idx), A.shape[1]))
    else:
        factors = singular_triplets(weight, idx, "float64")
    dtype = weight.dtype
    return factors, column_major(reflectors.to(dtype)), h_tau.to(dtype)
