"""``cl_ssvdo.ssvdo.settings`` (defaults, validation, k / l and the count, the one place they
live) and ``cl_ssvdo.ssvdo.targets`` (the one target matcher)."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cl_ssvdo import budget
from cl_ssvdo.baselines import apply_adapter
from cl_ssvdo.ssvdo import SSVDOLinear, inject_ssvdo
from cl_ssvdo.ssvdo.settings import SETTING_NAMES, SSVDOSettings, num_parameters, ssvdo_ranks
from cl_ssvdo.ssvdo.targets import match_targets, resolve_targets, target_matches, targets_regex

ROOT = Path(__file__).resolve().parents[2]


def test_settings_validate_and_name_the_field() -> None:
    with pytest.raises(ValueError, match="tau"):
        SSVDOSettings(0.5, tau=0.0)
    with pytest.raises(ValueError, match="rotation"):
        SSVDOSettings(0.5, rotation="givens")
    with pytest.raises(TypeError, match="outer_rank"):
        SSVDOSettings(0.5, outer_rank=1.5)
    with pytest.raises(ValueError, match=r"layers\.0: unknown setting\(s\) \['rank'\]"):
        SSVDOSettings.from_mapping({"rank": 2}, "layers.0")
    with pytest.raises(ValueError, match="inner_ratio is required"):
        SSVDOSettings().ranks(8, 4)
    assert SSVDOSettings.from_mapping({"inner_ratio": 0.25}).replace(outer_rank=3).outer_rank == 3


@settings(max_examples=25, deadline=None)
@given(
    m=st.integers(1, 24),
    n=st.integers(1, 24),
    p=st.floats(0.0, 1.0),
    outer=st.integers(0, 30),
)
def test_counts_are_what_a_layer_trains(m: int, n: int, p: float, outer: int) -> None:
    """The formula of ``settings`` is the layer's own: (k, l) and the trainable count."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # capped outer rank
        layer = SSVDOLinear(nn.Linear(n, m).double(), inner_ratio=p, outer_rank=outer)
    trainable = sum(t.numel() for t in layer.parameters() if t.requires_grad)
    assert (layer.inner_rank, layer.outer_rank) == ssvdo_ranks(m, n, p, outer)
    assert trainable == num_parameters(m, n, p, outer) == budget.ssvdo_params(m, n, p, outer)
    assert SSVDOSettings(p, outer).num_parameters(m, n) == trainable


@settings(max_examples=60, deadline=None)
@given(
    name=st.lists(st.sampled_from(["a", "b", "0", "1", "ffn", "x"]), min_size=1, max_size=4),
    pattern=st.sampled_from(["*ffn.0", "ffn.0", "0", "a.*", "*.1", "b", "ffn", "?.0", "[ab].x"]),
)
def test_the_regex_for_peft_is_the_same_rule(name: list[str], pattern: str) -> None:
    dotted = ".".join(name)
    assert bool(re.fullmatch(targets_regex([pattern]), dotted)) == target_matches(dotted, pattern)


def _net() -> nn.Module:
    net = nn.Module()
    net.ffn = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4))
    net.att = nn.MultiheadAttention(4, 1)
    net.out_proj = nn.Linear(4, 4)
    return net


def test_one_matcher_for_inject_and_the_baselines() -> None:
    patterns = ["ffn.0", "*out_proj", "*.2"]
    with pytest.warns(UserWarning, match="att.out_proj"):
        assert match_targets(_net(), patterns) == [
            ("ffn.0", "ffn.0"),
            ("ffn.2", "*.2"),
            ("out_proj", "*out_proj"),
        ]
    names = resolve_targets(_net(), patterns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        injected = [s.name for s in inject_ssvdo(_net(), patterns, inner_ratio=0.5)]
    handle = apply_adapter(_net(), "ssvdo", patterns, inner_ratio=0.5)
    lora = apply_adapter(_net(), "lora", patterns, rank=1)
    assert names == injected == handle.targets == lora.targets == ["ffn.0", "ffn.2", "out_proj"]


def test_a_wrapped_layer_is_an_error_and_its_base_is_not_matched() -> None:
    net = _net()
    inject_ssvdo(net, ["ffn.0"], inner_ratio=0.5)
    with pytest.raises(ValueError, match="already an SSVDOLinear"):
        resolve_targets(net, ["*ffn.0"])
    assert resolve_targets(net, ["*.2"]) == ["ffn.2"]
    with pytest.raises(ValueError, match="base_layer"):
        resolve_targets(net, ["*base_layer"])


def test_importing_the_peft_config_first_registers_without_a_warning() -> None:
    """No import loop between ``config`` and ``peft_registration`` (it used to warn)."""
    code = (
        "import warnings; warnings.simplefilter('error')\n"
        "from cl_ssvdo.ssvdo.config import SSVDOConfig\n"
        "import peft\n"
        "print(peft.PeftType.SSVDO.value, SSVDOConfig(target_modules=['0'], inner_ratio=0.5).tau)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["SSVDO", "0.001"]


def test_setting_names_are_the_layer_arguments() -> None:
    import inspect

    params = inspect.signature(SSVDOLinear).parameters
    assert [n for n in params if n in SETTING_NAMES] == list(SETTING_NAMES)
    assert torch.is_tensor(SSVDOLinear(nn.Linear(4, 8), 0.5).svd_s)
