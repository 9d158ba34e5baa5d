"""The paper study, one module per stage (``cl-ssvdo study``; docs/experiments.md, docs/protocol.md).

Stages and their modules::

    config      read + validate a study config (JSON schemas experiments/schema/study*.schema.json)
    protocol    v2: the rules of docs/protocol.md the config must keep
    plan        v1: the study as sweeps            plan_v2   v2: planned runs, lr selection
    run         v1: run the sweeps, record the study in MLflow
    collect     read results back: MLflow runs, the page's CSVs, per-utterance files
    table       v1: method labels, aggregation over seeds
    verdicts    the verdict rules: v2 bootstrap + Holm, v1 seed spread; one claim rule
    differences v2: arm-vs-arm differences on per-utterance records
    claims      v1: the four claims        claims_v2  v2: the claims as stated tests
    lr_check    v1: the learning-rate check    losses   v1: "where SSVD-O loses"
    page        v1: docs/results.md (page_tables: its Markdown tables)
    page_v2     v2: docs/results_<study>.md, CSVs, figures from the store (store_v2: the
                store's runs against the plan; frames_v2: the CSVs' frames, claims included;
                levels_v2: per-configuration means and CIs; sections_v2: the Markdown
                sections; losses_v2: "where SSVD-O loses"; plots_v2: the figures)
    cli         the ``cl-ssvdo study`` subcommand
    synthetic   per-utterance tables with known answers (tests, examples)

v2 (docs/protocol.md) is the protocol for new studies; v1 is kept because the committed
``docs/results.md`` is its output and must stay reproducible (``cl-ssvdo study
--only-regenerate``). The names below are importable from ``experiments.study`` directly
(loaded on first use, so ``cl-ssvdo --help`` stays fast).

>>> from experiments.study import load_study, plan_study
>>> study, path = load_study("study_quick", ["seeds=[0]"])
>>> len(plan_study(study, path).sweeps) > 0
True
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load_study": "config",
    "load_study_v2": "config",
    "is_v2": "config",
    "check_protocol": "protocol",
    "PlannedSweep": "plan",
    "StudyPlan": "plan",
    "plan_study": "plan",
    "doc_settings": "plan",
    "PlannedRun": "plan_v2",
    "plan_v2": "plan_v2",
    "select_lr": "plan_v2",
    "run_study": "run",
    "check_bases": "run",
    "regenerate": "page",
    "regenerate_v2": "page_v2",
    "build_parser": "cli",
    "main": "cli",
    "_executor": "cli",
}

__all__ = sorted(n for n in _EXPORTS if not n.startswith("_"))


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
