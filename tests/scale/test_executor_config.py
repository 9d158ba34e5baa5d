"""The ``executor`` section and options, without running anything: schema, command line,
factory, and the sweep folder that does not depend on where the children run."""

from __future__ import annotations

import argparse

import pytest

from experiments.cli import add_executor_args, executor_spec
from experiments.config import ConfigError, load_config
from experiments.executors import make_executor
from experiments.sweep import _sweep_folder


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_executor_args(p)
    return p.parse_args(list(argv))


def test_command_line_overrides_the_yaml_section() -> None:
    spec = {"kind": "slurm", "ray": {"num_gpus": 1}}
    assert executor_spec(spec, _args()) == spec
    assert executor_spec(spec, _args("--executor", "local"))["kind"] == "local"
    out = executor_spec(None, _args("--ray-address", "ray://head:10001"))
    assert out == {"kind": "ray", "ray": {"address": "ray://head:10001"}}
    out = executor_spec(spec, _args("--executor", "ray", "--ray-address", "auto"))
    assert out["kind"] == "ray" and out["ray"] == {"num_gpus": 1, "address": "auto"}


def test_factory_builds_each_kind_with_its_settings() -> None:
    assert make_executor(None).name == "local"
    ray = make_executor({"kind": "ray", "ray": {"num_gpus": 0.5, "max_retries": 5}})
    assert ray.name == "ray"
    assert ray.options()["num_gpus"] == 0.5 and ray.options()["max_retries"] == 5
    assert ray.options()["retry_exceptions"] is False
    slurm = make_executor({"kind": "slurm", "slurm": {"array_parallelism": 4}})
    assert slurm.parameters()["slurm_array_parallelism"] == 4
    with pytest.raises(ConfigError, match="executor.kind"):
        make_executor({"kind": "kubernetes"})


def test_schema_checks_the_section_and_names_the_field() -> None:
    cfg = load_config("demo", {"executor": {"kind": "ray", "ray": {"num_cpus": 2}}})
    assert cfg["executor"]["ray"]["num_cpus"] == 2
    with pytest.raises(ConfigError, match="executor"):
        load_config("demo", {"executor": {"kind": "mesos"}})
    with pytest.raises(ConfigError, match="executor.slurm"):
        load_config("demo", {"executor.slurm.array_parallelism": 0})


def test_sweep_folder_does_not_depend_on_the_executor() -> None:
    local = load_config("demo")
    ray = load_config("demo", {"executor": {"kind": "ray"}})
    assert _sweep_folder(local).path == _sweep_folder(ray).path


def test_a_study_config_holds_the_executor_section() -> None:
    from experiments.study import _executor, load_study

    study, _ = load_study("study_quick", ["executor={kind: ray, ray: {num_gpus: 1}}"])
    assert _executor(study, _args()) == {"kind": "ray", "ray": {"num_gpus": 1}}
    assert _executor(study, _args("--executor", "slurm"))["kind"] == "slurm"
    with pytest.raises(ConfigError, match="executor"):
        load_study("study_quick", ["executor={kind: mesos}"])
