"""Every adapter behind one interface: identity at init, exact merge, counts = formulas."""

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cl_ssvdo import budget
from cl_ssvdo.baselines import METHODS, apply_adapter, resolve_targets

TARGETS = ["*ffn.0", "*ffn.3"]


def calibrate(model: nn.Module, seed: int = 5, n: int = 4) -> None:
    """CorDA's calibration pass: ``n`` samples of 9 frames, one per forward call."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n):
        model(torch.randn(1, 9, 16, generator=gen))


SETTINGS = {
    "ssvdo": {"inner_ratio": 0.5, "outer_rank": 4},
    "ssvd": {"inner_ratio": 0.5},
    "lora": {"rank": 3},
    "dora": {"rank": 3},
    "pissa": {"rank": 3},
    "mica": {"rank": 3},
    "corda": {"rank": 3, "calibration": calibrate},
    "osf": {"rank": 3},
    "full": {},
}


class Block(nn.Module):
    """A transformer-like block: attention (never adapted) and a SpeechBrain-named FFN."""

    def __init__(self, d: int = 16, hidden: int = 64) -> None:
        super().__init__()
        self.att = nn.MultiheadAttention(d, 2, batch_first=True)
        self.ffn = nn.Sequential(
            nn.Linear(d, hidden), nn.ReLU(), nn.Dropout(0.0), nn.Linear(hidden, d)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.att(x, x, x, need_weights=False)[0]
        return x + self.ffn(x)


def make_model(seed: int = 0, d: int = 16, hidden: int = 64) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(Block(d, hidden), Block(d, hidden), nn.Linear(d, 5)).eval()


def expected_count(method: str, shape: tuple[int, int], s: dict) -> int:
    m, n = shape
    if method == "full":
        return budget.full_params(m, n, bias=True)
    return budget.method_params(method, m, n, **{k: v for k, v in s.items() if k != "calibration"})


def perturb(params: list[nn.Parameter], seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params:
            p.add_(0.05 * torch.randn(p.shape, generator=gen))


@pytest.mark.parametrize("method", METHODS)
def test_identity_at_init_exact_merge_and_counts(method: str) -> None:
    model = make_model()
    x = torch.randn(3, 7, 16)
    with torch.no_grad():
        y0 = model(x)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    handle = apply_adapter(model, method, TARGETS, **SETTINGS[method])
    assert handle.model is model
    with torch.no_grad():
        y_init = model(x)
    # PiSSA and CorDA split W into residual + factors
    tol = 1e-5 if method in ("pissa", "corda") else 1e-6
    torch.testing.assert_close(y_init, y0, atol=tol, rtol=0)

    rows = handle.summary()
    assert [r.name for r in rows] == ["0.ffn.0", "0.ffn.3", "1.ffn.0", "1.ffn.3"]
    assert [r.shape for r in rows] == [(64, 16), (16, 64)] * 2
    for row in rows:
        assert row.trainable == expected_count(method, row.shape, SETTINGS[method])
    # The adapter is the only trainable part of the model.
    assert handle.num_trainable() == sum(r.trainable for r in rows)

    perturb(handle.trainable_parameters())
    with torch.no_grad():
        y_adapted = model(x)
    assert not torch.allclose(y_adapted, y0, atol=1e-4)
    merged = handle.merge()
    assert merged is model
    for name in [r.name for r in rows]:
        assert type(merged.get_submodule(name)) is nn.Linear
    leftovers = [
        n
        for n, mod in merged.named_modules()
        if type(mod).__module__.split(".")[0] in ("peft", "cl_ssvdo")
    ]
    assert not leftovers and not hasattr(merged, "peft_config")
    assert {n: p.requires_grad for n, p in merged.named_parameters()} == flags
    with torch.no_grad():
        torch.testing.assert_close(merged(x), y_adapted, atol=1e-5, rtol=1e-5)
    with pytest.raises(RuntimeError, match="already merged"):
        handle.merge()


def test_every_method_adapts_the_same_layers_and_gradients_reach_only_adapters() -> None:
    seen = {}
    for method in METHODS:
        model = make_model()
        handle = apply_adapter(model, method, TARGETS, **SETTINGS[method])
        seen[method] = handle.targets
        loss = model(torch.randn(2, 4, 16)).square().mean()
        loss.backward()
        with_grad = {id(p) for p in model.parameters() if p.grad is not None}
        assert with_grad == {id(p) for p in handle.trainable_parameters()}
    assert len({tuple(v) for v in seen.values()}) == 1


def test_ssvdo_takes_a_budget_allocation() -> None:
    model = make_model()
    names = resolve_targets(model, TARGETS)
    shapes = [(64, 16), (16, 64)] * 2
    alloc = budget.allocate(shapes, 600, 0.5)
    handle = apply_adapter(model, "ssvdo", TARGETS, allocation=alloc)
    assert handle.targets == names
    assert handle.num_trainable() == budget.total_params(shapes, alloc)
    with pytest.raises(ValueError, match="allocation"):
        apply_adapter(make_model(), "ssvdo", TARGETS, allocation=alloc[:3])
    with pytest.raises(ValueError, match="either allocation"):
        apply_adapter(make_model(), "ssvdo", TARGETS, allocation=alloc, inner_ratio=0.5)


def test_reapplying_after_merge_starts_from_the_merged_weights() -> None:
    model = make_model()
    x = torch.randn(2, 5, 16)
    first = apply_adapter(model, "ssvdo", TARGETS, inner_ratio=0.5, outer_rank=2)
    perturb(first.trainable_parameters())
    model = first.merge()
    with torch.no_grad():
        y1 = model(x)
    second = apply_adapter(model, "lora", TARGETS, rank=2)
    with torch.no_grad():
        torch.testing.assert_close(model(x), y1, atol=1e-6, rtol=0)
    second.merge()


@pytest.mark.parametrize(
    ("method", "targets", "kwargs", "error", "needle"),
    [
        ("adalora", TARGETS, {"rank": 2}, ValueError, "method"),
        ("lora", TARGETS, {}, ValueError, "rank"),
        ("lora", TARGETS, {"rank": 0}, ValueError, "rank"),
        ("lora", TARGETS, {"rank": 2, "inner_ratio": 0.5}, ValueError, "inner_ratio"),
        ("ssvd", TARGETS, {"inner_ratio": 0.5, "outer_rank": 2}, ValueError, "outer_rank"),
        ("ssvdo", TARGETS, {}, ValueError, "inner_ratio"),
        ("ssvdo", TARGETS, {"inner_ratio": 1.5}, ValueError, "inner_ratio"),
        ("lora", ["*nothing*"], {"rank": 2}, ValueError, r"\*nothing\*"),
        ("lora", ["*ffn.1"], {"rank": 2}, TypeError, "ReLU"),
        ("full", ["*out_proj"], {}, ValueError, "MultiheadAttention"),
        ("full", "*ffn.0", {}, ValueError, "targets"),
    ],
)
def test_bad_arguments_are_named(method, targets, kwargs, error, needle) -> None:
    model = make_model()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(error, match=needle):
        apply_adapter(model, method, targets, **kwargs)
    after = model.state_dict()
    assert before.keys() == after.keys()


@settings(max_examples=6, deadline=None)
@given(
    st.integers(4, 24),
    st.integers(4, 48),
    st.sampled_from(["lora", "dora", "pissa", "ssvdo"]),
    st.integers(1, 4),
)
def test_counts_match_formulas_on_random_shapes(d, hidden, method, rank) -> None:
    model = make_model(d=d + d % 2, hidden=hidden)
    s = {"inner_ratio": rank / 4, "outer_rank": rank} if method == "ssvdo" else {"rank": rank}
    handle = apply_adapter(model, method, TARGETS, **s)
    for row in handle.summary():
        assert row.trainable == expected_count(method, row.shape, s)


@pytest.mark.parametrize("method", ["lora", "dora", "pissa"])
def test_per_layer_ranks_reach_peft_and_match_the_budget(method: str) -> None:
    model = make_model()
    shapes = [(64, 16), (16, 64)] * 2
    magnitudes = 2 * (64 + 16) if method == "dora" else 0  # DoRA: one per output row
    total = 4 * budget.lora_params(64, 16, 3) + 2 * 80 + magnitudes + 50
    ranks, count = budget.match_ranks(method, shapes, total)
    assert ranks == [4, 4, 3, 3] and count == total - 50
    x = torch.randn(2, 3, 16)
    with torch.no_grad():
        y0 = model(x)
    handle = apply_adapter(model, method, TARGETS, rank=ranks)
    assert handle.num_trainable() == count
    for row, rank in zip(handle.summary(), ranks, strict=True):
        assert row.trainable == expected_count(method, row.shape, {"rank": rank})
        layer = model.get_submodule(row.name)
        assert layer.r["default"] == rank and layer.scaling["default"] == 1.0  # alpha = rank
    with torch.no_grad():
        torch.testing.assert_close(model(x), y0, atol=1e-5, rtol=0)
    perturb(handle.trainable_parameters())
    with torch.no_grad():
        y1 = model(x)
    merged = handle.merge()
    assert "peft_config" not in vars(merged)
    with torch.no_grad():
        torch.testing.assert_close(merged(x), y1, atol=1e-5, rtol=1e-5)


def test_per_layer_ranks_name_exact_modules_and_take_per_layer_alpha() -> None:
    # "0" is a suffix of "sub.0": each rank must still land on its own module only.
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("0", nn.Linear(8, 8))
    model.add_module("sub", nn.Sequential(nn.Linear(8, 8)))
    handle = apply_adapter(model, "lora", ["0", "sub.0"], rank=[2, 5], alpha=[4, 5])
    assert [model.get_submodule(n).r["default"] for n in handle.targets] == [2, 5]
    assert [model.get_submodule(n).scaling["default"] for n in handle.targets] == [2.0, 1.0]
    assert [row.trainable for row in handle.summary()] == [2 * 16, 5 * 16]


@pytest.mark.parametrize(
    ("rank", "needle"), [([2, 2, 2], "rank: 3 values for 4"), ([2, 0, 2, 2], r"rank\[1\]")]
)
def test_bad_per_layer_ranks_are_named_before_the_model_changes(rank, needle) -> None:
    model = make_model()
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    with pytest.raises(ValueError, match=needle):
        apply_adapter(model, "lora", TARGETS, rank=rank)
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags


# -- peft's SVD-based / continual-learning competitors: MiCA, CorDA, OSF ------------------------
def test_mica_freezes_the_minor_left_singular_vectors_and_trains_a() -> None:
    model = make_model()
    plain = {
        n: model.get_submodule(n).weight.detach().clone() for n in resolve_targets(model, TARGETS)
    }
    handle = apply_adapter(model, "mica", TARGETS, rank=3)
    for row in handle.summary():
        layer = model.get_submodule(row.name)
        u = torch.linalg.svd(plain[row.name], full_matrices=False)[0]
        b, a = layer.lora_B["default"].weight, layer.lora_A["default"].weight
        torch.testing.assert_close(b, u[:, -3:])  # the 3 smallest singular values' directions
        assert not b.requires_grad and a.requires_grad and not a.any()  # A starts at zero
        assert row.trainable == a.numel() == 3 * row.shape[1] == budget.mica_params(*row.shape, 3)
        torch.testing.assert_close(layer.get_base_layer().weight, plain[row.name], atol=0, rtol=0)


def _expected_kpm_directions(weight: torch.Tensor, inputs: list[torch.Tensor], rank: int):
    """CorDA-KPM by hand: covariance of the (max-normalised) inputs, peft's damping, then the
    left singular vectors of the ``rank`` smallest singular values of ``W C``."""
    cov = sum((x / x.max().abs()).t() @ (x / x.max().abs()) for x in inputs) / len(inputs)
    damp = 0.01
    while True:
        fixed = cov + torch.eye(cov.shape[0]) * cov.diagonal().mean() * damp
        inverse = torch.linalg.inv(fixed)
        if torch.dist(fixed @ inverse, torch.eye(cov.shape[0])) < 0.05:
            break
        damp *= 2
    return torch.linalg.svd(weight @ fixed, full_matrices=False)[0][:, -rank:]


def test_corda_factors_come_from_the_calibration_covariance() -> None:
    model = make_model()
    names = resolve_targets(model, TARGETS)
    plain = {n: model.get_submodule(n).weight.detach().clone() for n in names}
    inputs: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    hooks = [
        model.get_submodule(n).register_forward_hook(
            lambda mod, args, out, n=n: inputs[n].append(
                args[0].detach().reshape(-1, args[0].shape[-1])
            )
        )
        for n in names
    ]
    with torch.no_grad():
        calibrate(model)
    for h in hooks:
        h.remove()
    modes: list[bool] = []

    def counted(m: nn.Module) -> None:
        modes.append(m.training)
        calibrate(m)

    model.train()
    handle = apply_adapter(model, "corda", TARGETS, rank=3, calibration=counted)
    assert modes == [False] and model.training  # one pass, in eval mode; the mode restored
    for row in handle.summary():
        layer = model.get_submodule(row.name)
        b = layer.lora_B["default"].weight.detach()
        expected = _expected_kpm_directions(plain[row.name], inputs[row.name], 3)
        # B spans exactly the expected minor directions of W C (projectors agree)
        q = torch.linalg.qr(b)[0]
        torch.testing.assert_close(q @ q.t(), expected @ expected.t(), atol=1e-4, rtol=0)
        assert row.trainable == budget.corda_params(*row.shape, 3)
        assert not any(hasattr(layer.get_base_layer(), f) for f in ("eigens", "covariance_matrix"))
    # another calibration set gives other factors
    other = make_model()
    apply_adapter(other, "corda", TARGETS, rank=3, calibration=lambda m: calibrate(m, seed=9))
    first = model.get_submodule(names[0]).lora_B["default"].weight
    assert not torch.allclose(first, other.get_submodule(names[0]).lora_B["default"].weight)
    assert handle.model.peft_config["default"].corda_config.covariance_file is None


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({}, "calibration: method 'corda' needs calibration="),
        ({"calibration": "batches.pt"}, "calibration: method 'corda' needs calibration="),
        (
            {"calibration": lambda m: None},
            r"calibration: the calibration pass never ran target layers",
        ),
        ({"calibration": calibrate, "corda_method": "pm"}, "corda_method"),
        ({"calibration": calibrate, "rank": 17}, "rank: corda takes at most rank 16"),
    ],
)
def test_corda_without_calibration_data_is_named_and_leaves_the_model_alone(kwargs, needle) -> None:
    model = make_model()
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=needle):
        apply_adapter(model, "corda", TARGETS, **{"rank": 3, **kwargs})
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], atol=0, rtol=0)
    for name in resolve_targets(model, TARGETS):
        layer = model.get_submodule(name)
        assert type(layer) is nn.Linear and not layer._forward_hooks
        assert not any(hasattr(layer, f) for f in ("eigens", "covariance_matrix", "sample_count"))


def test_osf_trains_the_bottom_triplets_orthogonally_to_the_frozen_top() -> None:
    model = make_model()
    names = resolve_targets(model, TARGETS)
    plain = {n: model.get_submodule(n).weight.detach().clone() for n in names}
    handle = apply_adapter(model, "osf", TARGETS, rank=[3, 4, 3, 4])
    for row, rank in zip(handle.summary(), [3, 4, 3, 4], strict=True):
        layer = model.get_submodule(row.name)
        assert layer.effective_rank["default"] == min(row.shape) - rank  # the frozen top part
        assert row.trainable == budget.osf_params(*row.shape, rank) == rank * (sum(row.shape) + 1)
    optimizer = torch.optim.SGD(handle.trainable_parameters(), lr=0.5)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(2, 5, 16)).square().mean().backward()
        optimizer.step()
    merged = handle.merge()
    for name, rank in zip(names, [3, 4, 3, 4], strict=True):
        w0, w1 = plain[name], merged.get_submodule(name).weight.detach()
        u, _, vh = torch.linalg.svd(w0, full_matrices=False)
        top = min(w0.shape) - rank
        delta = w1 - w0
        assert delta.abs().max() > 1e-4  # it trained
        # the update never touches the frozen top singular subspace (on either side)
        assert (u[:, :top].t() @ delta).abs().max() < 1e-5
        assert (delta @ vh[:top].t()).abs().max() < 1e-5


@pytest.mark.parametrize(
    ("method", "rank", "needle"),
    [
        ("mica", 17, "rank: mica takes at most rank 16"),
        ("osf", 16, "rank: osf takes at most rank 15"),
    ],
)
def test_rank_caps_are_named_before_the_model_changes(method, rank, needle) -> None:
    model = make_model()
    with pytest.raises(ValueError, match=needle):
        apply_adapter(model, method, TARGETS, rank=rank)
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("method", ["mica", "corda", "osf"])
def test_matched_per_layer_ranks_give_the_matched_count(method: str) -> None:
    shapes = [(64, 16), (16, 64)] * 2
    ranks, count = budget.match_ranks(method, shapes, 700)
    extra = {"calibration": calibrate} if method == "corda" else {}
    handle = apply_adapter(make_model(), method, TARGETS, rank=ranks, **extra)
    assert handle.num_trainable() == count <= 700
    assert [r.trainable for r in handle.summary()] == [
        budget.method_params(method, m, n, rank=r) for (m, n), r in zip(shapes, ranks, strict=True)
    ]
