"""Partial SVD (Gram eigen + Rayleigh-Ritz) and the Householder complement."""

import pytest
import torch

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
