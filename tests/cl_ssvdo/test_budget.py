"""Parameter counts (against real modules) and the budget allocator's guarantees."""

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from peft import LoraConfig
from peft.tuners.lora import LoraModel
from torch import nn

from cl_ssvdo import budget
from cl_ssvdo.ssvdo import SSVDOLinear

dims = st.integers(1, 48)
shapes_st = st.lists(st.tuples(dims, dims), min_size=1, max_size=5)


def test_formulas_by_hand() -> None:
    # k = round(0.25 * 1024) = 256 -> 256*255/2 + 256; l = 16 -> 3072 * 16
    assert budget.ssvdo_params(4096, 1024, 0.25, 16) == 32896 + 49152
    assert budget.ssvdo_params(1024, 4096, 0.25, 16) == 32896  # m <= n: no outer part
    assert budget.ssvdo_params(10, 4, 1.0, 99) == 10 + 6 * 4  # k = 4, l clamps to min(4, 6)
    assert budget.ssvdo_params(5, 5, 0.5, 3) == 6  # k = round(2.5) = 3 (halves up)
    assert budget.ssvd_params(4096, 1024, 0.25) == 32896
    assert budget.lora_params(4096, 1024, 8) == 8 * 5120
    assert budget.dora_params(4096, 1024, 8) == 8 * 5120 + 4096
    assert budget.pissa_params(4096, 1024, 8) == 8 * 5120
    assert budget.full_params(4096, 1024) == 4096 * 1024
    assert budget.full_params(4096, 1024, bias=True) == 4096 * 1025
    assert budget.effective_outer_rank(100, 10, 50) == 10
    assert budget.effective_outer_rank(12, 10, 50) == 2
    assert budget.effective_outer_rank(10, 12, 50) == 0
    assert budget.method_params("dora", 8, 4, rank=2) == 2 * 12 + 8


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: budget.ssvdo_params(8, 4, 1.5, 0), "inner_ratio"),
        (lambda: budget.ssvdo_params(8, 4, 0.5, -1), "outer_rank"),
        (lambda: budget.ssvdo_params(0, 4, 0.5, 0), "m"),
        (lambda: budget.lora_params(8, 4, 0), "rank"),
        (lambda: budget.method_params("adalora", 8, 4, rank=2), "method"),
        (lambda: budget.allocate([(8, 4)], 10, 1.5), "inner_share"),
        (lambda: budget.allocate([], 10, 0.5), "shapes"),
        (lambda: budget.allocate([(8, 4), (3,)], 10, 0.5), r"shapes\[1\]"),
        (lambda: budget.allocate([(8, 4)], -1, 0.5), "budget"),
        (lambda: budget.allocate([(8, 4)], 0, 0.5), "budget"),
        (lambda: budget.allocate([(8, 4)], 3, 0.0), "budget"),  # one outer step costs 4
        (lambda: budget.match_rank("lora", [(8, 4)], 11), "budget"),
        (lambda: budget.match_rank("dora", [(8, 4)], 19), "budget"),
        (lambda: budget.match_rank("ssvdo", [(8, 4)], 100), "method"),
    ],
)
def test_bad_arguments_name_the_argument(call, name) -> None:
    with pytest.raises(ValueError, match=name):
        call()


def test_allocator_example_and_owsm_split() -> None:
    owsm = [(4096, 1024), (1024, 4096)] * 6
    alloc = budget.allocate(owsm, 1_000_000, 0.5)
    outer = sum(
        budget.ssvdo_params(m, n, 0.0, ol) for (m, n), (_, ol) in zip(owsm, alloc, strict=True)
    )
    total = budget.total_params(owsm, alloc)
    assert outer <= 500_000 < outer + 3072 and total - outer <= 500_000
    assert {ol for _, ol in alloc[1::2]} == {0}  # 1024 <- 4096 layers cannot take outer
    assert budget.allocate([(64, 16), (16, 64)], 300, 0.5) == [(0.75, 3), (0.6875, 0)]


def test_outer_share_without_room_goes_inner_with_a_warning() -> None:
    with pytest.warns(UserWarning, match="outer share"):
        alloc = budget.allocate([(16, 32), (32, 32)], 100, 0.5)
    assert all(ol == 0 for _, ol in alloc)
    assert 100 - max(16, 32) < budget.total_params([(16, 32), (32, 32)], alloc) <= 100


def _parts(shapes, alloc):
    inner = sum(budget.ssvd_params(m, n, p) for (m, n), (p, _) in zip(shapes, alloc, strict=True))
    return inner, budget.total_params(shapes, alloc) - inner


@settings(max_examples=80, deadline=None)
@given(shapes_st, st.integers(0, 4000), st.floats(0.0, 1.0))
def test_allocate_never_exceeds_and_respects_the_share(shapes, total, share) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            alloc = budget.allocate(shapes, total, share)
        except ValueError as exc:
            assert "budget" in str(exc)
            return
    assert len(alloc) == len(shapes)
    inner, outer = _parts(shapes, alloc)
    assert 0 < inner + outer <= total
    room = [(m, n) for m, n in shapes if m > n]
    b_out = int((1 - share) * total + 1e-9) if room else 0
    assert outer <= b_out and inner <= total - b_out
    for (m, n), (p, ol) in zip(shapes, alloc, strict=True):
        r = min(m, n)
        assert abs(p * r - round(p * r)) < 1e-9  # p = k / r
        assert ol == budget.effective_outer_rank(m, n, ol)
    # Unspent inner budget is below the next inner step unless every layer is full.
    ks = [round(p * min(m, n)) for (m, n), (p, _) in zip(shapes, alloc, strict=True)]
    if any(k < min(m, n) for k, (m, n) in zip(ks, shapes, strict=True)):
        assert total - b_out - inner < max(ks) + 1 + 1
    if room and all(
        ol < min(n, m - n) for (m, n), (_, ol) in zip(shapes, alloc, strict=True) if m > n
    ):
        assert b_out - outer < max(m - n for m, n in room)


@settings(max_examples=60, deadline=None)
@given(shapes_st, st.integers(1, 3000), st.integers(0, 500), st.floats(0.0, 1.0))
def test_allocate_is_monotone_in_budget(shapes, total, extra, share) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            small = budget.allocate(shapes, total, share)
        except ValueError:
            return
        big = budget.allocate(shapes, total + extra, share)
    for (p1, l1), (p2, l2) in zip(small, big, strict=True):
        assert p1 <= p2 and l1 <= l2
    assert budget.total_params(shapes, small) <= budget.total_params(shapes, big)


@settings(max_examples=60, deadline=None)
@given(shapes_st, st.integers(0, 20000), st.sampled_from(["lora", "dora", "pissa"]))
def test_match_rank_is_the_largest_rank_within_budget(shapes, total, method) -> None:
    try:
        rank, count = budget.match_rank(method, shapes, total)
    except ValueError as exc:
        assert "budget" in str(exc)
        assert sum(budget.method_params(method, m, n, rank=1) for m, n in shapes) > total
        return
    assert count == sum(budget.method_params(method, m, n, rank=rank) for m, n in shapes)
    assert count <= total
    cap = min(min(s) for s in shapes)
    following = sum(budget.method_params(method, m, n, rank=rank + 1) for m, n in shapes)
    assert rank == cap or following > total


@settings(max_examples=25, deadline=None)
@given(dims, dims, st.floats(0.0, 1.0), st.integers(0, 60))
def test_ssvdo_count_equals_the_real_layer(m, n, p, ol) -> None:
    torch.manual_seed(0)
    layer = SSVDOLinear(nn.Linear(n, m), inner_ratio=p, outer_rank=ol)
    trainable = sum(t.numel() for t in layer.parameters() if t.requires_grad)
    assert (layer.inner_rank, layer.outer_rank) == (
        budget.inner_rank(p, min(m, n)),
        budget.effective_outer_rank(m, n, ol),
    )
    assert trainable == budget.ssvdo_params(m, n, p, ol)


@pytest.mark.parametrize(
    ("method", "extra"),
    [("lora", {}), ("dora", {"use_dora": True}), ("pissa", {"init_lora_weights": "pissa"})],
)
def test_peft_counts_equal_the_formulas(method, extra) -> None:
    torch.manual_seed(0)
    shapes = [(24, 8), (8, 24), (13, 13)]
    model = nn.Sequential(*(nn.Linear(n, m) for m, n in shapes))
    config = LoraConfig(r=3, lora_alpha=3, target_modules=r"^(0|1|2)$", **extra)
    tuned = LoraModel(model, config, "default")
    trainable = sum(p.numel() for p in tuned.parameters() if p.requires_grad)
    assert trainable == sum(budget.method_params(method, m, n, rank=3) for m, n in shapes)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(dims, dims), min_size=1, max_size=6),
    st.integers(0, 6000),
    st.sampled_from(["lora", "dora", "pissa"]),
)
def test_match_ranks_is_closest_within_one_layer_step(shapes, total, method) -> None:
    try:
        ranks, count = budget.match_ranks(method, shapes, total)
    except ValueError as exc:
        assert "budget" in str(exc)
        assert sum(budget.method_params(method, m, n, rank=1) for m, n in shapes) > total
        return
    caps = [min(s) for s in shapes]
    assert count == sum(
        budget.method_params(method, m, n, rank=r) for (m, n), r in zip(shapes, ranks, strict=True)
    )
    assert count <= total
    assert all(1 <= r <= cap for r, cap in zip(ranks, caps, strict=True))
    open_ = [(m + n) for (m, n), r, cap in zip(shapes, ranks, caps, strict=True) if r < cap]
    if open_:  # some layer could still grow: the shortfall is below one layer's step
        assert total - count < max(m + n for m, n in shapes)
        uncapped = [r for r, cap in zip(ranks, caps, strict=True) if r < cap]
        assert max(ranks) - min(uncapped) <= 1
    # Never worse than the uniform rank.
    uniform_count = budget.match_rank(method, shapes, total)[1]
    assert count >= uniform_count


def test_match_ranks_bumps_the_first_layers_and_closes_the_uniform_gap() -> None:
    owsm = [(4096, 1024), (1024, 4096)] * 6
    ranks, count = budget.match_ranks("lora", owsm, 1_000_000)
    assert ranks == [17] * 3 + [16] * 9 and count == 998_400
    assert budget.match_rank("lora", owsm, 1_000_000) == (16, 983_040)
    # Budgets of an SSVD-O allocation land within 5% (here within one layer step, 5,120).
    for share in (1.0, 0.5, 0.0):
        target = budget.total_params(owsm, budget.allocate(owsm, 983_040, share))
        _, got = budget.match_ranks("dora", owsm, target)
        assert 0 <= target - got < 5120
    with pytest.raises(ValueError, match="budget"):
        budget.match_ranks("lora", [(8, 4)], 11)
    with pytest.raises(ValueError, match="method"):
        budget.match_ranks("ssvd", [(8, 4)], 100)


def test_svd_competitor_formulas_by_hand() -> None:
    assert budget.mica_params(4096, 1024, 8) == 8 * 1024  # B frozen: A (rank x n) trains
    assert budget.corda_params(4096, 1024, 8) == 8 * 5120
    assert budget.osf_params(4096, 1024, 8) == 8 * (5120 + 1)  # U_low, S_low, V_low
    assert budget.rank_cap("osf", 64, 16) == 15 and budget.rank_cap("mica", 64, 16) == 16
    with pytest.raises(ValueError, match=r"rank: OSF keeps at least one frozen direction"):
        budget.osf_params(64, 16, 16)
    with pytest.raises(ValueError, match=r"shapes\[1\]: osf cannot adapt a 1 x 8 layer"):
        budget.match_ranks("osf", [(8, 4), (1, 8)], 1000)


def test_svd_competitor_counts_equal_real_peft_modules() -> None:
    from peft import OSFConfig
    from peft.tuners.osf import OSFModel

    shapes = [(24, 8), (8, 24), (13, 13)]
    for method in ("mica", "corda", "osf"):
        torch.manual_seed(0)
        model = nn.Sequential(*(nn.Linear(n, m) for m, n in shapes)).requires_grad_(False)
        if method == "mica":
            tuned = LoraModel(
                model, LoraConfig(r=3, target_modules=r"^(0|1|2)$", init_lora_weights="mica"), "d"
            )
        elif method == "osf":  # trainable rank 3 = min(m, n) - effective_rank
            pattern = {rf"^{i}$": min(s) - 3 for i, s in enumerate(shapes)}
            config = OSFConfig(target_modules=r"^(0|1|2)$", rank_pattern=pattern)
            tuned = OSFModel(model, config, "d")
        else:  # CorDA's trainable factors are LoRA's (their initialisation differs)
            tuned = LoraModel(model, LoraConfig(r=3, target_modules=r"^(0|1|2)$"), "d")
        trainable = sum(p.numel() for p in tuned.parameters() if p.requires_grad)
        assert trainable == sum(budget.method_params(method, m, n, rank=3) for m, n in shapes)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(2, 48), st.integers(2, 48)), min_size=1, max_size=6),
    st.integers(0, 6000),
    st.sampled_from(["mica", "corda", "osf"]),
)
def test_svd_competitors_match_ranks_closest_within_one_step(shapes, total, method) -> None:
    step = {"mica": lambda m, n: n, "corda": lambda m, n: m + n, "osf": lambda m, n: m + n + 1}
    try:
        ranks, count = budget.match_ranks(method, shapes, total)
    except ValueError as exc:
        assert "budget" in str(exc)
        assert sum(budget.method_params(method, m, n, rank=1) for m, n in shapes) > total
        return
    caps = [budget.rank_cap(method, m, n) for m, n in shapes]
    assert count == sum(
        budget.method_params(method, m, n, rank=r) for (m, n), r in zip(shapes, ranks, strict=True)
    )
    assert count <= total
    assert all(1 <= r <= cap for r, cap in zip(ranks, caps, strict=True))
    if any(r < cap for r, cap in zip(ranks, caps, strict=True)):
        assert total - count < max(step[method](m, n) for m, n in shapes)
    assert count >= budget.match_rank(method, shapes, total)[1]
