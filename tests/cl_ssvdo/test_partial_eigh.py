"""``top_eigh``: the partial ``syevr`` route against torch's full ``eigh``, what it reads, the
thread count it runs with, and where it hands over to ``torch.linalg.eigh``."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_info, threadpool_limits

from cl_ssvdo.ssvdo import partial_eigh
from cl_ssvdo.ssvdo.partial_eigh import PARTIAL_MAX_SHARE, top_eigh, uses_partial


@pytest.fixture
def one_thread():
    """torch on one intra-op thread, as the partial route requires."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def partial_at_any_size(monkeypatch: pytest.MonkeyPatch, one_thread) -> None:
    """The partial route for every n (it is taken from n = 768 only, which is slow to test
    exhaustively), so the property tests below exercise ``syevr`` and not torch."""
    monkeypatch.setattr(partial_eigh, "PARTIAL_MIN_SIZE", 1)


def _spd(n: int, seed: int, dtype: torch.dtype, gap: float = 0.0) -> torch.Tensor:
    """A^T A of a random (n + 5, n) A, float64, cast to ``dtype``; ``gap`` lifts the top
    eigenvalues so that the subspaces compared below are well defined."""
    gen = torch.Generator().manual_seed(seed)
    A = torch.randn(n + 5, n, generator=gen, dtype=torch.float64)
    sym = A.T @ A
    if gap:
        Q = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64)).Q
        vals = torch.linalg.eigvalsh(sym)
        vals[n // 2 :] += gap * vals[-1]
        sym = (Q * vals) @ Q.T
    return sym.to(dtype)


# the fixture only sets a constant for the whole test: nothing to reset between inputs
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(2, 80),
    b_frac=st.floats(0.01, PARTIAL_MAX_SHARE),
    seed=st.integers(0, 2**16),
    double=st.booleans(),
)
def test_matches_full_eigh(
    partial_at_any_size, n: int, b_frac: float, seed: int, double: bool
) -> None:
    """Eigenvalues equal torch's top b; vectors orthonormal, eigenvectors (residual), and span
    torch's top-b subspace where a gap defines it."""
    dtype = torch.float64 if double else torch.float32
    eps = torch.finfo(dtype).eps
    b = max(1, min(n, round(b_frac * n)))
    for gap in (0.0, 1.0):
        sym = _spd(n, seed, dtype, gap)
        assert uses_partial(sym, b) == (b <= PARTIAL_MAX_SHARE * n)
        vals, vecs = top_eigh(sym, b)
        full_vals, full_vecs = torch.linalg.eigh(sym)
        scale = float(full_vals[-1].abs()) + 1.0
        assert vals.dtype == vecs.dtype == dtype and tuple(vecs.shape) == (n, b)
        assert bool((vals[1:] >= vals[:-1]).all())  # ascending, as torch returns them
        assert (vals - full_vals[n - b :]).abs().max() <= 200 * n * eps * scale
        assert (vecs.T @ vecs - torch.eye(b, dtype=dtype)).abs().max() <= 200 * n * eps
        assert (sym @ vecs - vecs * vals).abs().max() <= 200 * n * eps * scale
        if gap and b <= n // 2 + n % 2:  # the top b lie inside the lifted block: a gap
            ref = full_vecs[:, n - b :]
            overlap = torch.linalg.svdvals(ref.T.double() @ vecs.double())
            assert float(overlap.min()) > 1 - 1e3 * n * eps


def test_reads_the_lower_triangle_only(partial_at_any_size) -> None:
    """The upper triangle is ignored, as ``torch.linalg.eigh`` ignores it (``_lower_gram``
    leaves it zero)."""
    sym = _spd(40, 3, torch.float64)
    lower = torch.tril(sym)
    noisy = lower + torch.triu(torch.randn(40, 40, dtype=torch.float64), diagonal=1)
    assert uses_partial(lower, 10)
    vals_l, vecs_l = top_eigh(lower, 10)
    vals_n, vecs_n = top_eigh(noisy, 10)
    assert torch.equal(vals_l, vals_n) and torch.equal(vecs_l, vecs_n)
    assert torch.allclose(vals_l, torch.linalg.eigvalsh(sym)[-10:], rtol=1e-12, atol=0)


def test_runs_scipy_blas_on_one_thread(
    partial_at_any_size, monkeypatch: pytest.MonkeyPatch
) -> None:
    """During the call SciPy's BLAS runs on one thread; afterwards it is back to what it was."""
    import scipy.linalg

    def scipy_blas() -> list[int]:
        return [
            lib["num_threads"]
            for lib in threadpool_info()
            if lib["user_api"] == "blas" and "scipy" in lib["filepath"]
        ]

    seen: list[list[int]] = []
    real = scipy.linalg.eigh

    def spy(*args, **kwargs):
        seen.append(scipy_blas())
        return real(*args, **kwargs)

    monkeypatch.setattr(scipy.linalg, "eigh", spy)
    with threadpool_limits(limits=2, user_api="blas"):
        before = scipy_blas()
        assert before and set(before) == {2}  # the pinned SciPy wheel bundles its OpenBLAS
        top_eigh(_spd(30, 0, torch.float32), 5)
        assert seen == [[1] * len(before)]
        assert scipy_blas() == before


def test_hands_over_to_torch_where_partial_does_not_pay(
    partial_at_any_size, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above ``PARTIAL_MAX_SHARE`` of n, below ``PARTIAL_MIN_SIZE``, on more than one thread
    and for dtypes ``syevr`` does not take, the result is torch's ``eigh``; SciPy is never
    asked."""
    import scipy.linalg

    def refuse(*args, **kwargs):
        raise AssertionError("scipy.linalg.eigh called")

    monkeypatch.setattr(scipy.linalg, "eigh", refuse)
    sym = _spd(20, 1, torch.float64)
    b = int(PARTIAL_MAX_SHARE * 20) + 1
    assert not uses_partial(sym, b)
    vals, vecs = top_eigh(sym, b)
    full_vals, full_vecs = torch.linalg.eigh(sym)
    assert torch.equal(vals, full_vals[20 - b :]) and torch.equal(vecs, full_vecs[:, 20 - b :])
    assert not uses_partial(sym.to(torch.float16), 2)
    assert uses_partial(sym, 2)
    monkeypatch.setattr(partial_eigh, "PARTIAL_MIN_SIZE", 21)
    assert not uses_partial(sym, 2)
    monkeypatch.setattr(partial_eigh, "PARTIAL_MIN_SIZE", 1)
    torch.set_num_threads(2)
    assert not uses_partial(sym, 2)


def test_rejects_a_count_outside_the_matrix() -> None:
    sym = _spd(6, 0, torch.float64)
    for b in (0, 7):
        with pytest.raises(ValueError, match=f"b = {b}"):
            top_eigh(sym, b)


def test_the_gram_route_takes_it_on_a_large_layer(
    one_thread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the real thresholds, the float32 Gram route of ``decompose`` on a 1024-wide layer
    asks for b = a + 8 pairs only, gets them from ``syevr``, and its triplets pass the probe
    and match the float64 singular values."""
    from cl_ssvdo.ssvdo.decompose import FAST_PAD, singular_triplets

    asked: list[tuple[int, int, bool]] = []
    real = partial_eigh.top_eigh

    def spy(sym: torch.Tensor, b: int):
        asked.append((sym.shape[0], b, uses_partial(sym, b)))
        return real(sym, b)

    monkeypatch.setattr("cl_ssvdo.ssvdo.decompose.top_eigh", spy)
    torch.manual_seed(0)
    W = torch.nn.Linear(1024, 1536).weight.detach()
    a = 200
    f = singular_triplets(W, range(a))
    assert f.route == "float32" and (1024, a + FAST_PAD, True) in asked
    exact = torch.linalg.svdvals(W.double())[:a]
    assert (f.s.double() - exact).abs().max() < 1e-5 * float(exact[0])
