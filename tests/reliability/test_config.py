"""`extends`: a child config can replace a parent's block (``!replace``) instead of merging."""

from __future__ import annotations

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
