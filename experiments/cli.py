"""``cl-ssvdo``: one command line for the daily loop (data, base model, runs, sweeps, review).

Subcommands::

    cl-ssvdo data generate|info|validate CONFIG   the stream of a config (synthetic: generated)
    cl-ssvdo pretrain CONFIG                      pretrain (or reuse) the base model
    cl-ssvdo run CONFIG [--set k=v ...]           one strategy over the stream (per seed)
    cl-ssvdo sweep CONFIG                         strategies x budgets x seeds as nested runs
    cl-ssvdo compare [--experiment E] [--parent RUN_ID]   table + plots from the tracking store
    cl-ssvdo evaluate [CONFIG] [--model M] [--manifest CSV ...]   WER/CER per domain/speaker
    cl-ssvdo export RUN_DIR [--after I] DIR       the run's model as a SpeechBrain folder
    cl-ssvdo report RUN_DIR [--sync]              a run folder's matrices and metrics
    cl-ssvdo sync RUN_DIR                         push a run folder to the tracking store
    cl-ssvdo ui                                   MLflow UI on the project's store
    cl-ssvdo server --postgres-dir DIR            MLflow server for a group (PostgreSQL store)
    cl-ssvdo demo [--model whisper-tiny.en]       the README's main command (or on Whisper)
    cl-ssvdo study ...                            the paper-claims study (docs/results.md)
    cl-ssvdo models list|export NAME|PATH DIR    pretrained Whisper -> HF/SpeechBrain folder

Errors: an invalid config exits with status 2 (the message names the field and the allowed
values), an unreachable or broken tracking store with status 3 (the message names the file and
the fix; results already written stay on disk), a foreign SpeechBrain model folder without
``--trust-folder`` or a bad manifest (the message names file, row, field and reason) with
status 2; see docs/reliability.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.config import ConfigError, add_override_argument

__all__ = ["main", "build_parser"]

EXIT_CONFIG = 2
EXIT_TRACKING = 3


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


def add_executor_args(p: argparse.ArgumentParser) -> None:
    """``--executor`` and ``--ray-address`` (override the config's ``executor`` section)."""
    p.add_argument(
        "--executor",
        choices=["local", "ray", "slurm"],
        default=None,
        help="where the children run (default: the config's executor.kind, else local)",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        help="Ray cluster: auto, ray://host:port or host:port (default: a local cluster)",
    )


def executor_spec(spec: dict[str, Any] | None, args: argparse.Namespace) -> dict[str, Any]:
    """The config's ``executor`` section with the command line's choices applied."""
    out = dict(spec or {})
    if args.executor:
        out["kind"] = args.executor
    if args.ray_address:
        out["ray"] = {**(out.get("ray") or {}), "address": args.ray_address}
        out.setdefault("kind", "ray")
    return out


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

    sub.add_parser(
        "study", help="the paper-claims study (its own arguments follow; see --help after it)"
    )
    from experiments.models_cli import add_models_parser

    add_models_parser(sub)
    return parser


# -- command implementations (imports are lazy: `cl-ssvdo --help` stays fast) -------------------
def _load(args: argparse.Namespace) -> dict[str, Any]:
    from experiments.config import load_config

    return load_config(args.config, args.overrides)


def _cmd_data(args: argparse.Namespace) -> int:
    from experiments.prepare import describe_stream, prepare_stream

    cfg = _load(args)
    info = prepare_stream(cfg, progress=not args.quiet)
    print(describe_stream(info))
    if args.action == "validate":
        from experiments.prepare import validate_stream

        problems = validate_stream(cfg, info)
        if problems:
            print(f"{len(problems)} problem(s):")
            for line in problems[:50]:
                print(f"  {line}")
            return 1
        print("stream is valid")
    return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from experiments.prepare import prepare_base_model, prepare_stream

    cfg = _load(args)
    info = prepare_stream(cfg, progress=not args.quiet)
    _, _, folder = prepare_base_model(cfg, info, progress=not args.quiet, force=args.force)
    print(f"base model: {folder}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from experiments.runner import format_result, run_config

    cfg = _load(args)
    if cfg.get("sweep"):
        raise ConfigError("this is a sweep config: run it with `cl-ssvdo sweep`", "sweep")
    results = run_config(
        cfg,
        tracking_uri=args.tracking_uri,
        offline=args.offline,
        fresh=args.fresh,
        seeds=args.seed,
        progress=not args.quiet,
    )
    for result in results:
        print(format_result(result))
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from experiments.config import resolve_config_path
    from experiments.sweep import expand_sweep, run_sweep

    cfg = _load(args)
    source = str(resolve_config_path(args.config))
    if args.dry_run:
        for child in expand_sweep(cfg, args.overrides, source):
            print(child.label)
        return 0
    result = run_sweep(
        cfg,
        tracking_uri=args.tracking_uri,
        fresh=args.fresh,
        progress=not args.quiet,
        overrides=args.overrides,
        source=source,
        executor=executor_spec(cfg.get("executor"), args),
    )
    print(f"\nsweep {cfg['name']}: parent run {result.parent_run_id}, folder {result.folder}")
    print(result.table_text)
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from experiments.compare import compare_runs
    from experiments.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri, args.workdir)
    out = Path(args.out) if args.out else Path(args.workdir) / "compare"
    result = compare_runs(
        uri,
        experiments=args.experiment,
        parent_run_id=args.parent,
        run_ids=args.runs,
        out_dir=out,
        max_width=args.width or None,
    )
    print(result.table_text)
    print(f"\nwritten: {', '.join(str(p) for p in result.files)}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import tempfile

    from experiments.recorder import RunDir

    with tempfile.TemporaryDirectory(prefix="cl-ssvdo-eval-") as tmp:
        model = args.model
        try:
            if model is not None and RunDir(model).is_run_dir():
                from experiments.export import export_run

                model = str(export_run(model, Path(tmp) / "model", after=args.after).folder)
            if args.manifest:
                return _evaluate_manifests(args, model)
        except (FileNotFoundError, ValueError, NotImplementedError) as exc:
            print(f"cl-ssvdo evaluate: {exc}", file=sys.stderr)
            return 1
        from experiments.prepare import evaluate_config

        cfg = _load(args)
        print(evaluate_config(cfg, model_folder=model, split=args.split, progress=not args.quiet))
    return 0


def _evaluate_manifests(args: argparse.Namespace, model: str | None) -> int:
    import json

    from cl_ssvdo.asr.evaluate import evaluate_folder, format_table

    if model is None:
        from experiments.prepare import prepare_base_model, prepare_stream

        cfg = _load(args)
        _, _, folder = prepare_base_model(cfg, prepare_stream(cfg, progress=False), progress=False)
        model = str(folder)
    report = evaluate_folder(model, args.manifest, progress=not args.quiet)
    print(f"model {model} on {len(args.manifest)} manifest(s), {len(report.utterances)} utterances")
    print(format_table(report, "domain"))
    print()
    print(format_table(report, "speaker"))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from experiments.export import export_run

    try:
        result = export_run(
            args.run_dir,
            args.out,
            after=args.after,
            mlflow=args.mlflow or bool(args.register),
            tracking_uri=args.tracking_uri,
            register=args.register,
        )
    except (FileNotFoundError, ValueError, NotImplementedError) as exc:
        print(f"cl-ssvdo export: {exc}", file=sys.stderr)
        return 1
    print(result.describe())
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from experiments.report import report_run_dir

    text = report_run_dir(args.run_dir)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    if args.sync:
        return _sync([args.run_dir], args.tracking_uri, None, False)
    return 0


def _sync(
    run_dirs: Sequence[str], tracking_uri: str | None, experiment: str | None, force: bool
) -> int:
    from experiments.sweep import sync_folder

    for run_dir in run_dirs:
        run_id = sync_folder(run_dir, tracking_uri, experiment=experiment, force=force)
        print(f"synced {run_dir} -> run {run_id}")
    return 0


def _cmd_sync(args: argparse.Namespace) -> int:
    return _sync(args.run_dir, args.tracking_uri, args.experiment, args.force)


def _cmd_server(args: argparse.Namespace) -> int:
    from experiments import server

    return server.main(args=args)


def _cmd_ui(args: argparse.Namespace) -> int:
    from experiments.relocate import relocate_store
    from experiments.tracking import resolve_tracking_uri, ui_command

    uri = resolve_tracking_uri(args.tracking_uri, args.workdir)
    moved = relocate_store(uri)
    if moved:
        print(f"the store was copied or moved: {moved} artifact location(s) now point next to it")
    cmd = ui_command(uri, args.workdir, args.host, args.port)
    print(
        f"MLflow UI on http://{args.host}:{args.port}/#/experiments?workflowType=machine_learning"
        f" (the Model training view; store {uri}); Ctrl-C to stop"
    )
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from experiments.config import resolve_config_path
    from experiments.demo import run_demo

    if args.model:
        if args.config == "demo":
            args.config = "whisper_demo"
        args.overrides = [*(args.overrides or []), f"model.pretrained={args.model}"]
    cfg = _load(args)
    print(
        run_demo(
            cfg,
            tracking_uri=args.tracking_uri,
            progress=not args.quiet,
            overrides=args.overrides,
            source=str(resolve_config_path(args.config)),
            fresh=args.fresh,
        )
    )
    return 0


def _cmd_study(args: argparse.Namespace) -> int:
    """The paper-claims study: delegates its own arguments to ``experiments.study.main(argv)``."""
    from experiments import study

    return int(study.main(args.args) or 0)


def _cmd_models(args: argparse.Namespace) -> int:
    from experiments.models_cli import cmd_models

    return cmd_models(args)


COMMANDS = {
    "data": _cmd_data,
    "pretrain": _cmd_pretrain,
    "run": _cmd_run,
    "sweep": _cmd_sweep,
    "compare": _cmd_compare,
    "evaluate": _cmd_evaluate,
    "export": _cmd_export,
    "report": _cmd_report,
    "sync": _cmd_sync,
    "ui": _cmd_ui,
    "server": _cmd_server,
    "demo": _cmd_demo,
    "study": _cmd_study,
    "models": _cmd_models,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cl-ssvdo``; returns the exit status."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Avalanche imports qpsolvers for GEM, which warns at import that no QP solver is
    # installed; no config here uses GEM (strategies.cl rejects it on speech models).
    warnings.filterwarnings("ignore", message="no QP solver found", category=UserWarning)
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = [i for i, a in enumerate(argv) if not a.startswith("-")]
    if commands and argv[commands[0]] == "study":
        # Everything after `study` belongs to the study's own parser.
        return _cmd_study(argparse.Namespace(args=argv[commands[0] + 1 :]))
    args = build_parser().parse_args(argv)
    from benchmarks.manifest import ManifestError
    from cl_ssvdo.asr.pretrained import TRUST_ENV, UntrustedFolderError
    from experiments.recorder import RunFolderBusyError
    from experiments.tracking import TrackingUnreachableError

    if getattr(args, "trust_folder", False):
        os.environ[TRUST_ENV] = "1"
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"cl-ssvdo: invalid config: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except (UntrustedFolderError, ManifestError) as exc:
        print(f"cl-ssvdo: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except RunFolderBusyError as exc:
        print(f"cl-ssvdo: {exc}", file=sys.stderr)
        return 1
    except TrackingUnreachableError as exc:
        print(f"cl-ssvdo: {exc}", file=sys.stderr)
        return EXIT_TRACKING


if __name__ == "__main__":
    sys.exit(main())
