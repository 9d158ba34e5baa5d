"""Partial SVD (Gram eigen + Rayleigh-Ritz) and the Householder complement."""

import pytest
import torch
from torch import nn

from cl_ssvdo.ssvdo.decompose import (
    apply_complement,
    complement_basis,
    complement_reflectors,
    singular_triplets,
)

F64 = torch.float64


def _weight(m: int, n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(m, n, generator=torch.Generator().manual_seed(seed), dtype=F64)


@pytest.mark.parametrize("shape", [(13, 6), (6, 13), (8, 8)])
@pytest.mark.parametrize("indices", [[0, 1, 2], [0, 4, 5], [5]])
def test_triplets_match_full_svd(shape: tuple[int, int], indices: list[int]) -> None:
    W = _weight(*shape)
    U, s, Vh = torch.linalg.svd(W, full_matrices=False)
    f = singular_triplets(W, indices)
    assert torch.allclose(f.s, s[indices], atol=1e-12)
    # Same vectors up to sign.
    assert torch.allclose(
        (U[:, indices] * f.U).sum(0).abs(), torch.ones(len(indices), dtype=F64), atol=1e-10
    )
    assert torch.allclose(
        (Vh[indices].T * f.V).sum(0).abs(), torch.ones(len(indices), dtype=F64), atol=1e-10
    )
    # Exact pairs: W V = U S and U^T W = S V^T.
    assert torch.allclose(W @ f.V, f.U * f.s, atol=1e-12)
    assert torch.allclose(W.T @ f.U, f.V * f.s, atol=1e-12)


def test_float32_weight_is_factorised_to_float32_precision() -> None:
    W = _weight(64, 24).float()
    f = singular_triplets(W, list(range(8)))
    assert f.U.dtype == torch.float32
    s = torch.linalg.svdvals(W.double())[:8]
    assert ((f.s.double() - s).abs() / s).max() < 1e-6


def test_bad_indices_raise() -> None:
    with pytest.raises(ValueError, match="indices"):
        singular_triplets(_weight(5, 4), [1, 0])
    with pytest.raises(ValueError, match="indices"):
        singular_triplets(_weight(5, 4), [4])


def test_complement_is_orthonormal_and_orthogonal_to_the_column_space() -> None:
    W = _weight(11, 4)
    reflectors, h_tau = complement_reflectors(W)
    assert reflectors.shape == (11, 4)
    P = complement_basis(reflectors, h_tau)
    assert P.shape == (11, 7)
    assert torch.allclose(P.T @ P, torch.eye(7, dtype=F64), atol=1e-12)
    U = torch.linalg.svd(W, full_matrices=False).U
    assert (P.T @ U).abs().max() < 1e-12
    coords = _weight(7, 3, seed=2)
    assert torch.allclose(apply_complement(reflectors, h_tau, coords), P @ coords, atol=1e-12)


def test_complement_needs_tall_weight() -> None:
    with pytest.raises(ValueError, match="m > n"):
        complement_reflectors(_weight(4, 4))


def _relative_residuals(W: torch.Tensor, f) -> tuple[float, float]:
    """max |W V - U S| and max |U^T W - S V^T| over s_1, evaluated in float64."""
    W, U, s, V = (t.double() for t in (W, f.U, f.s, f.V))
    s1 = torch.linalg.matrix_norm(W, 2)
    return (
        float((W @ V - U * s).abs().max() / s1),
        float((W.T @ U - V * s).abs().max() / s1),
    )


@pytest.mark.parametrize("shape", [(384, 128), (128, 384)])
def test_float32_route_matches_the_float64_route(shape: tuple[int, int]) -> None:
    torch.manual_seed(0)
    W = nn.Linear(shape[1], shape[0]).weight.detach()  # float32, Marchenko-Pastur spectrum
    a = 40
    fast = singular_triplets(W, range(a))
    exact = singular_triplets(W, range(a), route="float64")
    assert fast.route == "float32" and exact.route == "float64"
    assert fast.U.dtype == torch.float32 and fast.U.shape == (shape[0], a)
    eps = torch.finfo(torch.float32).eps
    # Residuals at float32 rounding of the stored factors, like the float64 route's (a float32
    # torch.linalg.svd of such weights gives ~2.5 eps).
    assert max(_relative_residuals(W, fast)) < 4 * eps
    assert max(_relative_residuals(W, exact)) < 4 * eps
    torch.testing.assert_close(fast.s, exact.s, rtol=2 * eps, atol=0)
    for F_ in (fast.U, fast.V):
        gram = F_.double().T @ F_.double()
        assert (gram - torch.eye(a, dtype=F64)).abs().max() < 4 * eps
    # Same subspaces (vectors up to sign; these singular values are well separated at a).
    cos = (fast.V.double() * exact.V.double()).sum(0).abs()
    assert (1 - cos).max() < 1e-5


def test_float32_route_hands_towering_spectra_to_float64() -> None:
    # A few singular values ~100x above the bulk: the float32 Gram cannot resolve the bulk,
    # the probe sees the leak and the float64 route runs instead.
    gen = torch.Generator().manual_seed(3)
    bulk = torch.randn(384, 128, generator=gen) / 384**0.5
    spike = torch.randn(384, 2, generator=gen) @ torch.randn(2, 128, generator=gen)
    W = (bulk + 2.0 * spike).float()
    f = singular_triplets(W, range(40))
    assert f.route == "float64"
    assert max(_relative_residuals(W, f)) < 2 * torch.finfo(torch.float32).eps


def test_routes_for_other_index_sets_and_dtypes() -> None:
    W = _weight(96, 32).float()
    assert singular_triplets(W, [0, 30, 31]).route == "float64"  # not the top block
    assert singular_triplets(W.double(), range(4)).route == "float64"
    half = singular_triplets(W.bfloat16(), range(4))
    assert half.U.dtype == torch.bfloat16 and half.route == "float32"
    with pytest.raises(ValueError, match="route"):
        singular_triplets(W, range(4), route="fast")


def test_reflectors_are_column_major_for_ormqr() -> None:
    reflectors, _ = complement_reflectors(_weight(11, 4))
    assert reflectors.stride() == (1, 11)
