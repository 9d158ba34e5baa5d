"""SSVDOLinear: exactness, orthonormality, spectrum, rank, gradients, merge and state."""

import copy
import io
import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cl_ssvdo import SSVDOLinear, basis_drift, ssvdo_num_parameters
from cl_ssvdo.ssvdo.diagnostics import step_angles
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
    scales = {"inner_skew": scale, "delta_s": ds_scale, "outer_L": scale}
    with torch.no_grad():
        for name, value in scales.items():
            param = getattr(layer, name)
            if param is not None:
                noise = torch.randn(param.shape, generator=gen, dtype=F64)
                param.copy_(value * noise)


def full_svd(W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    U, s, Vh = torch.linalg.svd(W.detach(), full_matrices=False)
    return U, s, Vh.T


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("subspace", ["top", "tail"])
@pytest.mark.parametrize("rotation", ["cayley", "linear"])
@pytest.mark.parametrize("parameterisation", ["v1", "v2"])
def test_identity_at_init(shape, subspace, rotation, parameterisation) -> None:
    layer = make_layer(
        *shape, subspace=subspace, rotation=rotation, parameterisation=parameterisation
    )
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
    parameterisation=st.sampled_from(["v1", "v2"]),
)
def test_bases_stay_orthonormal_and_spectrum_is_s_plus_ds(
    shape, subspace, p, outer, seed, scale, tau, parameterisation
) -> None:
    layer = make_layer(
        *shape,
        inner_ratio=p,
        outer_rank=outer,
        tau=tau,
        subspace=subspace,
        parameterisation=parameterisation,
    )
    U0, s0, V0 = full_svd(layer.base_layer.weight)
    randomise(layer, seed, scale)
    U, s_new, V = layer.adapted_factors()
    eye = torch.eye(layer.num_components, dtype=F64)
    assert torch.allclose(U.T @ U, eye, atol=1e-10)
    assert torch.allclose(V.T @ V, eye, atol=1e-10)
    drift = basis_drift(layer)
    assert drift["U"] < 1e-10 and drift["V"] < 1e-10
    # Singular values of W' = the untouched ones plus |s'_J| (compared as sorted multisets),
    # s' = s + ds (v1) or s exp(ds) (v2).
    s_J = layer.svd_s
    if layer.inner_rank:
        inner = slice(layer._inner_start, layer._inner_start + layer.inner_rank)
        ds = layer.delta_s.detach()
        shifted = s_J[inner] + ds if parameterisation == "v1" else s_J[inner] * torch.exp(ds)
        assert torch.allclose(s_new[inner].detach(), shifted, atol=1e-14)
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
    layer = make_layer(12, 5, rotation="linear", outer_rank=0, parameterisation="v1")
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
    assert layer.parameterisation == "v2"
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
    names = layer.generator_names
    assert names == ("inner_skew", "delta_s", "outer_L")

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
    # Training: the dense path pays tokens * m * n for the grad of W' and is never chosen; the
    # hybrid one (W' once per step, see test_forward.py) wins once the tokens amortise W'.
    assert layer._use_lowrank(tokens=8, training=True)
    assert layer.forward_kind(tokens=100_000, training=True) == "hybrid"
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
    assert layer.generator_names == ("delta_s", "outer_L")  # k = 1: no skew entries
    assert all(p.requires_grad for p in layer.trainable_parameters)


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
        ((12, 5), 0.2, 0, (1, 0)),
        ((5, 12), 0.2, 2, (1, 0)),
    ],
)
def test_effective_ranks_and_parameter_counts(shape, p, outer, expected) -> None:
    m, n = shape
    layer = make_layer(m, n, inner_ratio=p, outer_rank=outer)
    k, l_eff = expected
    assert (layer.inner_rank, layer.outer_rank) == expected
    trainable = {name: t.numel() for name, t in layer.named_parameters() if t.requires_grad}
    # Only generators with entries exist (issue 12: no zero-size parameters).
    expected_names = {
        name
        for name, size in [
            ("inner_skew", k * (k - 1) // 2),
            ("delta_s", k),
            ("outer_L", max(m - n, 0) * l_eff),
        ]
        if size
    }
    assert set(trainable) == expected_names == set(layer.generator_names)
    assert all(size > 0 for size in trainable.values())
    assert trainable.get("inner_skew", 0) == k * (k - 1) // 2 and trainable.get("delta_s", 0) == k
    if l_eff:
        assert layer.outer_L.shape == (m - n, l_eff)
    else:
        assert layer.outer_L is None
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
        ({"parameterisation": "v3"}, ValueError, "parameterisation"),
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


# --------------------------------------------------------------- v1 = the code before v2
def _head_layer_module():
    from tests.cl_ssvdo.head_v1 import layer as head_layer

    return head_layer


V1_CASES = [
    ((12, 5), 0.6, 2, "top", "cayley"),
    ((12, 5), 0.4, 3, "tail", "linear"),
    ((12, 5), 0.2, 3, "top", "cayley"),  # k = 1: no inner_skew any more
    ((5, 12), 0.6, 2, "top", "cayley"),  # m < n: no outer_L any more
    ((7, 7), 1.0, 0, "tail", "cayley"),
    ((40, 16), 0.25, 6, "top", "cayley"),
]


@pytest.mark.parametrize(("shape", "p", "outer", "subspace", "rotation"), V1_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_v1_reproduces_the_previous_code_bit_for_bit(shape, p, outer, subspace, rotation, dtype):
    """Outputs, merged weights and every gradient of parameterisation v1 equal those of the
    layer as it was at commit 3529d77 (a frozen copy in tests/cl_ssvdo/head_v1)."""
    m, n = shape
    settings_ = dict(inner_ratio=p, outer_rank=outer, tau=1e-3, rotation=rotation)
    torch.manual_seed(11)
    base = nn.Linear(n, m).to(dtype)
    old = _head_layer_module().SSVDOLinear(copy.deepcopy(base), subspace=subspace, **settings_)
    new = SSVDOLinear(copy.deepcopy(base), subspace=subspace, parameterisation="v1", **settings_)
    # Same factors (the decomposition may change independently), same generator values.
    gen = torch.Generator().manual_seed(12)
    with torch.no_grad():
        for name in ("inner_skew", "delta_s", "outer_L"):
            getattr(old, name).copy_(0.3 * torch.randn(getattr(old, name).shape, generator=gen))
    new.load_state_dict(old.state_dict())  # empty generators of the old layer are skipped
    assert new.parameterisation == "v1"
    assert torch.equal(new.merged_weight(), old.merged_weight())
    x = torch.randn(6, n, dtype=dtype, generator=gen).requires_grad_(True)
    g = torch.randn(6, m, dtype=dtype, generator=gen)
    for path in ("lowrank", "dense"):
        grads = []
        for layer in (old, new):
            layer.zero_grad()
            x.grad = None
            layer.forward_path = path
            y = layer(x)
            (y * g).sum().backward()
            names = [
                nm for nm in ("inner_skew", "delta_s", "outer_L") if getattr(new, nm) is not None
            ]
            grads.append((y.detach(), x.grad.clone(), [getattr(layer, nm).grad for nm in names]))
        (y_old, gx_old, gp_old), (y_new, gx_new, gp_new) = grads
        assert torch.equal(y_old, y_new) and torch.equal(gx_old, gx_new), path
        for a_, b_ in zip(gp_old, gp_new, strict=True):
            assert torch.equal(a_, b_), path
    for a_, b_ in zip(old.adapted_factors(), new.adapted_factors(), strict=True):
        assert torch.equal(a_.detach(), b_.detach())


# ------------------------------------------------------- v2: angle per optimiser step ~ lr
def _one_adam_step(layer: SSVDOLinear, lr: float, seed: int) -> None:
    """One Adam step from zero on random gradients: each entry moves by lr |g| / (|g| + eps)."""
    gen = torch.Generator().manual_seed(seed)
    for param in layer.trainable_parameters:
        param.grad = torch.randn(param.shape, generator=gen, dtype=param.dtype)
    if layer.trainable_parameters:
        torch.optim.Adam(layer.trainable_parameters, lr=lr).step()


C_MAX = 3.0  # largest angle per step / lr under v2 (exact bound for k <= 10, l <= 9, see docs)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(2, 12),
    extra=st.integers(1, 24),
    p=st.floats(0.0, 1.0),
    outer=st.integers(0, 8),
    tau=st.floats(1e-6, 10.0),
    lr=st.floats(1e-4, 1e-2),
    seed=st.integers(0, 2**16),
    subspace=st.sampled_from(["top", "tail"]),
)
def test_v2_step_moves_every_angle_by_about_lr(n, extra, p, outer, tau, lr, seed, subspace):
    layer = make_layer(
        n + extra, n, seed=seed % 7, inner_ratio=p, outer_rank=outer, tau=tau, subspace=subspace
    )
    _one_adam_step(layer, lr, seed)
    a = step_angles(layer)
    # Root-mean-square angles: at most lr for any step of at most lr per entry (exact).
    assert a["outer_rms"] <= lr * (1 + 1e-6) and a["inner_rms"] <= lr * (1 + 1e-6)
    # Largest angles: at most sqrt(l) lr and sqrt(k - 1) lr (exact), C_MAX lr here.
    assert a["outer_max"] <= min(C_MAX, math.sqrt(max(layer.outer_rank, 1))) * lr * (1 + 1e-6)
    assert a["inner_max"] <= min(C_MAX, math.sqrt(max(layer.inner_rank - 1, 1))) * lr * (1 + 1e-6)
    assert a["s_rel"] <= math.expm1(lr) * (1 + 1e-6)
    # Not vanishing either: the step does turn the bases (each generator moved by ~lr).
    if layer.outer_rank:
        assert a["outer_rms"] >= 0.1 * lr
    if layer.inner_rank >= 2:
        assert a["inner_rms"] >= 0.1 * lr


@pytest.mark.parametrize("tau", [1e-3, 1.0])
def test_v2_on_a_large_layer_stays_within_c_lr_and_v1_does_not(tau) -> None:
    lr = 5e-3
    got = {}
    for parameterisation in ("v1", "v2"):
        torch.manual_seed(0)
        layer = SSVDOLinear(
            nn.Linear(96, 384),
            inner_ratio=0.25,
            outer_rank=16,
            tau=tau,
            parameterisation=parameterisation,
        )
        _one_adam_step(layer, lr, seed=1)
        got[parameterisation] = step_angles(layer)
    v1, v2 = got["v1"], got["v2"]
    assert v2["outer_max"] <= C_MAX * lr and v2["inner_max"] <= C_MAX * lr
    assert 0.5 * lr <= v2["outer_rms"] <= lr and 0.5 * lr <= v2["inner_rms"] <= lr
    # v1: the inner angle grows like 2 lr sqrt(k) (k = 24), the outer one like
    # lr sqrt(m - n) / sqrt(tau) (m - n = 288): both far beyond C_MAX lr.
    assert v1["inner_max"] > 4 * C_MAX * lr and v1["outer_max"] > C_MAX * lr
    if tau < 0.01:
        assert v1["outer_max"] > 0.5  # tens of degrees in one step
    # v2 scales s by exp(+-lr); v1 shifts it by lr, relative lr / s: scale-dependent.
    assert 0.5 * lr <= v2["s_rel"] <= math.expm1(lr) * (1 + 1e-4)  # float32 s
    assert v1["s_rel"] != pytest.approx(v2["s_rel"], rel=0.1)


# ------------------------------------------- orthonormality at extreme scales (float32, v2)
@pytest.mark.parametrize("log_ratio", [0, 4, 6, 8])
def test_float32_bases_stay_orthonormal_up_to_1e8(log_ratio) -> None:
    torch.manual_seed(0)
    layer = SSVDOLinear(nn.Linear(24, 120), inner_ratio=0.5, outer_rank=6)
    rows = layer.out_features - layer.in_features
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        rank_one = torch.randn(rows, 1, generator=gen) @ torch.randn(1, 6, generator=gen)
        # v2: tan(theta) = sigma(L) / sqrt(m - n), so |L| / sqrt(m - n) plays |L| / sqrt(tau).
        layer.outer_L.copy_(
            rank_one / torch.linalg.matrix_norm(rank_one, 2) * 10.0**log_ratio * math.sqrt(rows)
        )
        layer.inner_skew.normal_(generator=gen)
        layer.inner_skew.mul_(10.0**log_ratio)
    drift = basis_drift(layer)
    assert drift["U"] <= 1e-6 and drift["V"] <= 1e-6, drift


# ------------------------------------------------------------- rank-deficient weights
def _low_rank_linear(m: int, n: int, rank: int, seed: int, dtype=F64) -> nn.Linear:
    gen = torch.Generator().manual_seed(seed)
    linear = nn.Linear(n, m).to(dtype)
    with torch.no_grad():
        W = torch.randn(m, rank, generator=gen, dtype=F64) @ torch.randn(
            rank, n, generator=gen, dtype=F64
        )
        linear.weight.copy_(W / math.sqrt(rank))
    return linear


def _check_rank_deficient(layer: SSVDOLinear, atol: float) -> None:
    W0 = layer.base_layer.weight.detach().double()
    s0 = torch.linalg.svdvals(W0)
    randomise(layer, 5, scale=0.7, ds_scale=0.2)
    U, s_new, V = (t.detach().double() for t in layer.adapted_factors())
    eye = torch.eye(layer.num_components, dtype=F64)
    assert torch.allclose(U.T @ U, eye, rtol=0, atol=atol)
    assert torch.allclose(V.T @ V, eye, rtol=0, atol=atol)
    J = set(component_indices(len(s0), layer.inner_rank, layer.outer_rank, layer.subspace))
    untouched = [j for j in range(len(s0)) if j not in J]
    expected = torch.sort(torch.cat([s0[untouched], s_new.abs()]), descending=True).values
    got = torch.linalg.svdvals(layer.merged_weight().detach().double())
    assert torch.allclose(got, expected, atol=atol * float(s0[0]) * 10)


@pytest.mark.parametrize("parameterisation", ["v1", "v2"])
@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_rank_deficient_weight_of_issue_12(parameterisation, dtype) -> None:
    # 160 x 48 of rank 10, k = 24, l = 4: drift 0.18 and singular values off by 0.013 before.
    layer = SSVDOLinear(
        _low_rank_linear(160, 48, 10, 0, dtype),
        inner_ratio=0.5,
        outer_rank=4,
        parameterisation=parameterisation,
    )
    assert (layer.inner_rank, layer.outer_rank) == (24, 4)
    _check_rank_deficient(layer, 1e-10 if dtype == F64 else 1e-6)


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(3, 20),
    extra=st.integers(-8, 20),
    rank_frac=st.floats(0.05, 0.9),
    p=st.floats(0.0, 1.0),
    outer=st.integers(0, 8),
    subspace=st.sampled_from(["top", "tail"]),
    parameterisation=st.sampled_from(["v1", "v2"]),
    seed=st.integers(0, 2**16),
)
def test_rank_deficient_weights_keep_orthonormal_bases_and_the_spectrum(
    n, extra, rank_frac, p, outer, subspace, parameterisation, seed
) -> None:
    m = max(n + extra, 2)
    rank = max(1, int(rank_frac * min(m, n)))
    layer = SSVDOLinear(
        _low_rank_linear(m, n, rank, seed),
        inner_ratio=p,
        outer_rank=outer,
        subspace=subspace,
        parameterisation=parameterisation,
    )
    _check_rank_deficient(layer, 1e-10)


def test_completion_module_examples_run() -> None:
    import doctest

    from cl_ssvdo.ssvdo import completion

    result = doctest.testmod(completion, raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0


# ---------------------------------------------- checkpoints and the parameterisation setting
def test_checkpoint_of_the_previous_code_loads_as_v1() -> None:
    torch.manual_seed(3)
    base = nn.Linear(5, 12).double()
    old = _head_layer_module().SSVDOLinear(copy.deepcopy(base), inner_ratio=0.2, outer_rank=0)
    assert old.inner_skew.numel() == 0 and old.outer_L.numel() == 0  # saved empty tensors
    with torch.no_grad():
        old.delta_s.fill_(0.3)
    fresh = SSVDOLinear(copy.deepcopy(base), inner_ratio=0.2, outer_rank=0)
    assert fresh.parameterisation == "v2" and fresh.generator_names == ("delta_s",)
    with pytest.warns(UserWarning, match="parameterisation='v1'"):
        fresh.load_state_dict(_round_trip(old.state_dict()))
    assert fresh.parameterisation == "v1"
    assert torch.equal(fresh.merged_weight(), old.merged_weight())


def test_parameterisation_travels_with_the_state() -> None:
    layer = make_layer(12, 5, parameterisation="v2")
    randomise(layer, 2)
    other = make_layer(12, 5, seed=4, parameterisation="v1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other.load_state_dict(_round_trip(layer.state_dict()))
    assert other.parameterisation == "v2"
    assert torch.equal(other.merged_weight(), layer.merged_weight())
    assert "parameterisation='v2'" in repr(layer)
    layer.redecompose(parameterisation="v1")
    assert layer.parameterisation == "v1" and torch.equal(
        layer.merged_weight(), layer.base_layer.weight
    )


def test_parameterisation_reaches_the_layer_from_a_config() -> None:
    from cl_ssvdo import inject_ssvdo
    from experiments.config import ConfigError, load_config
    from experiments.factory import build_adapter_plugin

    cfg = load_config("ssvdo", ["strategy.adapter.parameterisation=v1"])
    plugin = build_adapter_plugin(cfg["strategy"]["adapter"])
    assert plugin.parameterisation == "v1"
    with pytest.raises(ConfigError, match="parameterisation"):
        load_config("ssvdo", ["strategy.adapter.parameterisation=v3"])
    net = nn.Sequential(nn.Linear(4, 16))
    inject_ssvdo(
        net, ["0"], inner_ratio=0.5, outer_rank=2, parameterisation=plugin.parameterisation
    )
    assert net[0].parameterisation == "v1"
    inject_ssvdo(net2 := nn.Sequential(nn.Linear(4, 16)), ["0"], inner_ratio=0.5)
    assert net2[0].parameterisation == "v2"  # the default for new configurations
