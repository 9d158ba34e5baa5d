"""The ``cl-ssvdo`` command line: every subcommand is wired, the demo prints both matrices."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from experiments import cli
from experiments.cli import build_parser, main

SUBCOMMANDS = {
    "data",
    "pretrain",
    "run",
    "sweep",
    "compare",
    "evaluate",
    "export",
    "report",
    "sync",
    "ui",
    "demo",
    "study",
    "models",
    "server",
}


def test_parser_has_every_subcommand() -> None:
    parser = build_parser()
    actions = [a for a in parser._actions if a.dest == "command"]
    assert set(actions[0].choices) == SUBCOMMANDS


def test_console_entry_point_is_declared() -> None:
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert 'cl-ssvdo = "experiments.cli:main"' in pyproject


def test_ui_starts_mlflow_on_the_project_store(monkeypatch, tmp_path: Path, capsys) -> None:
    seen = {}
    monkeypatch.setattr(subprocess, "call", lambda cmd: seen.setdefault("cmd", cmd) and 0)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["ui", "--workdir", str(tmp_path), "--port", "5999"]) == 0
    cmd = seen["cmd"]
    assert cmd[1:4] == ["-m", "mlflow", "ui"]
    assert (
        cmd[cmd.index("--backend-store-uri") + 1]
        == f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}"
    )
    assert "127.0.0.1" in cmd and "5999" in cmd
    assert "http://127.0.0.1:5999" in capsys.readouterr().out


def test_study_gets_its_own_arguments(monkeypatch) -> None:
    from experiments.study import cli as study_cli

    seen = []
    monkeypatch.setattr(study_cli, "run", lambda args: seen.append(args) or 7)
    assert main(["study", "--quick", "--set", "seeds=[0]", "--dry-run"]) == 7
    assert [(a.quick, a.overrides, a.dry_run, a.config) for a in seen] == [
        (True, ["seeds=[0]"], True, None)
    ]
    # an option the study does not have is an error of `cl-ssvdo study`, not passed through
    with pytest.raises(SystemExit):
        main(["study", "--x", "1"])


def test_data_info_and_evaluate(tiny_stream, pretrained_ci, tmp_path: Path, capsys) -> None:
    sets = [
        "--set",
        f"stream.root={tiny_stream.root}",
        "--set",
        f"model.pretrained={pretrained_ci}",
        "--set",
        "stream.max_utterances=4",
        "--set",
        f"workdir={tmp_path}",
    ]
    assert main(["--quiet", "data", "info", "naive", *sets]) == 0
    out = capsys.readouterr().out
    assert all(d in out for d in ("adult", "child", "accent"))
    assert main(["--quiet", "evaluate", "naive", *sets]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].split() == ["domain", "WER", "%", "CER", "%", "utts"]
    assert [line.split()[0] for line in table[2:]] == ["adult", "child", "accent"]


def test_demo_prints_both_matrices_and_comparison(
    tiny_stream, pretrained_ci, store_uri, tmp_path, capsys
) -> None:
    train = {
        "train.max_steps": 2,
        "train.batch_size": 4,
        "train.eval_batch_size": 16,
        "train.device": "cpu",
    }
    sets = [
        "--set",
        f"stream.root={tiny_stream.root}",
        "--set",
        f"model.pretrained={pretrained_ci}",
        "--set",
        "stream.max_utterances=6",
        "--set",
        f"workdir={tmp_path}",
        "--set",
        f"sweep.overrides={json.dumps(train)}",
        "--set",
        "tracking.experiment=demo-test",
    ]
    assert main(["--quiet", "demo", *sets, "--tracking-uri", store_uri]) == 0
    out = capsys.readouterr().out
    assert "WER (%) of ssvdo-s0" in out and "WER (%) of lora-s0" in out
    assert out.count("after accent") == 2
    assert "Comparison" in out and "parent run" in out
    sweep_dir = next((tmp_path / "sweeps").iterdir())
    assert main(["report", str(sweep_dir)]) == 0
    assert "| ssvdo-s0 |" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_missing_config_file_is_a_config_error(command, capsys) -> None:
    assert main([command, "does/not/exist.yaml"]) == cli.EXIT_CONFIG
    assert "no config file" in capsys.readouterr().err
