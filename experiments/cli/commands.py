"""The implementations of the ``cl-ssvdo`` subcommands (parsed arguments in, exit status out).

Imports are lazy: ``cl-ssvdo --help`` stays fast.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from experiments.cli.options import executor_spec
from experiments.config import ConfigError

__all__ = ["COMMANDS"]


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

    from experiments.run_dir import RunDir

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
    """The paper-claims study (``experiments.study.cli.run``)."""
    from experiments.study import cli as study_cli

    return int(study_cli.run(args) or 0)


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
