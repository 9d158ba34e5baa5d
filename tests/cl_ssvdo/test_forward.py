"""The hybrid forward path (``ssvdo.forward``): equal to the low-rank path in outputs and every
gradient, chosen by its cost, bfloat16-autocast safe and free of host syncs."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from cl_ssvdo.ssvdo.forward import form_weight, hybrid_linear
from cl_ssvdo.ssvdo.layer import SSVDOLinear

F64 = torch.float64


def _layer(m: int, n: int, share: float, outer: int, dtype: torch.dtype, seed: int) -> SSVDOLinear:
    torch.manual_seed(seed)
    layer = SSVDOLinear(nn.Linear(n, m).to(dtype), inner_ratio=share, outer_rank=outer)
    with torch.no_grad():
        for p in layer.trainable_parameters:
            p.normal_(0.0, 0.05)
    return layer


def _step(layer: SSVDOLinear, x: torch.Tensor, path: str, recompute: bool | None = None):
    """Output and gradients (x, then each trainable parameter) of one forward + backward."""
    layer.forward_path = path
    if recompute is not None:
        layer._recompute_for_input_grad = lambda tokens: recompute
    x = x.detach().requires_grad_(True)
    for p in layer.trainable_parameters:
        p.grad = None
    y = layer(x)
    (y.sin() * torch.linspace(-1, 1, y.shape[-1], dtype=y.dtype)).sum().backward()
    grads = [x.grad] + [p.grad for p in layer.trainable_parameters]
    if recompute is not None:
        del layer._recompute_for_input_grad
    return y.detach(), grads


def _close(a, b, tol: float) -> None:
    for u, v in zip(a, b, strict=True):
        if u is None or v is None:
            assert (u is None or not u.any()) and (v is None or not v.any())
            continue
        if u.numel() == 0 and v.numel() == 0:
            continue
        scale = max(1.0, float(v.abs().max()))
        assert float((u - v).abs().max()) <= tol * scale


@settings(max_examples=25, deadline=None)
@given(
    m=st.integers(2, 40),
    n=st.integers(2, 40),
    share=st.sampled_from([0.0, 0.25, 0.5, 1.0]),
    outer=st.integers(0, 6),
    tokens=st.integers(1, 50),
    lead=st.booleans(),
    recompute=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_hybrid_equals_lowrank_in_outputs_and_all_gradients(
    m, n, share, outer, tokens, lead, recompute, seed
) -> None:
    layer = _layer(m, n, share, outer, F64, seed)
    if layer.num_components == 0:
        return
    shape = (2, tokens, n) if lead else (tokens, n)
    x = torch.randn(*shape, dtype=F64)
    y_low, g_low = _step(layer, x, "lowrank")
    y_hyb, g_hyb = _step(layer, x, "hybrid", recompute)
    _close([y_hyb], [y_low], 1e-12)
    _close(g_hyb, g_low, 1e-11)


@pytest.mark.parametrize("recompute", [False, True])
def test_hybrid_in_float32_agrees_to_rounding(recompute: bool) -> None:
    layer = _layer(96, 32, 0.5, 8, torch.float32, 3)
    x = torch.randn(64, 32)
    y_low, g_low = _step(layer, x, "lowrank")
    y_hyb, g_hyb = _step(layer, x, "hybrid", recompute)
    _close([y_hyb], [y_low], 1e-6)
    _close(g_hyb, g_low, 1e-6)


def test_hybrid_saves_no_m_by_n_tensor_for_backward() -> None:
    m, n, tokens = 96, 32, 8
    layer = _layer(m, n, 0.25, 4, torch.float32, 0)
    layer.forward_path = "hybrid"
    saved: list[tuple[int, ...]] = []
    weight = layer.base_layer.weight
    blocks = _blocks(layer)  # the parameter side keeps the m x n reflectors: not counted here
    with torch.autograd.graph.saved_tensors_hooks(
        lambda t: saved.append(tuple(t.shape)) or t, lambda t: t
    ):
        out = hybrid_linear(
            torch.randn(tokens, n),
            weight,
            None,
            *blocks,
            recompute=True,
        )
    assert out.shape == (tokens, m)
    # The frozen weight is kept by reference; anything else m x n would be W' itself.
    assert saved.count((m, n)) == 1


def _blocks(layer: SSVDOLinear):
    b = layer.delta_blocks()
    return b.U, b.core_top, b.outer_left, b.core_outer, b.V


def test_auto_takes_hybrid_when_its_arithmetic_is_lower() -> None:
    layer = _layer(256, 64, 1.0, 0, torch.float32, 0)  # a = 64 = n: corrections cost a lot
    assert layer.forward_kind(tokens=4, training=True) == "lowrank"  # forming W' not amortised
    assert layer.forward_kind(tokens=4096, training=True) == "hybrid"
    assert layer.forward_kind(tokens=4096, training=False) == "dense"
    thin = _layer(256, 64, 0.05, 0, torch.float32, 0)  # a = 3: W' costs 3 n (a + m)
    assert thin.forward_kind(tokens=16, training=True) == "lowrank"
    # Per token the hybrid pays about half the corrections' (n + m) a: it wins with the tokens.
    assert thin.forward_kind(tokens=512, training=True) == "hybrid"
    # Input gradient: W' again once tokens amortise it, the factor form for a few tokens.
    assert layer._recompute_for_input_grad(4096) and not layer._recompute_for_input_grad(4)


def test_hybrid_rejects_a_trainable_base_weight() -> None:
    w = torch.randn(4, 3, requires_grad=True)
    U, V, core = torch.eye(4)[:, :1], torch.eye(3)[:, :1], torch.ones(1, 1)
    with pytest.raises(ValueError, match="must be frozen"):
        hybrid_linear(torch.randn(2, 3), w, None, U, core, None, None, V, recompute=False)


@pytest.mark.parametrize("path", ["lowrank", "hybrid", "dense"])
def test_bfloat16_autocast_on_cpu(path: str) -> None:
    layer = _layer(96, 32, 0.5, 8, torch.float32, 1)
    x = torch.randn(48, 32)
    y32, g32 = _step(layer, x, path)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y16, g16 = _step(layer, x, path)
    assert y16.dtype == torch.bfloat16
    for g in g16:
        assert g.dtype == torch.float32 and torch.isfinite(g).all()
    _close([y16.float()], [y32], 3e-2)
    _close(g16, g32, 5e-2)


_HOST_SYNC_OPS = {
    "aten._local_scalar_dense",
    "aten.item",
    "aten.is_nonzero",
    "aten.equal",
    "aten._linalg_check_errors",
    "aten.nonzero",
}


class _OpRecorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("recompute", [False, True])
def test_compute_path_reads_no_value_on_the_host(recompute: bool) -> None:
    """What would block a CUDA stream (``.item()``, data-dependent shapes, LAPACK error checks):
    none of it in the hybrid, low-rank or dense products of a forward + backward."""
    layer = _layer(96, 32, 0.5, 8, torch.float32, 2)
    blocks = [t.detach().requires_grad_(True) for t in _blocks(layer)]
    x = torch.randn(16, 32, requires_grad=True)
    weight, bias = layer.base_layer.weight, layer.base_layer.bias
    with _OpRecorder() as rec:
        y = hybrid_linear(x, weight, bias, *blocks, recompute=recompute)
        y.square().sum().backward()
        form_weight(weight, *blocks).sum().backward()
    assert not rec.ops & _HOST_SYNC_OPS, rec.ops & _HOST_SYNC_OPS


@pytest.mark.parametrize("path", ["lowrank", "hybrid", "dense"])
def test_train_step_of_the_layer_reads_no_value_on_the_host(path: str) -> None:
    """The whole step, parameter side (rotations, Householder) included."""
    layer = _layer(96, 32, 0.5, 8, torch.float32, 4)
    layer.forward_path = path
    x = torch.randn(16, 32, requires_grad=True)
    with _OpRecorder() as rec:
        layer(x).square().sum().backward()
    assert not rec.ops & _HOST_SYNC_OPS, rec.ops & _HOST_SYNC_OPS


def test_docstring_examples_run() -> None:
    import doctest

    from cl_ssvdo.ssvdo import forward

    result = doctest.testmod(forward, raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0
