"""The run-config JSON schema, the factory and the baselines derive their SSVD-O keys, choices
and defaults from one place, :class:`cl_ssvdo.ssvdo.settings.SSVDOSettings`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from cl_ssvdo.baselines import METHODS, allowed_settings
from cl_ssvdo.schedule import SUBSPACE_CHOICES
from cl_ssvdo.ssvdo.settings import (
    DEFAULTS,
    PARAMETERISATIONS,
    ROTATIONS,
    SETTING_NAMES,
    SSVDOSettings,
    setting_defaults,
)
from experiments.factory import adapter_keys

SCHEMA = Path(__file__).resolve().parents[2] / "experiments" / "schema" / "experiment.schema.json"


@pytest.fixture(scope="module")
def adapter_schema() -> dict:
    return json.loads(SCHEMA.read_text())["$defs"]["adapter"]


def _branch_keys(adapter_schema: dict, method: str) -> set[str]:
    (branch,) = [
        b for b in adapter_schema["allOf"] if b["if"]["properties"]["method"].get("const") == method
    ]
    return set(branch["then"]["properties"]) - {"method"}


@pytest.mark.parametrize("method", METHODS)
def test_schema_keys_per_method_are_the_factory_keys(adapter_schema, method) -> None:
    assert _branch_keys(adapter_schema, method) == set(adapter_keys(method))


def test_schema_choices_are_the_settings_choices(adapter_schema) -> None:
    props = adapter_schema["properties"]
    assert tuple(props["rotation"]["enum"]) == ROTATIONS
    assert tuple(props["parameterisation"]["enum"]) == PARAMETERISATIONS
    assert tuple(props["subspace"]["enum"]) == SUBSPACE_CHOICES


def test_schema_states_no_other_default_than_the_settings(adapter_schema) -> None:
    """A default in the schema would be filled into every config: it must be the settings' own
    (today the schema sets none, so the plugins' defaults, i.e. SSVDOSettings, apply)."""
    props = adapter_schema["properties"]
    for name, default in setting_defaults().items():
        if name in props and "default" in props[name]:
            assert props[name]["default"] == default, name


def test_every_layer_setting_is_accepted_everywhere() -> None:
    layer = set(SETTING_NAMES) - {"inner_ratio", "outer_rank"}
    assert layer <= set(adapter_keys("ssvdo")) and layer <= set(adapter_keys("ssvd"))
    assert set(SETTING_NAMES) <= set(allowed_settings("ssvdo"))
    assert {k: allowed_settings("ssvdo")[k] for k in SETTING_NAMES} == setting_defaults()
    assert set(allowed_settings("ssvd")) == set(SETTING_NAMES) - {"outer_rank"}


def test_plugins_and_config_take_their_defaults_from_the_settings() -> None:
    import inspect

    from cl_ssvdo.ssvdo import SSVDOLinear, inject_ssvdo
    from cl_ssvdo.ssvdo.config import SSVDOConfig
    from strategies.adapters.ssvdo import SSVDOPlugin, SSVDPlugin

    for func in (SSVDOLinear, inject_ssvdo, SSVDOPlugin, SSVDPlugin):
        params = inspect.signature(func).parameters
        for name in ("tau", "rotation", "subspace", "parameterisation"):
            assert params[name].default == getattr(DEFAULTS, name), (func, name)
    config_fields = {f.name: f.default for f in dataclasses.fields(SSVDOConfig)}
    for name in SETTING_NAMES[1:]:
        assert config_fields[name] == getattr(DEFAULTS, name), name
    assert SSVDOConfig(target_modules=["0"], inner_ratio=0.5).settings == SSVDOSettings(0.5)
