"""The randomised route (opt-in): what holds for every matrix, what holds where the spectrum has
a gap at a, what is compared where it has none, rank-deficient weights, and the layer on it.

Without a gap at a the top-a subspace is not defined (any basis of a cluster that straddles a
is as good as another), so nothing here compares such subspaces with an exact SVD: the checks
are orthonormality, W V = U S, the interlacing s_i <= sigma_i, the Eckart-Young ratio and, with
a cluster, that V lies in the invariant subspace up to the end of the cluster.
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cl_ssvdo import SSVDOLinear
from cl_ssvdo.ssvdo.decompose import singular_triplets, use_route
from cl_ssvdo.ssvdo.randomized import OVERSAMPLE, randomized_triplets

F64 = torch.float64
EPS64 = torch.finfo(F64).eps


def _with_spectrum(m: int, n: int, s: torch.Tensor, seed: int) -> torch.Tensor:
    """A (m, n) = U diag(s) V^T with Haar-random orthonormal U, V (float64)."""
    gen = torch.Generator().manual_seed(seed)
    r = min(m, n)
    U = torch.linalg.qr(torch.randn(m, r, generator=gen, dtype=F64)).Q
    V = torch.linalg.qr(torch.randn(n, r, generator=gen, dtype=F64)).Q
    return (U * s.to(F64)) @ V.T


def _check_always(A: torch.Tensor, U: torch.Tensor, s: torch.Tensor, V: torch.Tensor) -> None:
    """What holds for every matrix (float64 A): orthonormal U, V; A V = U S; interlacing;
    Frobenius error within Halko et al.'s sqrt(1 + a / (p - 1)) of Eckart-Young's optimum."""
    a, p = s.shape[0], OVERSAMPLE
    exact = torch.linalg.svdvals(A)
    tol = 50 * EPS64 * float(exact[0])
    eye = torch.eye(a, dtype=F64)
    assert (U.T @ U - eye).abs().max() < 50 * EPS64
    assert (V.T @ V - eye).abs().max() < 50 * EPS64
    assert (A @ V - U * s).abs().max() < tol
    assert bool((s[1:] <= s[:-1] + tol).all())  # descending
    assert bool((s <= exact[:a] + tol).all())  # Ritz values never exceed the singular values
    err = float(torch.linalg.matrix_norm(A - (U * s) @ V.T))
    optimum = float(torch.linalg.vector_norm(exact[a:]))
    assert err <= math.sqrt(1 + a / (p - 1)) * optimum + 50 * EPS64 * float(exact.norm())


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 24),
    extra=st.integers(0, 30),
    a_frac=st.floats(0.05, 1.0),
    decay=st.floats(0.0, 3.0),
    power=st.integers(0, 3),
    seed=st.integers(0, 2**16),
)
def test_every_matrix_gets_an_orthonormal_pair_within_the_approximation_bound(
    n: int, extra: int, a_frac: float, decay: float, power: int, seed: int
) -> None:
    m = n + extra
    a = max(1, round(a_frac * n))
    s = torch.linspace(1.0, 0.05, n, dtype=F64) ** decay  # decay 0: a flat spectrum, no gap
    A = _with_spectrum(m, n, s, seed)
    _check_always(A, *randomized_triplets(A, a, power=power))


def test_a_gap_at_a_gives_the_exact_triplets() -> None:
    a = 6
    s = torch.cat([torch.linspace(10.0, 5.0, a), torch.linspace(0.5, 0.01, 34)]).to(F64)
    A = _with_spectrum(120, 40, s, seed=1)
    U, got, V = randomized_triplets(A, a)
    _check_always(A, U, got, V)
    # (s_{a+1} / s_a)^(2q+1) = 0.1^5: vectors to ~1e-5, values to its square.
    torch.testing.assert_close(got, s[:a], rtol=0, atol=1e-8)
    ex_U, _, ex_Vh = torch.linalg.svd(A, full_matrices=False)
    assert torch.linalg.matrix_norm(ex_Vh[a:] @ V, 2) < 1e-4  # sin of the largest angle
    assert torch.linalg.matrix_norm(ex_U[:, a:].T @ U, 2) < 1e-4


def test_no_gap_at_a_compares_only_what_is_defined() -> None:
    # s_4 = ... = s_7 = 2: any 2 of the 4 cluster directions complete the top 5 equally well.
    a, end = 5, 7
    s = torch.tensor([5.0, 4.0, 3.0, 2.0, 2.0, 2.0, 2.0] + [0.1 / (1 + j) for j in range(25)])
    A = _with_spectrum(90, 32, s.to(F64), seed=2)
    U, got, V = randomized_triplets(A, a)
    _check_always(A, U, got, V)
    torch.testing.assert_close(got, s[:a].to(F64), rtol=0, atol=1e-9)
    # V lies in the invariant subspace up to the end of the cluster (gap 2 -> 0.1 there) ...
    _, _, ex_Vh = torch.linalg.svd(A, full_matrices=False)
    assert torch.linalg.matrix_norm(ex_Vh[end:] @ V, 2) < 1e-5
    # ... and the rank-a approximation is optimal (Eckart-Young) to rounding.
    err = torch.linalg.matrix_norm(A - (U * got) @ V.T)
    assert err / torch.linalg.vector_norm(s[a:].to(F64)) - 1 < 1e-9
    # W V = U S on both sides: U^T A = S V^T too, now that span(V) is invariant.
    assert (A.T @ U - V * got).abs().max() < 1e-5


def test_rank_deficient_matrix() -> None:
    gen = torch.Generator().manual_seed(3)
    A = torch.randn(50, 3, generator=gen, dtype=F64) @ torch.randn(3, 20, generator=gen, dtype=F64)
    U, s, V = randomized_triplets(A, 6)
    _check_always(A, U, s, V)
    assert s[3:].abs().max() < 1e-12 * s[0]
    torch.testing.assert_close(s[:3], torch.linalg.svdvals(A)[:3], rtol=1e-12, atol=0)


def test_whole_space_sketch_is_the_thin_svd_and_seeding_is_local() -> None:
    gen = torch.Generator().manual_seed(4)
    A = torch.randn(30, 12, generator=gen)
    U, s, V = randomized_triplets(A, 5)  # b = 5 + 10 >= 12: X = I
    torch.testing.assert_close(s, torch.linalg.svdvals(A)[:5])
    B = torch.randn(300, 100, generator=gen)
    state = torch.get_rng_state()
    first, second = randomized_triplets(B, 20), randomized_triplets(B, 20)
    assert all(torch.equal(x, y) for x, y in zip(first, second, strict=True))
    assert torch.equal(torch.get_rng_state(), state)
    with pytest.raises(ValueError, match="tall"):
        randomized_triplets(B.T, 20)
    with pytest.raises(ValueError, match="a must be"):
        randomized_triplets(B, 0)


def test_flat_spectrum_is_only_an_approximation() -> None:
    # A freshly initialised layer: no gap anywhere. The bound of _check_always holds; the
    # values and vectors need not match the exact ones (the reason "auto" never picks it).
    torch.manual_seed(0)
    W = nn.Linear(96, 384).weight.detach().double()
    U, s, V = randomized_triplets(W, 30)
    _check_always(W, U, s, V)
    exact = torch.linalg.svdvals(W)
    err = torch.linalg.matrix_norm(W - (U * s) @ V.T)
    assert err / torch.linalg.vector_norm(exact[30:]) < 1.05


def test_singular_triplets_and_the_layer_on_the_randomized_route() -> None:
    torch.manual_seed(5)
    W = nn.Linear(32, 96).weight.detach()
    f = singular_triplets(W, range(8), route="randomized")
    assert f.route == "randomized" and f.U.dtype == torch.float32 and f.U.shape == (96, 8)
    # Other index sets take the float64 route.
    assert singular_triplets(W, [0, 5], route="randomized").route == "float64"
    with use_route("randomized"):
        layer = SSVDOLinear(nn.Linear(32, 96), inner_ratio=0.25, outer_rank=4)
    assert layer.decomposition_route == "randomized"
    W0 = layer.base_layer.weight.detach().clone()
    assert torch.equal(layer.merged_weight(), W0)  # exact at init whatever the factors
    with torch.no_grad():
        for param in layer.trainable_parameters:
            param.copy_(0.1 * torch.randn_like(param))
    expected = layer.merged_weight().detach()
    layer.merge()
    assert torch.equal(layer.base_layer.weight, expected)
    layer.unmerge()
    assert torch.equal(layer.base_layer.weight, W0)


def test_layer_on_a_rank_deficient_weight_takes_the_exact_route() -> None:
    gen = torch.Generator().manual_seed(6)
    base = nn.Linear(24, 80)
    with torch.no_grad():
        low = torch.randn(80, 4, generator=gen) @ torch.randn(4, 24, generator=gen)
        base.weight.copy_(low / math.sqrt(4))
    with use_route("randomized"):
        layer = SSVDOLinear(base, inner_ratio=0.5, outer_rank=3)
    assert layer.decomposition_route == "float64-qr-svd"
    U = layer.svd_U.double()
    assert (U.T @ U - torch.eye(U.shape[1], dtype=F64)).abs().max() < 1e-6
