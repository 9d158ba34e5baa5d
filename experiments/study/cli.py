"""``cl-ssvdo study``: plan, run and write up a study (one subcommand for both versions).

``--config`` names a study config. A v2 one (``version: 2``, docs/protocol.md) runs its
learning-rate selection, test and reference runs (``experiments.study.run_v2``) and writes
its results page from the store (``experiments.study.page_v2``); a v1 one (the default
``study.yaml``, or ``--quick``) runs its sweeps and regenerates ``docs/results.md``::

    cl-ssvdo study --dry-run                       # v1: the sweeps and how many runs
    cl-ssvdo study --quick                         # v1: configs/study_quick.yaml
    cl-ssvdo study --config experiments/configs/study.yaml --set seeds=[0]
    cl-ssvdo study --only-regenerate               # docs/results.md from the store, no training
    cl-ssvdo study --config study_v2 --dry-run     # v2: selection runs, then test runs
    cl-ssvdo study --config study_v2               # v2: run (or resume) it, then its page
    cl-ssvdo study --config study_v2 --from-csv    # v2: its page again from its CSVs (no store)

Exit status: 2 invalid config (the message names the file and field), 3 tracking store
unreachable, 1 the page would replace another study's results (or, ``--from-csv``, there are
none to render again).

>>> args = build_parser().parse_args(["--quick", "--dry-run", "--set", "seeds=[0]"])
>>> args.quick, args.dry_run, args.overrides
(True, True, ['seeds=[0]'])
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.config import CONFIGS_DIR, ConfigError, add_override_argument
from experiments.study.config import DEFAULT_CONFIG, QUICK_CONFIG

__all__ = [
    "EXIT_CONFIG",
    "EXIT_DOC",
    "EXIT_TRACKING",
    "add_arguments",
    "build_parser",
    "main",
    "run",
]

EXIT_CONFIG, EXIT_TRACKING, EXIT_DOC = 2, 3, 1
DESCRIPTION = (
    "The paper-claims study: its runs in MLflow, then its results page from the store "
    "(v2 configs: docs/protocol.md; v1: docs/results.md)."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``cl-ssvdo study`` (on the subcommand's parser or a standalone one)."""
    from experiments.cli.options import add_executor_args

    p.add_argument(
        "--config",
        default=None,
        help=f"study config, path or shipped name (default: {DEFAULT_CONFIG}; a v2 config "
        "(version: 2) runs the protocol of docs/protocol.md)",
    )
    p.add_argument("--quick", action="store_true", help=f"the reduced study ({QUICK_CONFIG})")
    p.add_argument(
        "--only-regenerate",
        action="store_true",
        help="rebuild the results page from the store (or its CSVs) without training",
    )
    p.add_argument(
        "--from-csv",
        action="store_true",
        help="v2 configs: render the results page again from its CSVs alone, without the store "
        "or training (the config's withdrawals applied)",
    )
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI")
    add_override_argument(
        p, help="override a field of the study config (dotted key, YAML value), repeatable"
    )
    p.add_argument("--dry-run", action="store_true", help="list the sweeps and runs, then exit")
    p.add_argument("--fresh", action="store_true", help="start every run over")
    # SUPPRESS: `cl-ssvdo --quiet study` keeps the global flag's value
    p.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="no progress output")  # fmt: skip
    add_executor_args(p)


def build_parser() -> argparse.ArgumentParser:
    """A standalone parser with the options of ``cl-ssvdo study``."""
    p = argparse.ArgumentParser(prog="cl-ssvdo study", description=DESCRIPTION)
    add_arguments(p)
    return p


def _display_path(path: Path) -> str:
    resolved = path.resolve()
    for root in (CONFIGS_DIR.parent.parent, Path.cwd()):
        try:
            return resolved.relative_to(root.resolve()).as_posix()
        except ValueError:
            continue
    return str(path)


def _command(args: argparse.Namespace, path: Path) -> str:
    parts = ["cl-ssvdo study"]
    parts.append("--quick" if args.quick else f"--config {_display_path(path)}")
    parts += [f"--set {o}" for o in args.overrides]
    return " ".join(parts)


def _executor(study: Mapping[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from experiments.cli.options import executor_spec

    return executor_spec(study.get("executor"), args)


def run(args: argparse.Namespace) -> int:
    """Run the parsed ``cl-ssvdo study`` command; returns the exit status."""
    from experiments.study.config import is_v2

    if args.quick and args.config:
        print("cl-ssvdo study: give --config or --quick, not both", file=sys.stderr)
        return EXIT_CONFIG
    if args.config and is_v2(args.config):
        return _run_v2(args)
    if args.from_csv:
        print("cl-ssvdo study: --from-csv renders a v2 study's page (a config with version: 2)",
              file=sys.stderr)  # fmt: skip
        return EXIT_CONFIG
    return _run_v1(args)


def _exit_status(work: Callable[[], int | list[Path]]) -> int:
    """Runs ``work``; its errors as the exit statuses of the module docstring; a list of files
    written is printed (status 0)."""
    from experiments.tracking import TrackingUnreachableError

    try:
        files = work()
    except ConfigError as exc:
        print(f"cl-ssvdo study: invalid config: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except TrackingUnreachableError as exc:
        print(f"cl-ssvdo study: {exc}", file=sys.stderr)
        return EXIT_TRACKING
    except (FileExistsError, FileNotFoundError) as exc:
        print(f"cl-ssvdo study: {exc}", file=sys.stderr)
        return EXIT_DOC
    if isinstance(files, int):
        return files
    print("written: " + ", ".join(str(f) for f in files))
    return 0


def _run_v1(args: argparse.Namespace) -> int:
    return _exit_status(lambda: _work_v1(args))


def _work_v1(args: argparse.Namespace) -> int | list[Path]:
    from experiments.study.config import load_study
    from experiments.study.page import regenerate
    from experiments.study.plan import doc_settings, plan_study
    from experiments.study.run import run_study

    study, path = load_study(QUICK_CONFIG if args.quick else args.config or DEFAULT_CONFIG,
                             args.overrides)  # fmt: skip
    plan = plan_study(study, path)
    command = _command(args, path)
    settings = doc_settings(plan, command)
    if args.dry_run:
        for sweep in plan.sweeps:
            print(f"{sweep.name}: {len(sweep.children)} runs")
            for child in sweep.children:
                print(f"  {child.label}")
        total = ", ".join(f"{m}: {n}" for m, n in settings.planned_runs.items())
        print(f"runs per model: {total}; expected time: {study['estimate'] or 'not stated'}")
        return 0
    if not args.only_regenerate:
        run_study(
            plan,
            command=command,
            tracking_uri=args.tracking_uri,
            fresh=args.fresh,
            progress=not getattr(args, "quiet", False),
            executor=_executor(study, args),
        )
    quick = None if args.quick or path.name == QUICK_CONFIG else "cl-ssvdo study --quick"
    files = regenerate(plan, settings, tracking_uri=args.tracking_uri, quick_command=quick)
    return files


def _tracking_uri_v2(study: Mapping[str, Any], path: Path, given: str | None) -> str | None:
    """The store of a v2 study (``--tracking-uri``, else its runs' config), resolved; None
    when it cannot be worked out (a dry run then lists every rate as pending)."""
    from experiments.study.run_v2 import study_store

    try:
        return study_store(study, path, given)[1]
    except Exception:  # noqa: BLE001 - no store: every rate is pending
        return None


def _print_plan_v2(study: Mapping[str, Any], uri: str | None) -> None:
    from experiments.study.collect import read_selection
    from experiments.study.plan_v2 import plan_v2, select_lr, withdrawal

    selected: dict[str, float] = {}
    if uri is not None and (not uri.startswith("sqlite:///") or Path(uri[10:]).is_file()):
        try:
            selected = select_lr(read_selection(uri, study), study["lr_selection"]["tie_points"])
        except Exception as exc:  # noqa: BLE001 - a dry run still lists the plan
            print(f"(selected rates not read from {uri}: {exc})", file=sys.stderr)
    plan = plan_v2(study, selected)
    for arm, a in study["arms"].items():
        if a["kind"] == "not_run":
            print(f"not run: {arm}: {a['reason']}")
    for phase in ("lr-selection", "test", "reference"):
        runs = [r for r in plan if r.phase == phase]
        print(f"{phase}: {len(runs)} runs")
        for r in runs:
            gone = withdrawal(study, r.arm, r.horizon)
            print(f"  {r.label}" + (f": {gone}, not run" if gone else ""))
    if study["reduced"]:
        print(f"reduced protocol: {study['reduced_reason']}")


def _run_v2(args: argparse.Namespace) -> int:
    """A v2 config: ``--dry-run`` lists the plan (rates selected so far read from the store);
    otherwise the selection, test and reference runs (resumed), then the results page from
    the store; ``--only-regenerate`` writes the page without training, ``--from-csv`` renders
    it again from its CSVs alone (:func:`experiments.study.page_v2.rerender_v2`)."""
    return _exit_status(lambda: _work_v2(args))


def _work_v2(args: argparse.Namespace) -> int | list[Path]:
    from experiments.study.config import load_study_v2
    from experiments.study.page_v2 import regenerate_v2, rerender_v2
    from experiments.study.run_v2 import run_study_v2

    study, path = load_study_v2(args.config, args.overrides)
    if args.from_csv:
        return rerender_v2(study, study["output_dir"], command=_command(args, path) + " --from-csv")
    uri = _tracking_uri_v2(study, path, args.tracking_uri)
    if args.dry_run:
        _print_plan_v2(study, uri)
        return 0
    command = _command(args, path)
    if not args.only_regenerate:
        result = run_study_v2(
            study,
            path,
            command=command,
            tracking_uri=uri,
            fresh=args.fresh,
            progress=not getattr(args, "quiet", False),
            executor=_executor(study, args),
        )
        uri = result.tracking_uri
    if uri is None:
        raise ConfigError("no tracking store could be worked out from the study's base config "
                          "(give --tracking-uri)", "tracking.uri")  # fmt: skip
    return regenerate_v2(study, uri, study["output_dir"], command=command, source=path)


def main(argv: Sequence[str] | None = None) -> int:
    """``cl-ssvdo study ...`` from its own arguments (``argv`` after ``study``)."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    return run(args)
