"""Config schema, loading, overrides and the errors that name the field and allowed values."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from experiments.cli import EXIT_CONFIG, main
from experiments.config import (
    ConfigError,
    apply_overrides,
    config_hash,
    flatten,
    load_config,
    load_schema,
    parse_override,
    shipped_configs,
    validate_config,
)
from experiments.factory import build_plugins, check_schedule
from experiments.sweep import expand_sweep

EXPECTED = {
    "default",
    "ssvdo",
    "ssvd",
    "lora",
    "dora",
    "pissa",
    "mica",
    "corda",
    "osf",
    "full",
    "naive",
    "replay",
    "si",
    "ewc",
    "mas",
    "lwf",
    "agem",
    "weight_avg",
    "ssvdo_replay",
    "joint",
    "single_task",
    "demo",
    "sweep_example",
}


def test_schema_is_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(load_schema())


def test_every_strategy_has_a_shipped_config() -> None:
    assert EXPECTED <= {p.stem for p in shipped_configs()}


@pytest.mark.parametrize("path", shipped_configs(), ids=lambda p: p.stem)
def test_shipped_config_validates_and_builds(path: Path) -> None:
    cfg = load_config(path)
    if cfg.get("sweep"):
        children = expand_sweep(cfg, source=str(path))
        assert children, "a sweep needs at least one child"
        for child in children:
            assert child.config["tracking"]["experiment"] == cfg["tracking"]["experiment"]
            build_plugins(child.config)
    else:
        check_schedule(cfg["strategy"].get("adapter"))
        plugins = build_plugins(cfg)
        adapter = cfg["strategy"].get("adapter")
        assert (adapter is not None) == any(hasattr(p, "adapter_method") for p in plugins)


def test_configs_are_plain_yaml(tmp_path: Path) -> None:
    evil = tmp_path / "evil.yaml"
    evil.write_text("name: !!python/object/apply:os.system ['echo pwned']\nstrategy: {name: x}\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(evil)


@pytest.mark.parametrize(
    ("overrides", "field", "allowed_contains"),
    [
        (["strategy.adapter.method=lorra"], "strategy.adapter.method", "lora"),
        (["train.optimizer.name=rmsprop"], "train.optimizer.name", "adamw"),
        (["strategy.mode=continual"], "strategy.mode", "joint"),
        (["trian.lr=1"], "trian", "train"),
        (
            ["strategy.plugins=[{name: replay, mem_sze: 3}]"],
            "strategy.plugins.0.mem_sze",
            "mem_size",
        ),
        (["strategy.plugins=[{name: ewcc}]"], "strategy.plugins.0.name", "ewc"),
        (["strategy.adapter.rank=4"], "strategy.adapter.rank", "schedule"),
    ],
)
def test_invalid_config_names_field_and_allowed_values(overrides, field, allowed_contains) -> None:
    with pytest.raises(ConfigError) as info:
        load_config("ssvdo", overrides)
    assert info.value.field == field
    assert allowed_contains in (info.value.allowed or [])
    assert field in str(info.value) and allowed_contains in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        (["train.batch_size=zero"], "train.batch_size", "expected integer"),
        (["train.optimizer.lr=-1.0"], "train.optimizer.lr", "less than or equal"),
        (["strategy.plugins=[{name: ewc}]"], "strategy.plugins.0.penalty_weight", "required"),
        (
            ["strategy.adapter={method: lora}"],
            "strategy.adapter",
            "exactly one of ['rank', 'match']",
        ),
        (["seeds=[]"], "seeds", "should be non-empty"),
    ],
)
def test_other_schema_errors_name_the_field(overrides, field, message) -> None:
    with pytest.raises(ConfigError) as info:
        load_config("ssvdo", overrides)
    assert info.value.field == field
    assert message in str(info.value)


def test_yaml_scientific_notation_hint(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: a\nstrategy: {name: a}\ntrain: {optimizer: {lr: 1e-3}}\n")
    with pytest.raises(ConfigError, match="write 1.0e-3") as info:
        load_config(cfg)
    assert info.value.field == "train.optimizer.lr"


def test_bad_schedule_is_a_config_error_naming_the_schedule() -> None:
    cfg = load_config("ssvdo", ["strategy.adapter.schedule={constant: {inner_ratio: 2.0}}"])
    with pytest.raises(ConfigError) as info:
        check_schedule(cfg["strategy"]["adapter"])
    assert info.value.field == "strategy.adapter.schedule"
    assert "inner_ratio" in str(info.value)


def test_incompatible_plugins_fail_early_with_reason() -> None:
    cfg = load_config("ssvdo", ["strategy.plugins=[{name: si, si_lambda: 0.1}]"])
    with pytest.raises(ConfigError) as info:
        build_plugins(cfg)
    assert info.value.field == "strategy.plugins"
    assert "SynapticIntelligence" in str(info.value)


def test_extends_merges_and_detects_cycles(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "extends: b.yaml\nname: a\nstrategy: {name: a}\ntrain: {epochs: 3}\n"
    )
    (tmp_path / "b.yaml").write_text("name: b\nstrategy: {name: b}\ntrain: {batch_size: 7}\n")
    cfg = load_config(tmp_path / "a.yaml")
    assert (cfg["name"], cfg["train"]["epochs"], cfg["train"]["batch_size"]) == ("a", 3, 7)
    (tmp_path / "b.yaml").write_text("extends: a.yaml\nname: b\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")


def test_unknown_config_name_lists_shipped_ones() -> None:
    with pytest.raises(ConfigError) as info:
        load_config("no-such-config")
    assert "ssvdo" in info.value.allowed


def test_overrides_parse_yaml_values() -> None:
    assert parse_override("train.optimizer.lr=1e-4") == ("train.optimizer.lr", 1e-4)
    assert parse_override("seeds=[0, 1]") == ("seeds", [0, 1])
    assert parse_override("tracking.uri=http://h:5000") == ("tracking.uri", "http://h:5000")
    cfg = load_config("replay", ["strategy.plugins.0.mem_size=17", "model.pretrained=null"])
    assert cfg["strategy"]["plugins"][0]["mem_size"] == 17 and cfg["model"]["pretrained"] is None
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("train.lr")
    with pytest.raises(ConfigError, match="out of range"):
        load_config("replay", ["strategy.plugins.3.mem_size=1"])


@given(
    key=st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=4).map(".".join),
    value=st.one_of(st.integers(), st.text(alphabet="xyz", max_size=5), st.booleans()),
)
def test_override_sets_exactly_that_path(key: str, value) -> None:
    base = {"keep": {"me": 1}}
    out = apply_overrides(base, {key: value})
    node = out
    for part in key.split("."):
        node = node[part]
    assert node == value
    assert out["keep"] == {"me": 1} and base == {"keep": {"me": 1}}  # input untouched


@given(
    st.dictionaries(
        st.sampled_from(list("abcdef")), st.integers() | st.text(max_size=4), min_size=1
    )
)
def test_flatten_and_hash_are_stable(data) -> None:
    nested = {"outer": data, "x": [1, None]}
    flat = flatten(nested)
    assert set(flat) == {f"outer.{k}" for k in data} | {"x"}
    assert json.loads(flat["x"]) == [1, None]
    assert config_hash(nested) == config_hash(json.loads(json.dumps(nested)))


def test_defaults_are_filled_and_still_valid() -> None:
    cfg = load_config("naive")
    validate_config(cfg)
    assert cfg["train"]["optimizer"]["name"] == "adamw" and cfg["tracking"]["offline"] is False


def test_cli_exit_code_for_invalid_config(capsys) -> None:
    assert main(["run", "ssvdo", "--set", "strategy.adapter.method=lorra"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "strategy.adapter.method" in err and "'lora'" in err


def test_cli_refuses_sweep_config_for_run(capsys) -> None:
    assert main(["run", "demo"]) == EXIT_CONFIG
    assert "cl-ssvdo sweep" in capsys.readouterr().err


def test_sweep_expansion_budgets_and_dedup() -> None:
    cfg = load_config("sweep_example")
    children = expand_sweep(cfg)
    labels = [c.label for c in children]
    assert len(labels) == len(set(labels))
    # ssvdo, ssvd, lora: 2 budgets x 2 seeds each; naive (no adapter): once per seed.
    assert len(children) == 3 * 2 * 2 + 2
    ssvdo = [c for c in children if c.config["strategy"]["name"] == "ssvdo"]
    assert {c.config["strategy"]["adapter"]["schedule"]["constant"]["budget"] for c in ssvdo} == {
        10000,
        40000,
    }
    lora = [c for c in children if c.config["strategy"]["name"] == "lora"]
    assert all("rank" not in c.config["strategy"]["adapter"] for c in lora)
    assert all(c.config["train"]["max_steps"] == 100 for c in children)
    assert all(c.config["tracking"]["tags"]["cl_ssvdo.sweep"] == "sweep_example" for c in children)
