"""What a run prints: step progress within an experience and evaluation progress (plain lines,
no carriage returns, when the output is not a terminal), a compare table that fits 100 columns,
no qpsolvers warning at start, and `demo --help` naming its real config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch
from avalanche.training import Naive
from avalanche.training.plugins import EvaluationPlugin
from torch import nn

from experiments.cli import build_parser
from experiments.compare import frame_to_text, write_comparison
from experiments.progress import StepProgress
from tests.strategies.cl.test_classifier_compat import _benchmark, _classifier

ROOT = Path(__file__).resolve().parents[2]


def test_step_and_eval_progress_as_plain_lines(capsys) -> None:
    model = _classifier()
    strategy = Naive(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
        criterion=nn.CrossEntropyLoss(),
        train_mb_size=8,
        train_epochs=2,
        eval_mb_size=8,
        device="cpu",
        plugins=[StepProgress("run-s0", n_experiences=3, interval=0.0)],
        evaluator=EvaluationPlugin(loggers=[]),
    )
    bench = _benchmark()
    strategy.train(bench.train_stream[0])
    strategy.eval(bench.test_stream[:1])
    err = capsys.readouterr().err  # pytest's capture is not a terminal
    assert "\r" not in err
    train = [line for line in err.splitlines() if line.startswith("[run-s0 train exp0 (exp 1/3)]")]
    assert len(train) == 6 and train[-1].startswith("[run-s0 train exp0 (exp 1/3)] 6/6 step")
    assert "loss " in train[-1] and "step/s" in train[-1]
    assert any(line.startswith("[run-s0 eval exp0] 3/3 batch") for line in err.splitlines())


def test_compare_table_fits_100_columns_and_csv_keeps_all(tmp_path: Path) -> None:
    rows = [
        {
            "run": f"ssvdo-b40000-inner_share=0.25-lr=0.005-very-long-name-s{s}",
            "strategy": "ssvdo",
            "adapter": "ssvdo",
            "budget": 40000,
            "seed": s,
            "trainable_params": 39876.0,
            "awer": 31.25 + s,
            "bwt": -2.5,
            "forgetting_mean": 2.5,
            "learning_mean": 20.0,
            **{f"wer/domain_with_a_long_name_{d}": 30.0 + d for d in range(4)},
        }
        for s in range(2)
    ]
    frame = pd.DataFrame(rows)
    text = frame_to_text(frame, max_width=100)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 100
    assert lines[0].split()[:3] == ["run", "awer", "bwt"]
    assert "more columns in the CSV" in text and "wer/domain_with_a_long_name_3" in text
    files = write_comparison(frame, tmp_path)
    csv = next(f for f in files if f.suffix == ".csv")
    assert list(pd.read_csv(csv).columns) == list(frame.columns)
    assert max(len(line) for line in frame_to_text(frame).splitlines()) > 100  # full on demand


def test_demo_help_names_its_config_and_no_qpsolvers_warning(tmp_path: Path) -> None:
    demo = build_parser()._subparsers._group_actions[0].choices["demo"].format_help()
    assert "default: demo" in demo and "configs/demo.yaml" in demo
    code = (
        "from experiments.cli import main\n"
        f"assert main(['compare', '--tracking-uri', 'sqlite:///{tmp_path}/m.db', "
        f"'--out', '{tmp_path}']) == 0\n"
        "import avalanche.training.plugins\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "default", "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "(no runs)" in done.stdout
    assert "QP solver" not in done.stderr
