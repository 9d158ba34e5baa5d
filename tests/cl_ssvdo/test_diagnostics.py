"""Diagnostics of what an adapter moved: angles, singular-value shift, weight change.

The SSVD-O figures are checked against an independent full SVD of the adapted weight W', so
they hold whatever parameterisation the layer uses for its generators.
"""

import doctest
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cl_ssvdo.ssvdo import SSVDOLinear, diagnostics
from cl_ssvdo.ssvdo.diagnostics import (
    choose_subspace,
    principal_angles,
    rotation_angle,
    ssvdo_diagnostics,
    top_energy_share,
    weight_change,
)

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _orthonormal(m: int, p: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(m, p, generator=_gen(seed), dtype=F64))
    return q


def _planted_layer(m: int, n: int, p: float, l: int, seed: int, scale: float = 1.0) -> SSVDOLinear:  # noqa: E741
    """An m x n float64 layer with singular values 5, ..., 1 (well separated, so the SVD of the
    adapted weight is stable) and random singular vectors."""
    r = min(m, n)
    s = torch.linspace(5.0, 1.0, r, dtype=F64) * scale
    w = _orthonormal(m, r, seed) @ torch.diag(s) @ _orthonormal(n, r, seed + 1).T
    base = nn.Linear(n, m, dtype=F64)
    with torch.no_grad():
        base.weight.copy_(w)
    return SSVDOLinear(base, inner_ratio=p, outer_rank=l)


def test_docstring_examples_run() -> None:
    result = doctest.testmod(diagnostics, raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0


# ------------------------------------------------------------------ generic figures
@settings(max_examples=25, deadline=None)
@given(
    m=st.integers(2, 12),
    p=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    angles=st.lists(st.floats(0.0, math.pi / 2), min_size=4, max_size=4),
)
def test_principal_angles_recover_planted_angles(m, p, seed, angles) -> None:
    p = min(p, m // 2)
    if p == 0:
        return
    theta = torch.tensor(angles[:p], dtype=F64)
    q = _orthonormal(m, 2 * p, seed)
    a, a_perp = q[:, :p], q[:, p:]
    b = a * torch.cos(theta) + a_perp * torch.sin(theta)
    got = principal_angles(a, b)
    assert torch.allclose(got, theta.sort().values, atol=1e-7)
    # Symmetric, and blind to the choice of basis of either subspace and to a common rotation.
    r1, r2, o = _orthonormal(p, p, seed + 1), _orthonormal(p, p, seed + 2), _orthonormal(m, m, 3)
    assert torch.allclose(principal_angles(b, a), got, atol=1e-7)
    assert torch.allclose(principal_angles(a @ r1, b @ r2), got, atol=1e-7)
    assert torch.allclose(principal_angles(o @ a, o @ b), got, atol=1e-7)


def test_principal_angles_are_accurate_for_tiny_angles() -> None:
    e = torch.eye(4, dtype=F64)
    b = e[:, :1] * math.cos(1e-9) + e[:, 1:2] * math.sin(1e-9)
    assert principal_angles(e[:, :1], b).item() == pytest.approx(1e-9, rel=1e-6)
    assert principal_angles(e[:, :2], e[:, :2]).abs().max() == 0.0
    assert principal_angles(e[:, :0], e[:, :2]).numel() == 0


@settings(max_examples=25, deadline=None)
@given(
    k=st.integers(2, 8),
    seed=st.integers(0, 2**16),
    angles=st.lists(st.floats(0.0, 3.1), min_size=4, max_size=4),
)
def test_rotation_angle_of_planted_rotation(k, seed, angles) -> None:
    blocks = []
    for theta in angles[: k // 2]:
        c, s = math.cos(theta), math.sin(theta)
        blocks.append(torch.tensor([[c, -s], [s, c]], dtype=F64))
    if k % 2:
        blocks.append(torch.eye(1, dtype=F64))
    basis = _orthonormal(k, k, seed)
    g = basis @ torch.block_diag(*blocks) @ basis.T
    assert rotation_angle(g) == pytest.approx(max(angles[: k // 2]), abs=1e-7)
    # ||G - I||_F^2 = sum |exp(i theta_j) - 1|^2 = 2k - 2 tr G for an orthogonal G.
    dev = torch.linalg.matrix_norm(g - torch.eye(k, dtype=F64)) ** 2
    assert dev.item() == pytest.approx(2 * k - 2 * torch.trace(g).item(), abs=1e-9)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), t=st.floats(-3.0, 3.0), c=st.floats(1e-3, 1e3))
def test_weight_change_is_relative_and_scale_free(seed, t, c) -> None:
    w0 = torch.randn(6, 4, generator=_gen(seed), dtype=F64)
    assert weight_change(w0, (1 + t) * w0) == pytest.approx(abs(t), abs=1e-12)
    w1 = w0 + torch.randn(6, 4, generator=_gen(seed + 1), dtype=F64)
    assert weight_change(c * w0, c * w1) == pytest.approx(weight_change(w0, w1), rel=1e-9)
    assert weight_change(w0, w0) == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        weight_change(w0, w0.T)


# ------------------------------------------------------------------ SSVD-O layers
@settings(max_examples=10, deadline=None)
@given(m=st.integers(2, 24), n=st.integers(2, 24), l=st.integers(0, 4), seed=st.integers(0, 99))  # noqa: E741
def test_everything_is_zero_at_init(m, n, l, seed) -> None:  # noqa: E741
    d = ssvdo_diagnostics(_planted_layer(m, n, 0.5, l, seed))
    assert max(abs(v) for v in d.to_dict().values()) < 1e-12


@settings(max_examples=10, deadline=None)
@given(m=st.integers(8, 24), extra=st.integers(1, 12), l=st.integers(1, 4), seed=st.integers(0, 99))  # noqa: E741
def test_outer_angles_equal_those_of_an_independent_svd(m, extra, l, seed) -> None:  # noqa: E741
    n = m - min(extra, m - 2)
    layer = _planted_layer(m, n, 0.0, l, seed)
    with torch.no_grad():
        layer.outer_L.copy_(torch.randn(layer.outer_L.shape, generator=_gen(seed), dtype=F64))
    d = ssvdo_diagnostics(layer)
    l_eff = layer.outer_rank
    u0 = torch.linalg.svd(layer.base_layer.weight.detach())[0][:, :l_eff]
    u1 = torch.linalg.svd(layer.merged_weight().detach())[0][:, :l_eff]
    want = principal_angles(u0, u1)
    assert d.outer_angle_max == pytest.approx(want.max().item(), abs=1e-6)
    assert d.outer_angle_mean == pytest.approx(want.mean().item(), abs=1e-6)
    assert d.inner_angle < 1e-12 and d.sv_shift == 0.0
    assert d.outer_angle_max > 0.0


@pytest.mark.parametrize("subspace", ["top", "tail"])
@pytest.mark.parametrize("scale", [1.0, 40.0])
def test_inner_angle_equals_the_planted_rotation_of_a_singular_vector(subspace, scale) -> None:
    base = _planted_layer(20, 12, 0.5, 0, seed=3, scale=scale).base_layer
    layer = SSVDOLinear(base, inner_ratio=0.5, subspace=subspace)
    with torch.no_grad():
        layer.inner_skew[0] = (
            0.05  # K[0, 1]: turns one pair of right singular vectors in their plane
        )
    d = ssvdo_diagnostics(layer)
    k, r = layer.inner_rank, 12
    i = 0 if subspace == "top" else r - k  # the first rotated component
    v0 = torch.linalg.svd(base.weight.detach())[2][i : i + 1].T
    v1 = torch.linalg.svd(layer.merged_weight().detach())[2][i : i + 1].T
    assert d.inner_angle == pytest.approx(principal_angles(v0, v1).item(), abs=1e-9)
    assert d.inner_angle > 0.0
    assert d.inner_dev == pytest.approx(2 * math.sqrt(2) * math.sin(d.inner_angle / 2), abs=1e-9)
    assert d.outer_angle_max == 0.0 and d.sv_shift == pytest.approx(0.0, abs=1e-15)


def test_angles_do_not_depend_on_the_weight_scale() -> None:
    figures = []
    for scale in (1.0, 1e3):
        layer = _planted_layer(16, 6, 0.5, 2, seed=5, scale=scale)
        with torch.no_grad():
            layer.inner_skew.copy_(
                0.1 * torch.randn(layer.inner_skew.shape, generator=_gen(1), dtype=F64)
            )
            layer.outer_L.copy_(
                0.01 * torch.randn(layer.outer_L.shape, generator=_gen(2), dtype=F64)
            )
        figures.append(ssvdo_diagnostics(layer))
    a, b = figures
    for name in (
        "inner_dev",
        "inner_angle",
        "outer_angle_max",
        "outer_angle_mean",
        "weight_change",
    ):
        assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-9), name


def test_sv_shift_and_weight_change_match_the_merged_weight() -> None:
    layer = _planted_layer(16, 10, 0.5, 2, seed=7)
    w0 = layer.base_layer.weight.detach().clone()
    with torch.no_grad():
        layer.delta_s.copy_(0.02 * torch.randn(layer.delta_s.shape, generator=_gen(3), dtype=F64))
        layer.outer_L.copy_(0.01 * torch.randn(layer.outer_L.shape, generator=_gen(4), dtype=F64))
    d = ssvdo_diagnostics(layer)
    s0, s1 = torch.linalg.svdvals(w0), torch.linalg.svdvals(layer.merged_weight().detach())
    assert d.sv_shift == pytest.approx(
        (torch.linalg.vector_norm(s1 - s0) / torch.linalg.vector_norm(s0)).item(), rel=1e-9
    )
    assert d.sv_shift > 0.0
    layer.merge()  # the exact merge path, then the figure of any method on the merged weight
    assert d.weight_change == pytest.approx(weight_change(w0, layer.base_layer.weight), rel=1e-9)
    assert ssvdo_diagnostics(layer) == d  # a merged layer keeps W0, the figures do not change


# ------------------------------------------------------------------ subspace: auto
def test_auto_subspace_protects_a_dominant_top() -> None:
    spiky = torch.diag(torch.tensor([10.0, 9.0, 1.0, 1.0, 1.0, 1.0], dtype=F64))
    flat = torch.diag(torch.tensor([1.2, 1.1, 1.0, 1.0, 1.0, 0.9], dtype=F64))
    assert top_energy_share(spiky, 2) == pytest.approx(181 / 185)
    assert choose_subspace(spiky, 2) == "tail"
    assert choose_subspace(flat, 2) == "top"
    assert choose_subspace(flat, 2, energy=0.2) == "tail"  # the threshold is the rule's knob
    assert choose_subspace(spiky, 0) == "top"
    with pytest.raises(ValueError, match="energy"):
        choose_subspace(flat, 2, energy=1.5)
