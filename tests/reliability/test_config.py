"""`extends`: a child config can replace a parent's block (``!replace``) instead of merging."""

from __future__ import annotations

import warnings

import pytest

from experiments.config import CONFIGS_DIR, ConfigError, load_config
from experiments.factory import build_plugins

CHILD = """\
extends: {parent}
name: ssvdo-decaying
strategy:
  adapter:
    schedule: {tag}
      decaying:
        start: {{inner_ratio: 0.5, outer_rank: 4}}
        factor: {{inner_ratio: 0.5, outer_rank: 0.5}}
"""


def test_child_replaces_the_schedule_block(tmp_path) -> None:
    parent = CONFIGS_DIR / "ssvdo.yaml"
    merged = tmp_path / "merged.yaml"
    merged.write_text(CHILD.format(parent=parent, tag=""))
    with pytest.raises(ConfigError, match="exactly one of"):
        build_plugins(load_config(str(merged)))  # constant + decaying: contradictory

    replaced = tmp_path / "replaced.yaml"
    replaced.write_text(CHILD.format(parent=parent, tag="!replace"))
    cfg = load_config(str(replaced))
    assert list(cfg["strategy"]["adapter"]["schedule"]) == ["decaying"]
    assert type(cfg["strategy"]["adapter"]["schedule"]) is dict  # plain data after loading
    assert cfg["strategy"]["adapter"]["targets"] == ["*ffn.0", "*ffn.3"]  # siblings still merge
    build_plugins(cfg)


def test_replace_tag_needs_a_mapping(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nseeds: !replace [1]\n")
    with pytest.raises(ConfigError, match="!replace applies to a mapping"):
        load_config(str(bad))


def test_a_budget_beyond_what_the_layers_hold_warns_with_the_cap() -> None:
    from cl_ssvdo.budget import allocate

    shapes = [(64, 16), (16, 64)]
    usable = 16 * 17 // 2 + 48 * 16 + 16 * 17 // 2
    with pytest.warns(UserWarning, match=f"budget: 1,000,000,000 .*{usable:,} trainable"):
        settings = allocate(shapes, 10**9, 0.5)
    assert settings[0] == (1.0, 16)  # every layer at its cap
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        allocate(shapes, usable, 0.5)  # exactly what fits: no warning


def test_an_outer_rank_beyond_the_layer_warns_with_the_cap() -> None:
    import torch

    from cl_ssvdo import SSVDOLinear

    with pytest.warns(UserWarning, match="outer_rank: 100000 capped at 16 for a 64x16 layer"):
        layer = SSVDOLinear(torch.nn.Linear(16, 64), inner_ratio=0.25, outer_rank=100000)
    assert layer.outer_rank == 16
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SSVDOLinear(torch.nn.Linear(64, 16), inner_ratio=0.25, outer_rank=4)  # no outer side
