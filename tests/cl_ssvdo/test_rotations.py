"""Rotation maps: Cayley / first-order inner maps, the QR outer rotation and the v1 Cholesky form."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cl_ssvdo.ssvdo.rotations import (
    cayley,
    inner_rotation,
    inner_scale,
    outer_rotation,
    outer_rotation_cholesky,
    outer_scale,
    skew_from_vector,
)

F64 = torch.float64


def _vector(seed: int, size: int, scale: float) -> torch.Tensor:
    return scale * torch.randn(size, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _orthonormality_error(C: torch.Tensor, Q: torch.Tensor) -> float:
    stacked = torch.cat([C, Q]).double()
    eye = torch.eye(stacked.shape[1], dtype=F64)
    return float((stacked.T @ stacked - eye).abs().max())


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
        for scale in (1.0, inner_scale(5)):
            G = inner_rotation(torch.zeros(10, dtype=F64), 5, rotation, scale)
            assert torch.equal(G, torch.eye(5, dtype=F64))


def test_linear_map_is_first_order() -> None:
    vec = _vector(1, 6, 0.3)
    K = skew_from_vector(vec, 4)
    assert torch.equal(inner_rotation(vec, 4, "linear"), torch.eye(4, dtype=F64) + 2 * K)
    # Cayley agrees with I + 2K to first order.
    small = 1e-5 * vec
    diff = inner_rotation(small, 4, "cayley") - inner_rotation(small, 4, "linear")
    assert diff.abs().max() < 1e-9


def test_inner_scale_multiplies_the_skew_matrix() -> None:
    vec = _vector(2, 10, 0.4)
    scaled = inner_rotation(vec, 5, "cayley", inner_scale(5))
    assert torch.allclose(scaled, cayley(inner_scale(5) * skew_from_vector(vec, 5)), atol=1e-15)
    assert inner_scale(5) == 0.25 and inner_scale(1) == 1.0
    assert outer_scale(16) == 0.25 and outer_scale(0) == 1.0


def test_bad_rotation_and_shape_raise() -> None:
    with pytest.raises(ValueError, match="rotation"):
        inner_rotation(torch.zeros(3), 3, "householder")
    with pytest.raises(ValueError, match="shape"):
        skew_from_vector(torch.zeros(4), 3)


def _low_rank_L(rows: int, width: int, rank: int, seed: int, dtype=F64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    L = torch.randn(rows, rank, generator=gen, dtype=F64) @ torch.randn(
        rank, width, generator=gen, dtype=F64
    )
    return (L / torch.linalg.matrix_norm(L, 2)).to(dtype)


@settings(max_examples=30, deadline=None)
@given(
    rows=st.integers(1, 40),
    width=st.integers(1, 8),
    rank=st.integers(1, 3),
    seed=st.integers(0, 2**16),
    log_ratio=st.floats(-3.0, 8.0),
    log_tau=st.floats(-6.0, 1.0),
    dtype=st.sampled_from([torch.float32, F64]),
)
def test_qr_outer_rotation_is_orthonormal_at_every_scale(
    rows, width, rank, seed, log_ratio, log_tau, dtype
) -> None:
    # |L| / sqrt(tau) from 1e-3 to 1e8, L of rank <= 3 (nearly rank-deficient, as after a few
    # gradient steps): the Cholesky form loses eps |L|^2 / tau here; the QR form must not.
    tau = 10.0**log_tau
    L = _low_rank_L(rows, width, rank, seed) * (10.0**log_ratio * math.sqrt(tau))
    C, Q = outer_rotation(L.to(dtype), tau)
    assert C.dtype == Q.dtype == dtype and C.shape == (width, width) and Q.shape == (rows, width)
    assert _orthonormality_error(C, Q) <= (1e-6 if dtype == torch.float32 else 1e-13)
    assert torch.isfinite(C).all() and torch.isfinite(Q).all()


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 9),
    width=st.integers(1, 5),
    seed=st.integers(0, 2**16),
    scale=st.floats(0.0, 100.0),
    tau=st.floats(1e-4, 10.0),
)
def test_qr_form_equals_the_cholesky_form_where_that_is_accurate(
    rows, width, seed, scale, tau
) -> None:
    L = scale * torch.randn(rows, width, generator=torch.Generator().manual_seed(seed), dtype=F64)
    C, Q = outer_rotation(L, tau)
    C1, Q1 = outer_rotation_cholesky(L, tau)
    cond = float((torch.linalg.matrix_norm(L, 2) ** 2 + tau) / tau)
    atol = max(1e-12, 64 * torch.finfo(F64).eps * cond)
    assert torch.allclose(C, C1, atol=atol) and torch.allclose(Q, Q1, atol=atol)
    # C = sqrt(tau) R^-1 with R upper-triangular with a positive diagonal, so is C;
    # and Q^T Q = I - C^T C.
    assert (C.diagonal() > 0).all() and torch.allclose(C, C.triu(), atol=1e-13)
    assert torch.allclose(Q.T @ Q, torch.eye(width, dtype=F64) - C.T @ C, atol=atol)


def test_cholesky_form_fails_where_the_qr_form_holds() -> None:
    L = _low_rank_L(300, 8, 1, 0) * 1e6 * math.sqrt(1e-3)
    C1, Q1 = outer_rotation_cholesky(L, 1e-3)
    assert _orthonormality_error(C1, Q1) > 1e-5  # issue 12: 4e-4 in float64 at 1.1e6
    assert _orthonormality_error(*outer_rotation(L, 1e-3)) < 1e-13
    assert _orthonormality_error(*outer_rotation(L * 100, 1e-3)) < 1e-13


@pytest.mark.parametrize("dtype", [torch.float32, F64, torch.bfloat16])
def test_outer_at_zero_is_identity_exactly(dtype) -> None:
    for form in (outer_rotation, outer_rotation_cholesky):
        C, Q = form(torch.zeros(6, 3, dtype=dtype), 1e-3)
        assert C.dtype == dtype
        assert torch.equal(C, torch.eye(3, dtype=dtype)) and not Q.any()


def test_outer_moves_like_L_over_sqrt_tau() -> None:
    # Near zero, Q ~ L / sqrt(tau); exactly, tan(theta_i) = sigma_i(L) / sqrt(tau).
    L = 1e-6 * torch.ones(6, 3, dtype=F64)
    _, Q = outer_rotation(L, 1e-2)
    assert torch.allclose(Q, L / math.sqrt(1e-2), rtol=1e-6)
    L = _vector(3, 18, 1.0).reshape(6, 3)
    C, _ = outer_rotation(L, 0.3)
    cosines = torch.linalg.svdvals(C).sort().values
    expected = torch.cos(torch.atan(torch.linalg.svdvals(L) / math.sqrt(0.3))).sort().values
    assert torch.allclose(cosines, expected, atol=1e-12)


def test_qr_outer_rotation_has_gradients() -> None:
    L = _vector(4, 12, 0.5).reshape(4, 3).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: torch.cat(outer_rotation(t, 0.2)), (L,))
    zero = torch.zeros(4, 3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: torch.cat(outer_rotation(t, 0.2)), (zero,))


@pytest.mark.parametrize("tau", [0.0, -1.0])
def test_outer_rejects_non_positive_tau(tau: float) -> None:
    for form in (outer_rotation, outer_rotation_cholesky):
        with pytest.raises(ValueError, match="tau"):
            form(torch.zeros(2, 1), tau)
