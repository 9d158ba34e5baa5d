"""SSVD-O through peft: get_peft_model, save/load, merge_and_unload, adapter switching."""

import pytest
import torch
from torch import nn

peft = pytest.importorskip("peft")

import cl_ssvdo  # noqa: E402
from cl_ssvdo.ssvdo.layer import ssvdo_num_parameters, ssvdo_ranks  # noqa: E402

F64 = torch.float64


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Linear(8, 24)
        self.down = nn.Linear(24, 8)
        self.att = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.relu(self.up(x)))


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return Block().double()


def randomise(model: nn.Module) -> None:
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for _, param in model.named_parameters():
            if param.requires_grad:
                param.copy_(0.2 * torch.randn(param.shape, generator=gen, dtype=param.dtype))


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(4, 8, generator=torch.Generator().manual_seed(1), dtype=F64)


def config(**kwargs):
    kwargs.setdefault("target_modules", ["up", "down"])
    kwargs.setdefault("inner_ratio", 0.5)
    kwargs.setdefault("outer_rank", 3)
    return cl_ssvdo.SSVDOConfig(**kwargs)


def test_get_peft_model_counts_and_identity(x) -> None:
    model = make_model()
    before = model(x).detach()
    peft_model = peft.get_peft_model(model, config())
    assert peft_model.peft_config["default"].peft_type == "SSVDO"
    expected = sum(
        ssvdo_num_parameters(m, n, *ssvdo_ranks(m, n, 0.5, 3)) for m, n in [(24, 8), (8, 24)]
    )
    trainable, _ = peft_model.get_nb_trainable_parameters()
    assert trainable == expected == (6 + 4 + 16 * 3) + (6 + 4)
    assert torch.equal(peft_model(x), before)


def test_save_load_and_merge_and_unload(x, tmp_path) -> None:
    peft_model = peft.get_peft_model(make_model(), config(subspace="tail", tau=1e-2))
    randomise(peft_model)
    adapted = peft_model(x).detach()
    peft_model.save_pretrained(tmp_path)
    reloaded = peft.PeftModel.from_pretrained(make_model(), tmp_path)
    assert torch.equal(reloaded(x), adapted)
    merged = peft_model.merge_and_unload()
    assert type(merged.up) is nn.Linear and type(merged.down) is nn.Linear
    assert torch.allclose(merged(x), adapted, atol=1e-12)


def test_merge_unmerge_and_disable(x) -> None:
    model = make_model()
    before = model(x).detach()
    w0 = model.up.weight.detach().clone()
    peft_model = peft.get_peft_model(model, config())
    randomise(peft_model)
    adapted = peft_model(x).detach()
    peft_model.merge_adapter()
    assert torch.allclose(peft_model(x), adapted, atol=1e-12)
    peft_model.unmerge_adapter()
    assert torch.equal(peft_model.base_model.model.up.base_layer.weight, w0)
    with peft_model.disable_adapter():
        assert torch.equal(peft_model(x), before)
    assert torch.allclose(peft_model(x), adapted, atol=1e-12)


def test_second_adapter_and_switching(x) -> None:
    peft_model = peft.get_peft_model(make_model(), config())
    randomise(peft_model)
    first = peft_model(x).detach()
    peft_model.add_adapter("second", config(inner_ratio=0.25, outer_rank=1))
    peft_model.set_adapter("second")
    assert torch.allclose(peft_model(x), make_model()(x), atol=1e-12)  # new adapter starts at W0
    peft_model.set_adapter("default")
    assert torch.equal(peft_model(x), first)


def test_bad_config_and_targets_raise() -> None:
    with pytest.raises(ValueError, match="inner_ratio"):
        cl_ssvdo.SSVDOConfig(target_modules=["up"], inner_ratio=1.5)
    with pytest.raises(ValueError, match="tau"):
        cl_ssvdo.SSVDOConfig(target_modules=["up"], tau=0.0)
    with pytest.raises(ValueError, match="MultiheadAttention"):
        peft.get_peft_model(make_model(), config(target_modules=["out_proj"]))
    with pytest.raises(TypeError, match="att"):
        peft.get_peft_model(make_model(), config(target_modules=["att"]))
