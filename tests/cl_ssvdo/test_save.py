"""SSVD-O adapters saved unmerged in peft's format load back with stock peft onto the plain
model: the same function unmerged, the same weights merged, per-layer settings kept."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from peft import PeftModel
from torch import nn

from cl_ssvdo.ssvdo import inject_ssvdo, merge_ssvdo
from cl_ssvdo.ssvdo.save import plain_copy, save_ssvdo_adapters


def _adapted(seed: int, ratios: tuple[float, float], ranks: tuple[int, int]) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 8), nn.ReLU(), nn.Linear(8, 24))
    inject_ssvdo(
        net,
        {
            "0": {"inner_ratio": ratios[0], "outer_rank": ranks[0]},
            "4": {"inner_ratio": ratios[1], "outer_rank": ranks[1]},
        },
    )
    with torch.no_grad():  # a trained adapter, not the identity
        for p in net.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    return net


@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(0, 1000),
    ratios=st.tuples(st.sampled_from([0.25, 0.5, 1.0]), st.sampled_from([0.25, 0.5])),
    ranks=st.tuples(st.integers(0, 4), st.integers(0, 4)),
)
def test_saved_adapters_load_in_stock_peft_unmerged_and_merged(
    tmp_path_factory, seed, ratios, ranks
):
    net = _adapted(seed, ratios, ranks)
    plain = plain_copy(net)
    folder = save_ssvdo_adapters(net, tmp_path_factory.mktemp("adapter"))
    loaded = PeftModel.from_pretrained(copy.deepcopy(plain), folder)
    x = torch.randn(6, 8)
    torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=1e-6)
    merged = loaded.merge_and_unload()
    reference = copy.deepcopy(net)
    merge_ssvdo(reference)
    for (name, a), b in zip(
        merged.state_dict().items(), reference.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    overrides = json.loads((folder / "adapter_config.json").read_text()).get("layer_overrides")
    if (ratios[0], ranks[0]) != (ratios[1], ranks[1]):
        assert set(overrides) == {"4"}


def test_a_model_without_adapters_is_named(tmp_path) -> None:
    with pytest.raises(ValueError, match="no SSVDOLinear"):
        save_ssvdo_adapters(nn.Linear(4, 4), tmp_path)
