"""factorise: one geqrf shared by the triplets and the complement, the routes it picks, the
same accuracy as the float64 route, and the fallbacks (towering spectra, rank deficiency)."""

import math

import pytest
import torch
from torch import nn

from cl_ssvdo.ssvdo.decompose import (
    complement_basis,
    complement_reflectors,
    current_route,
    singular_triplets,
    use_route,
)
from cl_ssvdo.ssvdo.factorise import factorise

F64 = torch.float64
EPS32 = torch.finfo(torch.float32).eps


def _init_weight(m: int, n: int, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return nn.Linear(n, m).weight.detach()  # float32, Marchenko-Pastur spectrum: no gap


def _check_against_float64(W: torch.Tensor, f, a: int) -> None:
    """The accuracy checks of the float32 routes (test_decompose.py) on the factors ``f``."""
    exact = singular_triplets(W, range(a), route="float64")
    Wd, U, s, V = W.double(), f.U.double(), f.s.double(), f.V.double()
    s1 = float(exact.s[0])
    assert float((Wd @ V - U * s).abs().max()) / s1 < 4 * EPS32
    assert float((Wd.T @ U - V * s).abs().max()) / s1 < 4 * EPS32
    torch.testing.assert_close(f.s, exact.s, rtol=2 * EPS32, atol=0)
    eye = torch.eye(a, dtype=F64)
    assert (U.T @ U - eye).abs().max() < 4 * EPS32
    assert (V.T @ V - eye).abs().max() < 4 * EPS32


@pytest.mark.parametrize(
    ("shape", "a", "route"),
    [((384, 128), 40, "qr-float32"), ((96, 32), 24, "qr-float64"), ((200, 24), 24, "qr-float64")],
)
def test_shared_qr_is_as_accurate_as_the_float64_route(shape, a: int, route: str) -> None:
    W = _init_weight(*shape)
    f, reflectors, h_tau = factorise(W, range(a), complement=True)
    assert f.route == route and f.U.dtype == torch.float32
    _check_against_float64(W, f, a)
    assert reflectors.shape == shape and reflectors.stride() == (1, shape[0])
    P = complement_basis(reflectors, h_tau).double()
    assert (P.T @ f.U.double()).abs().max() < 4 * EPS32
    assert (P.T @ W.double()).abs().max() < 16 * EPS32 * float(f.s[0])


@pytest.mark.parametrize(
    ("shape", "a", "route"), [((32, 96), 24, "qr-float64"), ((128, 384), 40, "float32")]
)
def test_without_complement(shape, a: int, route: str) -> None:
    W = _init_weight(*shape)
    f, reflectors, h_tau = factorise(W, range(a), complement=False)
    assert f.route == route and reflectors is None and h_tau is None
    _check_against_float64(W, f, a)


def test_towering_spectrum_falls_back_to_float64_and_keeps_the_reflectors() -> None:
    gen = torch.Generator().manual_seed(3)
    bulk = torch.randn(384, 128, generator=gen) / 384**0.5
    spike = torch.randn(384, 2, generator=gen) @ torch.randn(2, 128, generator=gen)
    W = (bulk + 30.0 * spike).float()
    f, reflectors, h_tau = factorise(W, range(40), complement=True)
    assert f.route == "float64"
    # The same reflectors as a separate QR: a float32 geqrf has backward error eps32 s_1, so
    # U_perp is orthogonal to u_i to ~eps32 s_1 / s_i, shared or not.
    separate = complement_reflectors(W)
    assert torch.equal(reflectors, separate[0]) and torch.equal(h_tau, separate[1])
    P = complement_basis(reflectors, h_tau).double()
    assert ((P.T @ f.U.double()).abs().max(dim=0).values * f.s / f.s[0]).max() < 16 * EPS32


@pytest.mark.parametrize("complement", [True, False])
def test_rank_deficient_float32_weight_takes_the_exact_route(complement: bool) -> None:
    gen = torch.Generator().manual_seed(4)
    W = torch.randn(60, 5, generator=gen) @ torch.randn(5, 20, generator=gen) / math.sqrt(5)
    f, reflectors, _ = factorise(W, range(10), complement=complement)
    assert f.route == "float64-qr-svd" and (reflectors is not None) == complement
    U = f.U.double()
    assert (U.T @ U - torch.eye(10, dtype=F64)).abs().max() < 1e-6


def test_other_index_sets_and_dtypes() -> None:
    W = _init_weight(96, 32)
    assert factorise(W, [0, 30, 31], complement=True)[0].route == "float64"  # "tail"
    assert factorise(W.double(), range(4), complement=True)[0].route == "float64"
    f, reflectors, h_tau = factorise(W.bfloat16(), range(4), complement=True)
    assert f.U.dtype == reflectors.dtype == h_tau.dtype == torch.bfloat16
    assert f.route == "qr-float32"
    with pytest.raises(ValueError, match="m > n"):
        factorise(W.T, range(4), complement=True)


def test_use_route_sets_the_route_for_a_block_only() -> None:
    W = _init_weight(96, 32)
    assert current_route() == "auto"
    with use_route("float64"):
        assert factorise(W, range(4), complement=True)[0].route == "float64"
        assert factorise(W, range(4), complement=True, route="auto")[0].route == "qr-float32"
    assert current_route() == "auto"
    with pytest.raises(ValueError, match="route"):
        with use_route("fast"):
            pass
