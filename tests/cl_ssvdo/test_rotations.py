"""Rotation maps: Cayley / first-order inner maps and the Cholesky outer rotation."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cl_ssvdo.ssvdo.rotations import cayley, inner_rotation, outer_rotation, skew_from_vector

F64 = torch.float64


def _vector(seed: int, size: int, scale: float) -> torch.Tensor:
    return scale * torch.randn(size, generator=torch.Generator().manual_seed(seed), dtype=F64)


@settings(max_examples=25, deadline=None)
@given(k=st.integers(1, 7), seed=st.integers(0, 2**16), scale=st.floats(1e-3, 10.0))
def test_cayley_is_orthogonal_for_any_skew(k: int, seed: int, scale: float) -> None:
    K = skew_from_vector(_vector(seed, k * (k - 1) // 2, scale), k)
    assert torch.equal(K, -K.T)
    G = cayley(K)
    assert torch.allclose(G.T @ G, torch.eye(k, dtype=F64), atol=1e-12)
    assert torch.allclose(torch.linalg.det(G), torch.tensor(1.0, dtype=F64), atol=1e-10)


def test_zero_generator_gives_identity_exactly() -> None:
    for rotation in ("cayley", "linear"):
        G = inner_rotation(torch.zeros(10, dtype=F64), 5, rotation)
        assert torch.equal(G, torch.eye(5, dtype=F64))


def test_linear_map_is_first_order() -> None:
    vec = _vector(1, 6, 0.3)
    K = skew_from_vector(vec, 4)
    assert torch.equal(inner_rotation(vec, 4, "linear"), torch.eye(4, dtype=F64) + 2 * K)
    # Cayley agrees with I + 2K to first order.
    small = 1e-5 * vec
    diff = inner_rotation(small, 4, "cayley") - inner_rotation(small, 4, "linear")
    assert diff.abs().max() < 1e-9


def test_bad_rotation_and_shape_raise() -> None:
    with pytest.raises(ValueError, match="rotation"):
        inner_rotation(torch.zeros(3), 3, "householder")
    with pytest.raises(ValueError, match="shape"):
        skew_from_vector(torch.zeros(4), 3)


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 9),
    outer=st.integers(1, 5),
    seed=st.integers(0, 2**16),
    scale=st.floats(0.0, 100.0),
    tau=st.floats(1e-6, 10.0),
)
def test_outer_columns_are_orthonormal_for_every_L(
    rows: int, outer: int, seed: int, scale: float, tau: float
) -> None:
    L = scale * torch.randn(rows, outer, generator=torch.Generator().manual_seed(seed), dtype=F64)
    C, Q = outer_rotation(L, tau)
    stacked = torch.cat([C, Q])
    # Rounding error of the Cholesky route grows with cond(L^T L + tau I) (rank-deficient L
    # is drawn whenever rows < outer).
    cond = (torch.linalg.matrix_norm(L, 2) ** 2 + tau) / tau
    atol = max(1e-12, 64 * torch.finfo(F64).eps * float(cond))
    assert torch.allclose(stacked.T @ stacked, torch.eye(outer, dtype=F64), atol=atol)
    # Q^T Q = I - tau (R^T R)^-1 = I - C^T C.
    assert torch.allclose(Q.T @ Q, torch.eye(outer, dtype=F64) - C.T @ C, atol=atol)


def test_outer_stays_orthonormal_in_float32_for_rank_deficient_L() -> None:
    gen = torch.Generator().manual_seed(0)
    L = torch.randn(300, 1, generator=gen) @ torch.randn(
        1, 8, generator=gen
    )  # |L| / sqrt(tau) ~ 1e3
    C, Q = outer_rotation(L, 1e-3)
    assert C.dtype == torch.float32
    stacked = torch.cat([C, Q]).double()
    assert (stacked.T @ stacked - torch.eye(8, dtype=F64)).abs().max() < 1e-5


def test_outer_at_zero_is_identity_and_moves_with_L() -> None:
    C, Q = outer_rotation(torch.zeros(6, 3, dtype=F64), 1e-3)
    assert torch.equal(C, torch.eye(3, dtype=F64)) and torch.equal(Q, torch.zeros(6, 3, dtype=F64))
    # Near zero, Q ~ L / sqrt(tau): tau sets the sensitivity.
    L = 1e-6 * torch.ones(6, 3, dtype=F64)
    _, Q = outer_rotation(L, 1e-2)
    assert torch.allclose(Q, L / math.sqrt(1e-2), rtol=1e-6)


@pytest.mark.parametrize("tau", [0.0, -1.0])
def test_outer_rejects_non_positive_tau(tau: float) -> None:
    with pytest.raises(ValueError, match="tau"):
        outer_rotation(torch.zeros(2, 1), tau)
