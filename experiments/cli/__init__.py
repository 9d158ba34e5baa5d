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
    cl-ssvdo study [--config C] [--quick] [--dry-run]   the paper study (docs/results.md)
    cl-ssvdo models list|export NAME|PATH DIR    pretrained Whisper -> HF/SpeechBrain folder

Errors: an invalid config exits with status 2 (the message names the field and the allowed
values), an unreachable or broken tracking store with status 3 (the message names the file and
the fix; results already written stay on disk), a foreign SpeechBrain model folder without
``--trust-folder`` or a bad manifest (the message names file, row, field and reason) with
status 2; see docs/reliability.md.

Modules: ``parser`` (the argument parser), ``commands`` (one function per subcommand);
``cl-ssvdo study`` is ``experiments.study.cli``.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence

from experiments.cli.options import add_executor_args, executor_spec
from experiments.cli.parser import build_parser
from experiments.config import ConfigError

__all__ = [
    "EXIT_CONFIG",
    "EXIT_TRACKING",
    "add_executor_args",
    "build_parser",
    "executor_spec",
    "main",
]

EXIT_CONFIG = 2
EXIT_TRACKING = 3


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cl-ssvdo``; returns the exit status."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # Avalanche imports qpsolvers for GEM, which warns at import that no QP solver is
    # installed; no config here uses GEM (strategies.cl rejects it on speech models).
    warnings.filterwarnings("ignore", message="no QP solver found", category=UserWarning)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    from cl_ssvdo.asr.pretrained import TRUST_ENV, UntrustedFolderError
    from cl_ssvdo.data import ManifestError
    from experiments.cli import commands
    from experiments.run_dir import RunFolderBusyError
    from experiments.tracking import TrackingUnreachableError

    if getattr(args, "trust_folder", False):
        os.environ[TRUST_ENV] = "1"
    try:
        return commands.COMMANDS[args.command](args)
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
