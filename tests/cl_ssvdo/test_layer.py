"""SSVDOLinear: exactness, orthonormality, spectrum, rank, gradients, merge and state."""

import io
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cl_ssvdo import SSVDOLinear, basis_drift, ssvdo_num_parameters
from cl_ssvdo.ssvdo.layer import component_indices

F64 = torch.float64
SHAPES = [(12, 5), (5, 12), (7, 7)]  # m > n (outer active), m < n, square


def make_layer(m: int, n: int, seed: int = 0, **kwargs) -> SSVDOLinear:
    torch.manual_seed(seed)
    kwargs.setdefault("inner_ratio", 0.6)
    kwargs.setdefault("outer_rank", 2)
    return SSVDOLinear(nn.Linear(n, m).double(), **kwargs)


def randomise(layer: SSVDOLinear, seed: int, scale: float = 0.5, ds_scale: float = 0.1) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.inner_skew.copy_(
            scale * torch.randn(layer.inner_skew.shape, generator=gen, dtype=F64)
        )
        layer.delta_s.copy_(ds_scale * torch.randn(layer.delta_s.shape, generator=gen, dtype=F64))
        layer.outer_L.copy_(scale * torch.randn(layer.outer_L.shape, generator=gen, dtype=F64))


def full_svd(W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    U, s, Vh = torch.linalg.svd(W.detach(), full_matrices=False)
    return U, s, Vh.T


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("subspace", ["top", "tail"])
@pytest.mark.parametrize("rotation", ["cayley", "linear"])
def test_identity_at_init(shape, subspace, rotation) -> None:
    layer = make_layer(*shape, subspace=subspace, rotation=rotation)
    W0 = layer.base_layer.weight
    assert torch.equal(layer.merged_weight(), W0)
    x = torch.randn(4, shape[1], dtype=F64)
    for path in ("lowrank", "dense"):
        layer.forward_path = path
        assert torch.equal(layer(x), layer.base_layer(x))
    U, s, V = layer.adapted_factors()
    assert (
        torch.equal(U, layer.svd_U) and torch.equal(s, layer.svd_s) and torch.equal(V, layer.svd_V)
    )


@settings(max_examples=20, deadline=None)
@given(
    shape=st.sampled_from(SHAPES),
    subspace=st.sampled_from(["top", "tail"]),
    p=st.floats(0.0, 1.0),
    outer=st.integers(0, 7),
    seed=st.integers(0, 2**16),
    scale=st.floats(0.0, 5.0),
    tau=st.floats(1e-4, 1.0),
)
def test_bases_stay_orthonormal_and_spectrum_is_s_plus_ds(
    shape, subspace, p, outer, seed, scale, tau
) -> None:
    layer = make_layer(*shape, inner_ratio=p, outer_rank=outer, tau=tau, subspace=subspace)
    U0, s0, V0 = full_svd(layer.base_layer.weight)
    randomise(layer, seed, scale)
    U, s_new, V = layer.adapted_factors()
    eye = torch.eye(layer.num_components, dtype=F64)
    assert torch.allclose(U.T @ U, eye, atol=1e-10)
    assert torch.allclose(V.T @ V, eye, atol=1e-10)
    drift = basis_drift(layer)
    assert drift["U"] < 1e-10 and drift["V"] < 1e-10
    # Singular values of W' = the untouched ones plus |s_J + ds| (compared as sorted multisets).
    untouched = [
        j
        for j in range(len(s0))
        if j not in set(component_indices(len(s0), layer.inner_rank, layer.outer_rank, subspace))
    ]
    expected = torch.sort(torch.cat([s0[untouched], s_new.detach().abs()]), descending=True).values
    assert torch.allclose(
        torch.linalg.svdvals(layer.merged_weight().detach()), expected, atol=1e-10
    )


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("subspace", ["top", "tail"])
def test_untouched_components_and_rank_of_the_update(shape, subspace) -> None:
    layer = make_layer(*shape, inner_ratio=0.3, outer_rank=2, subspace=subspace)
    W0 = layer.base_layer.weight.detach().clone()
    U0, _, V0 = full_svd(W0)
    randomise(layer, 3)
    Wp = layer.merged_weight().detach()
    changed = set(component_indices(min(shape), layer.inner_rank, layer.outer_rank, subspace))
    for j in range(min(shape)):
        if j not in changed:
            assert torch.allclose(Wp @ V0[:, j], W0 @ V0[:, j], atol=1e-12)
    a = layer.num_components
    rank = torch.linalg.matrix_rank(Wp - W0, atol=1e-10)
    assert rank <= a + layer.outer_rank <= 2 * a


def test_tail_subspace_keeps_the_dominant_components() -> None:
    layer = make_layer(12, 5, inner_ratio=0.4, outer_rank=0, subspace="tail")
    W0 = layer.base_layer.weight.detach().clone()
    U0, s0, V0 = full_svd(W0)
    randomise(layer, 4, scale=2.0)
    Wp = layer.merged_weight().detach()
    k = layer.inner_rank
    for j in range(min(W0.shape) - k):  # top r - k components: same left/right vectors and value
        assert torch.allclose(Wp @ V0[:, j], s0[j] * U0[:, j], atol=1e-12)
        assert torch.allclose(Wp.T @ U0[:, j], s0[j] * V0[:, j], atol=1e-12)
    assert not torch.allclose(Wp, W0)


def test_linear_rotation_follows_the_first_order_formula() -> None:
    layer = make_layer(12, 5, rotation="linear", outer_rank=0)
    randomise(layer, 5, scale=0.1)
    k = layer.inner_rank
    K = torch.zeros(k, k, dtype=F64)
    rows, cols = torch.triu_indices(k, k, 1)
    K[rows, cols] = layer.inner_skew.detach()
    G = torch.eye(k, dtype=F64) + 2 * (K - K.T)
    U, s, V = layer.svd_U, layer.svd_s, layer.svd_V
    expected = layer.base_layer.weight + U * (s + layer.delta_s.detach()) @ (V @ G).T - U * s @ V.T
    assert torch.allclose(layer.merged_weight().detach(), expected, atol=1e-12)


@pytest.mark.parametrize("path", ["lowrank", "dense"])
def test_gradients_reach_every_generator_at_zero(path) -> None:
    layer = make_layer(12, 5, inner_ratio=0.6, outer_rank=3)
    layer.forward_path = path
    x = torch.randn(6, 5, dtype=F64)
    target = torch.randn(6, 12, dtype=F64)
    ((layer(x) - target) ** 2).sum().backward()
    for name in ("inner_skew", "delta_s", "outer_L"):
        grad = getattr(layer, name).grad
        assert grad is not None and grad.abs().max() > 1e-6, name
    assert layer.base_layer.weight.grad is None


def test_gradcheck_through_rotations_and_householder() -> None:
    layer = make_layer(9, 4, inner_ratio=0.75, outer_rank=2, tau=0.1)
    randomise(layer, 6, scale=0.3)
    x = torch.randn(3, 4, dtype=F64)
    names = ("inner_skew", "delta_s", "outer_L")

    def fn(*values):
        return torch.func.functional_call(layer, dict(zip(names, values, strict=True)), (x,))

    for path in ("lowrank", "dense"):
        layer.forward_path = path
        inputs = [getattr(layer, n).detach().clone().requires_grad_(True) for n in names]
        assert torch.autograd.gradcheck(fn, inputs, atol=1e-6)


@pytest.mark.parametrize("rotation", ["cayley", "linear"])
@pytest.mark.parametrize("shape", SHAPES)
def test_lowrank_and_dense_paths_agree(rotation, shape) -> None:
    layer = make_layer(*shape, rotation=rotation)
    randomise(layer, 7)
    x = torch.randn(2, 3, shape[1], dtype=F64)
    layer.forward_path = "lowrank"
    low = layer(x)
    layer.forward_path = "dense"
    dense = layer(x)
    assert low.shape == (2, 3, shape[0])
    assert torch.allclose(low, dense, atol=1e-12)
    assert torch.allclose(
        dense, nn.functional.linear(x, layer.merged_weight(), layer.base_layer.bias), atol=1e-12
    )


def test_auto_path_follows_the_flop_count() -> None:
    layer = SSVDOLinear(nn.Linear(64, 256), inner_ratio=0.1, outer_rank=4)
    # Training: the dense path pays tokens * m * n for the grad of W', so low-rank wins while
    # 3 (n a + a w + w m) < m n per token, whatever the batch.
    assert layer._use_lowrank(tokens=8, training=True)
    assert layer._use_lowrank(tokens=100_000, training=True)
    # Inference: forming W' once is amortised over the tokens.
    assert layer._use_lowrank(tokens=8, training=False)
    assert not layer._use_lowrank(tokens=4096, training=False)
    wide = SSVDOLinear(nn.Linear(64, 256), inner_ratio=1.0, outer_rank=64)  # a + l = 128
    assert not wide._use_lowrank(tokens=4096, training=True)
    layer.forward_path = "dense"
    assert not layer._use_lowrank(tokens=1, training=True)


@pytest.mark.parametrize("shape", SHAPES)
def test_merge_unmerge_round_trip(shape) -> None:
    layer = make_layer(*shape)
    W0 = layer.base_layer.weight.detach().clone()
    randomise(layer, 8)
    x = torch.randn(5, shape[1], dtype=F64)
    before = layer(x).detach()
    Wp = layer.merged_weight().detach()
    layer.merge()
    assert layer.merged
    assert torch.equal(layer.base_layer.weight, Wp)
    assert torch.allclose(layer(x), before, atol=1e-12)
    layer.merge()  # no-op
    assert torch.equal(layer.base_layer.weight, Wp)
    with pytest.raises(RuntimeError, match="merged"):
        layer.decompose()
    layer.unmerge()
    assert not layer.merged and torch.equal(layer.base_layer.weight, W0)
    assert torch.allclose(layer(x), before, atol=1e-12)


def test_redecompose_adopts_the_merged_weight() -> None:
    layer = make_layer(12, 5, inner_ratio=0.4, outer_rank=2)
    randomise(layer, 9)
    Wp = layer.merged_weight().detach().clone()
    layer.redecompose(inner_ratio=0.2, outer_rank=4)
    assert (layer.inner_rank, layer.outer_rank) == (1, 4)
    assert not layer.merged
    assert torch.allclose(layer.base_layer.weight, Wp, atol=1e-12)
    assert torch.equal(layer.merged_weight(), layer.base_layer.weight)
    assert torch.allclose(layer.svd_s, torch.linalg.svdvals(Wp)[: layer.num_components], atol=1e-12)
    assert all(p.requires_grad for p in (layer.inner_skew, layer.delta_s, layer.outer_L))


def _round_trip(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("merged", [False, True])
def test_state_dict_round_trip_weights_only(merged) -> None:
    layer = make_layer(12, 5)
    randomise(layer, 10)
    x = torch.randn(3, 5, dtype=F64)
    expected = layer(x).detach()
    if merged:
        layer.merge()
    fresh = make_layer(12, 5, seed=123)  # different base weights, same settings
    fresh.load_state_dict(_round_trip(layer.state_dict()))
    assert fresh.merged == merged
    assert torch.allclose(fresh(x), expected, atol=1e-12)
    if not merged:
        assert torch.equal(fresh.merged_weight(), layer.merged_weight())


def test_loading_only_base_weights_refactorises_them() -> None:
    layer = make_layer(12, 5)
    other = nn.Linear(5, 12).double()
    layer.load_state_dict(
        {"base_layer.weight": other.weight, "base_layer.bias": other.bias}, strict=False
    )
    assert torch.allclose(
        layer.svd_s, torch.linalg.svdvals(other.weight.detach())[: layer.num_components], atol=1e-12
    )
    assert torch.equal(layer.merged_weight(), other.weight)


@pytest.mark.parametrize(
    ("shape", "p", "outer", "expected"),
    [
        ((12, 5), 0.6, 2, (3, 2)),
        ((12, 5), 1.0, 100, (5, 5)),
        ((12, 9), 0.5, 8, (5, 3)),
        ((5, 12), 0.5, 3, (3, 0)),
        ((7, 7), 0.0, 3, (0, 0)),
    ],
)
def test_effective_ranks_and_parameter_counts(shape, p, outer, expected) -> None:
    m, n = shape
    layer = make_layer(m, n, inner_ratio=p, outer_rank=outer)
    k, l_eff = expected
    assert (layer.inner_rank, layer.outer_rank) == expected
    trainable = {name: t.numel() for name, t in layer.named_parameters() if t.requires_grad}
    assert set(trainable) == {"inner_skew", "delta_s", "outer_L"}
    assert trainable["inner_skew"] == k * (k - 1) // 2 and trainable["delta_s"] == k
    assert layer.outer_L.shape == (max(m - n, 0), l_eff)
    assert (
        sum(trainable.values())
        == k * (k - 1) // 2 + k + max(m - n, 0) * l_eff
        == ssvdo_num_parameters(m, n, k, l_eff)
    )
    assert not any(t.requires_grad for t in layer.base_layer.parameters())


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"inner_ratio": -0.1}, ValueError, "inner_ratio"),
        ({"inner_ratio": 1.5}, ValueError, "inner_ratio"),
        ({"inner_ratio": math.nan}, ValueError, "inner_ratio"),
        ({"inner_ratio": "0.1"}, TypeError, "inner_ratio"),
        ({"outer_rank": -1}, ValueError, "outer_rank"),
        ({"outer_rank": 1.5}, TypeError, "outer_rank"),
        ({"tau": 0.0}, ValueError, "tau"),
        ({"tau": -1e-3}, ValueError, "tau"),
        ({"tau": math.inf}, ValueError, "tau"),
        ({"rotation": "qr"}, ValueError, "rotation"),
        ({"subspace": "middle"}, ValueError, "subspace"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, error, name) -> None:
    settings_ = {"inner_ratio": 0.5, **kwargs}
    with pytest.raises(error, match=name):
        SSVDOLinear(nn.Linear(4, 8), **settings_)


def test_non_linear_base_layer_is_rejected() -> None:
    with pytest.raises(TypeError, match="base_layer"):
        SSVDOLinear(nn.Conv1d(4, 8, 3), inner_ratio=0.5)


def test_float32_layer_is_exact_at_init_and_orthonormal() -> None:
    torch.manual_seed(0)
    layer = SSVDOLinear(nn.Linear(48, 96), inner_ratio=0.25, outer_rank=8)
    assert layer.svd_U.dtype == torch.float32
    assert torch.equal(layer.merged_weight(), layer.base_layer.weight)
    randomise_f32 = {
        n: 0.3 * torch.randn_like(p) for n, p in layer.named_parameters() if p.requires_grad
    }
    with torch.no_grad():
        for n, value in randomise_f32.items():
            getattr(layer, n).copy_(value)
    drift = basis_drift(layer)
    assert drift["U"] < 1e-5 and drift["V"] < 1e-5


def _backward_flops(layer: SSVDOLinear, tokens: int) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(tokens, layer.in_features, requires_grad=True)
    y = layer(x)
    with FlopCounterMode(display=False) as counter:
        y.square().sum().backward()
    return counter.get_total_flops()


@pytest.mark.parametrize(("shape", "outer"), [((96, 32), 3), ((32, 96), 0)])
def test_backward_computes_no_gradient_for_the_frozen_left_factor(shape, outer) -> None:
    torch.manual_seed(0)
    layer = SSVDOLinear(nn.Linear(shape[1], shape[0]), inner_ratio=0.5, outer_rank=outer)
    layer.forward_path = "lowrank"
    m, n, a, ol = layer.out_features, layer.in_features, layer.num_components, layer.outer_rank
    w = a + ol
    per_token = (_backward_flops(layer, 128) - _backward_flops(layer, 64)) // 64 // 2
    # grad x of W0 (m n); of h = x V (n a); grads of the low-rank activations (m a + m l),
    # of U_perp Q (m l) and of the cores (2 a w). A gradient for [U_J, U_perp Q] would add m a.
    assert per_token == m * n + n * a + m * a + 2 * m * ol + 2 * a * w


def test_householder_reflectors_stay_column_major_so_ormqr_never_copies() -> None:
    import copy

    from torch.profiler import profile

    layer = SSVDOLinear(nn.Linear(16, 48), inner_ratio=0.25, outer_rank=3)
    m, n = 48, 16
    assert layer.perp_reflectors.stride() == (1, m)
    moved = copy.deepcopy(layer).double()
    assert moved.perp_reflectors.stride() == (1, m)
    fresh = SSVDOLinear(nn.Linear(16, 48), inner_ratio=0.25, outer_rank=3)
    # As peft saves it (safetensors wants contiguous tensors):
    saved = {k: v.contiguous() if torch.is_tensor(v) else v for k, v in layer.state_dict().items()}
    fresh.load_state_dict(_round_trip(saved))
    assert fresh.perp_reflectors.stride() == (1, m)
    fresh.redecompose(outer_rank=2)
    assert fresh.perp_reflectors.stride() == (1, m)
    with torch.no_grad():
        layer.outer_L.normal_()
    x = torch.randn(5, n)
    with profile(record_shapes=True) as prof:
        layer(x).sum().backward()  # ormqr in forward and in backward
    big_copies = [
        e for e in prof.events() if e.name == "aten::copy_" and list(e.input_shapes[0]) == [m, n]
    ]
    assert layer.outer_L.grad is not None and not big_copies


def test_bfloat16_layer_runs_both_transforms() -> None:
    # No half-precision LU/ormqr kernels: the Cayley solve and the Householder product run in
    # float32 and come back in bfloat16.
    torch.manual_seed(0)
    layer = SSVDOLinear(nn.Linear(32, 96).to(torch.bfloat16), inner_ratio=0.3, outer_rank=4)
    x = torch.randn(7, 32, dtype=torch.bfloat16)
    for path in ("lowrank", "dense"):
        layer.forward_path = path
        y = layer(x)
        assert y.dtype == torch.bfloat16 and torch.equal(y.detach(), layer.base_layer(x))
        y.float().square().sum().backward()
        assert layer.outer_L.grad.abs().sum() > 0 and layer.delta_s.grad.abs().sum() > 0
    with torch.no_grad():
        layer.outer_L.normal_()
        layer.inner_skew.normal_()
    drift = basis_drift(layer)
    assert drift["U"] < 0.05 and drift["V"] < 0.05  # bfloat16 rounding, not a broken basis
