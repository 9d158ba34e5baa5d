"""The ``cl-ssvdo`` argument parser: every subcommand and its options (no work done here).

>>> args = build_parser().parse_args(["run", "ssvdo", "--seed", "0"])
>>> args.command, args.config, args.seed
('run', 'ssvdo', [0])
"""

from __future__ import annotations

import argparse

from experiments.cli.options import add_executor_args, executor_spec
from experiments.config import add_override_argument

__all__ = [
    "add_executor_args",
    "build_parser",
    "executor_spec",
]  # executor: experiments.cli.options


def _add_config_args(
    p: argparse.ArgumentParser, required: bool = True, default: str = "default"
) -> None:
    if required:
        p.add_argument("config", help="config file, or the name of a shipped config (e.g. ssvdo)")
    else:
        p.add_argument(
            "config",
            nargs="?",
            default=default,
            help=f"config file or shipped config name (default: {default}, "
            f"experiments/configs/{default}.yaml)",
        )
    add_override_argument(p)


def _add_tracking_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///<workdir>/mlflow.db)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cl-ssvdo", description="Continual learning for ASR with SSVD-O, tracked in MLflow."
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--trust-folder",
        action="store_true",
        help="allow loading foreign SpeechBrain model folders, whose hyperparams.yaml runs "
        "code (folders exported by cl_ssvdo are read as data and need no trust)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("data", help="generate / describe / validate the stream of a config")
    p.add_argument("action", choices=["generate", "info", "validate"])
    _add_config_args(p, required=False)

    p = sub.add_parser("pretrain", help="pretrain (or reuse) the base model of a config")
    _add_config_args(p, required=False)
    p.add_argument("--force", action="store_true", help="pretrain again even if the folder exists")

    p = sub.add_parser("run", help="run one strategy over the stream (one run per seed)")
    _add_config_args(p)
    _add_tracking_args(p)
    p.add_argument("--offline", action="store_true", help="write the run folder only; sync later")
    p.add_argument("--fresh", action="store_true", help="start over instead of resuming")
    p.add_argument("--seed", type=int, action="append", default=None, help="only these seeds")

    p = sub.add_parser("sweep", help="a grid of strategies x budgets x seeds as nested runs")
    _add_config_args(p)
    _add_tracking_args(p)
    p.add_argument("--fresh", action="store_true", help="start every child over")
    p.add_argument("--dry-run", action="store_true", help="list the children and exit")
    add_executor_args(p)

    p = sub.add_parser("compare", help="a table and plots across runs from the tracking store")
    _add_tracking_args(p)
    p.add_argument("--experiment", action="append", default=None, help="experiment name(s)")
    p.add_argument("--parent", default=None, help="only the children of this sweep run id")
    p.add_argument("--run", dest="runs", action="append", default=None, help="run id(s)")
    p.add_argument("--workdir", default="outputs", help="workdir of the default store")
    p.add_argument("--out", default=None, help="folder for compare.csv/.md and the plots")
    p.add_argument(
        "--width",
        type=int,
        default=100,
        help="printed table width in characters (default 100; 0: every column; the CSV "
        "always has every column)",
    )

    p = sub.add_parser(
        "evaluate",
        help="WER/CER per domain (and speaker) of a model on the config's stream or manifests",
        description="WER/CER of a model: on the config's stream (per domain), or with "
        "--manifest on your own CSV manifests (ID,duration,wav,wrd[,spk_id][,domain]; the "
        "domain is the domain column, else the file name), per domain and per speaker. The "
        "same without the CLI: python -m cl_ssvdo.asr.evaluate FOLDER CSV [CSV ...] [--json F].",
    )
    _add_config_args(p, required=False)
    p.add_argument(
        "--model",
        default=None,
        help="pretrained folder, or a run folder (with --after) (default: the config's base)",
    )
    p.add_argument(
        "--after", type=int, default=None, help="with a run folder: after this experience"
    )
    p.add_argument(
        "--manifest",
        action="append",
        default=None,
        help="a manifest CSV to evaluate on (repeatable); replaces the config's stream",
    )
    p.add_argument(
        "--split",
        default="test",
        choices=["train", "valid", "test"],
        help="which split of the config's stream (ignored with --manifest; default: test)",
    )
    p.add_argument("--json", default=None, help="with --manifest: write the full report here")

    p = sub.add_parser(
        "export", help="a run's model after an experience as a SpeechBrain pretrained folder"
    )
    p.add_argument("run_dir", help="run folder (<workdir>/runs/<name>-s<seed>-<hash>)")
    p.add_argument("out", help="folder to write (hyperparams.yaml, model.ckpt, tokenizer.ckpt)")
    p.add_argument(
        "--after",
        type=int,
        default=None,
        help="experience (1-based; 0 = the base model; default: the last finished one)",
    )
    p.add_argument(
        "--mlflow", action="store_true", help="also log it to the run's MLflow run as a model"
    )
    p.add_argument("--register", default=None, help="with --mlflow: register under this name")
    _add_tracking_args(p)

    p = sub.add_parser("report", help="print a run folder's matrices and summary")
    p.add_argument("run_dir")
    _add_tracking_args(p)
    p.add_argument("--sync", action="store_true", help="also push it to the tracking store")
    p.add_argument("--markdown", default=None, help="also write the report to this file")

    p = sub.add_parser("sync", help="push a run folder (or a sweep folder) to the tracking store")
    p.add_argument("run_dir", nargs="+")
    _add_tracking_args(p)
    p.add_argument("--experiment", default=None)
    p.add_argument("--force", action="store_true", help="push again even if already synced")

    p = sub.add_parser("ui", help="start the MLflow UI on the project's store")
    _add_tracking_args(p)
    p.add_argument("--workdir", default="outputs")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)

    p = sub.add_parser(
        "server", help="an MLflow server on PostgreSQL with proxied artifacts (docs/scale.md)"
    )
    from experiments.server import build_parser as server_parser

    server_parser(p)

    p = sub.add_parser("demo", help="the README's main command (SSVD-O vs LoRA, small stream)")
    _add_config_args(p, required=False, default="demo")
    _add_tracking_args(p)
    p.add_argument("--fresh", action="store_true", help="run the two strategies again")
    p.add_argument(
        "--model",
        default=None,
        help="a pretrained Whisper (registered name such as whisper-tiny.en, or a folder): "
        "SSVD-O vs LoRA on it (config whisper_demo, adult as the base domain)",
    )
    p.set_defaults(config="demo")

    from experiments.study.cli import DESCRIPTION, add_arguments

    p = sub.add_parser("study", help="the paper-claims study (docs/results.md, docs/protocol.md)",
                       description=DESCRIPTION)  # fmt: skip
    add_arguments(p)
    from experiments.models_cli import add_models_parser

    add_models_parser(sub)
    return parser
