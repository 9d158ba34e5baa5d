"""The study wing's seams: JSON schemas validated by the run configs' validator, one claim rule
for both study versions, and ``cl-ssvdo study`` as an ordinary argparse subcommand."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from experiments.cli import build_parser
from experiments.cli import main as cli_main
from experiments.config import (
    CONFIGS_DIR,
    ConfigError,
    load_schema,
    validate_config,
)
from experiments.study.config import is_v2, load_study, load_study_v2
from experiments.study.verdicts import (
    Bootstrap,
    Comparison,
    Test,
    claim_verdict,
    judge,
    verdict,
)

STUDY_CONFIGS = sorted(CONFIGS_DIR.glob("study*.yaml"))


def test_every_shipped_study_config_validates_against_its_json_schema() -> None:
    for name in ("study", "study_v2"):
        jsonschema.Draft202012Validator.check_schema(load_schema(name))
    assert len(STUDY_CONFIGS) >= 5
    for path in STUDY_CONFIGS:
        loaded = load_study_v2(path)[0] if is_v2(path) else load_study(path)[0]
        validate_config(loaded, str(path), schema="study_v2" if is_v2(path) else "study")


def test_study_schema_reuses_the_run_schema_executor_section() -> None:
    executor = load_schema("study")["properties"]["executor"]
    assert executor == load_schema()["properties"]["executor"]
    raw = (CONFIGS_DIR.parent / "schema" / "study.schema.json").read_text()
    assert "experiment.schema.json#/properties/executor" in raw  # a reference, not a copy


@pytest.mark.parametrize(
    ("schema", "data", "field"),
    [
        ("study", {"name": "x", "models": {}, "sedes": [0]}, "sedes"),
        (
            "study",
            {"name": "x", "models": {"s": {"model": {}, "budgets": [0]}}},
            "models.s.budgets.0",
        ),
        (
            "study_v2",
            {**yaml.safe_load((CONFIGS_DIR / "study_v2.yaml").read_text()), "version": 3},
            "version",
        ),
    ],
)
def test_study_schema_errors_name_file_and_field(schema: str, data: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_config(data, "my_study.yaml", schema=schema)
    assert info.value.field == field and "my_study.yaml" in str(info.value)


def test_v1_and_v2_loaders_report_a_bad_file_with_its_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad_study.yaml"
    bad.write_text(yaml.safe_dump({"version": 2, "name": "b"}))
    with pytest.raises(ConfigError) as info:
        load_study_v2(bad)
    assert str(bad) in str(info.value) and info.value.field in ("stream", "lr_selection",
                                                                 "seeds", "horizons", "arms")  # fmt: skip


_OUTCOMES = st.lists(st.sampled_from(["for", "against", "tie"]), max_size=6)


@given(_OUTCOMES)
def test_v1_and_v2_share_one_claim_rule(outcomes: list[str]) -> None:
    comps = [Comparison("x", "a", "b", "m", 1, 0, 3, 2, 0, 3, 1.0, 0.5, o) for o in outcomes]
    expected = (
        "refuted" if "against" in outcomes
        else "confirmed" if outcomes and set(outcomes) == {"for"} else "inconclusive"
    )  # fmt: skip
    assert verdict(comps) == claim_verdict(outcomes) == expected
    # v2: p ~ 0 with the claimed sign = for, the other sign = against; p = 1: unclear (a tie)
    tests = [
        Test(str(i), Bootstrap(-1.0 if o == "for" else 1.0, 0, 0, 0.0 if o != "tie" else 1.0, 9),
             "negative")
        for i, o in enumerate(outcomes)
    ]  # fmt: skip
    assert judge(tests).verdict == expected


def test_study_is_an_argparse_subcommand_with_its_options() -> None:
    args = build_parser().parse_args(["--quiet", "study", "--config", "study_v2", "--dry-run"])
    assert (args.command, args.config, args.dry_run, args.quiet) == (
        "study",
        "study_v2",
        True,
        True,
    )
    args = build_parser().parse_args(["study", "--quick", "--quiet", "--executor", "local"])
    assert (args.quick, args.quiet, args.executor) == (True, True, "local")
    assert build_parser().parse_args(["study"]).quiet is False  # the global default survives


def test_study_help_and_conflicting_options(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        cli_main(["study", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--only-regenerate" in out and "--config" in out and "--ray-address" in out
    assert cli_main(["study", "--quick", "--config", "study"]) == 2
    assert "not both" in capsys.readouterr().err


def test_v2_dry_run_through_the_subcommand(capsys, tmp_path: Path, closed_port_uri) -> None:
    missing = f"sqlite:///{(tmp_path / 'none.db').as_posix()}"
    assert cli_main(["study", "--config", "study_whisper_cpu", "--dry-run",
                     "--tracking-uri", missing]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "lr-selection:" in out and "test:" in out and "lr=pending" in out
    assert not (tmp_path / "none.db").exists()  # listing never creates a store
    # running it against a store that does not answer: status 3 before any work
    assert cli_main(["study", "--config", "study_whisper_cpu", "--set",
                     f"overrides.workdir={tmp_path / 'work'}", "--tracking-uri",
                     closed_port_uri]) == 3  # fmt: skip
    assert "unreachable" in capsys.readouterr().err
    assert not (tmp_path / "work" / "studies").exists()
