"""One strategy over the stream: the loop behind ``cl-ssvdo run``.

Per seed: check the tracking store (a named error before any work), prepare the stream and
the base model (reused when present), build the CTC template and plugins from the config,
evaluate the base model on every domain (row 0 of the WER matrix), then per experience train,
evaluate every domain (row i), write the row and a checkpoint to the run folder and log the
row to MLflow, with the optimiser steps the experience trained (``train/steps``; a
:class:`HorizonWarning` when ``train.epochs`` ran out before ``train.max_steps``). At the end:
continual metrics (``cl_ssvdo.metrics``), matrices, plots, budget table and a short summary.

Modes (``strategy.mode``): ``sequential`` (the continual run), ``joint`` (row i: the base
trained on the union of domains <= i, the IM reference) and ``single_task`` (row i: the base
trained on domain i alone, the FWT reference).

The run folder ``<workdir>/runs/<name>-s<seed>-<config hash>`` is the source of truth: a run
killed at any point restarts from its last finished experience (same command, or
``--fresh`` to start over); a finished run is not recomputed.
"""

from __future__ import annotations

import contextlib
import copy
import random
import shutil
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cl_ssvdo.progress import progress_bar
from experiments.checkpoint import dataset_refs, load_checkpoint, save_checkpoint
from experiments.config import ConfigError, config_hash
from experiments.factory import build_strategy
from experiments.mlflow_logger import adapter_params
from experiments.plots import layer_diagnostics, save
from experiments.prepare import eval_split, load_base_model
from experiments.progress import StepProgress
from experiments.results import (
    RunResult,
    format_result,
    partial_summary,
    step_metrics,
    write_final_artifacts,
    write_matrices,
)
from experiments.row_outputs import (
    copy_utterance_errors,
    evaluate_row,
    joint_experience,
    plugin_budget_rows,
    write_utterance_errors,
)
from experiments.run_dir import RunDir
from experiments.run_setup import RunSetup
from experiments.tracking import check_tracking, resolve_tracking_uri
from experiments.whisper_base import is_whisper, load_whisper_base

__all__ = [
    "RunResult",
    "format_result",
    "run_config",
    "run_dir_for",
    "run_experiment",
    "write_utterance_errors",
]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def run_config_for_seed(config: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """The config of one seed's run (``seeds: [seed]``, no ``sweep`` section)."""
    cfg = copy.deepcopy(dict(config))
    cfg["seeds"] = [int(seed)]
    cfg.pop("sweep", None)
    return cfg


def run_dir_for(config: Mapping[str, Any], seed: int, name: str | None = None) -> Path:
    """``<workdir>/runs/<name>-s<seed>-<hash of the seed's config>``."""
    cfg = run_config_for_seed(config, seed)
    label = name or f"{cfg['name']}-s{seed}"
    return Path(cfg["workdir"]) / "runs" / f"{label}-{config_hash(cfg)}"


class HorizonWarning(UserWarning):
    """An experience trained fewer optimiser steps than ``train.max_steps``: ``train.epochs``
    ran out first, so the run's horizon is not the steps its config names."""


class _Run(RunSetup):
    """One seed's run: the setup (``RunSetup``), then one method per phase of the loop."""

    def _strategy(self, model):
        """Template, config plugins and WER matrix over ``model``. The first call uses the
        plugins built (and so checked) in ``prepare``; each reference row of the joint and
        single-task modes stands alone and gets fresh ones."""
        from avalanche.evaluation.metrics import loss_metrics
        from avalanche.training.plugins import EvaluationPlugin

        from strategies.metrics.wer import WERMatrix

        wer_matrix = WERMatrix(stream=eval_split(self.cfg))
        evaluator = EvaluationPlugin(
            loss_metrics(epoch=True, experience=True), loggers=[self.logger]
        )
        strategy, plugins = build_strategy(
            self.cfg,
            model,
            self.tokenizer,
            evaluator=evaluator,
            extra_plugins=[wer_matrix]
            + ([StepProgress(self.name, len(self.domains))] if self.progress else []),
            device=self.device,
            plugins=self.plugins,
        )
        self.plugins = None
        return strategy, plugins, wer_matrix

    def _validate_plugins(self, model, plugins, n: int) -> None:
        """Schedules against the real layers and the stream length, before any training."""
        for plugin in plugins:
            check = getattr(plugin, "validate_stream", None)
            if check is None:
                continue
            try:
                check(model, 1 if self.mode == "joint" else n)
            except ValueError as exc:
                raise ConfigError(str(exc), "strategy.adapter") from exc

    # -- the loop ------------------------------------------------------------------------------
    def _metrics_bytes(self) -> int:
        metrics = self.folder.metrics_file
        return metrics.stat().st_size if metrics.is_file() else 0

    def _commit_row(self, i: int, wer: list[float], cer: list[float], joint, single) -> None:
        """Log row ``i``, then mark it done in ``state.json`` (with the metric history's size,
        so a resume cuts what a killed attempt logged after it)."""
        state = self.folder.state()
        wer_rows = state.get("wer", [])[:i] + [wer]
        cer_rows = state.get("cer", [])[:i] + [cer]
        trainable = {
            **state.get("trainable", {}),
            **{str(k): v for k, v in self.logger.trainable.items()},
        }
        self.logger.log_eval_row(
            i, {d: {"wer": w, "cer": c} for d, w, c in zip(self.domains, wer, cer, strict=True)}
        )
        if i >= 1:
            summary = partial_summary(wer_rows, joint, single)
            self.recorder.log_metrics(step_metrics(summary, wer, self.domains, i), step=i)
        self.folder.update_state(
            completed=i,
            wer=wer_rows,
            cer=cer_rows,
            trainable=trainable,
            global_epoch=self.logger.global_epoch,
            metrics_bytes=self._metrics_bytes(),
        )
        write_matrices(self.folder, self.domains, wer_rows, cer_rows, png=False)

    def _checkpoint(self, i: int, strategy, plugins) -> None:
        """Checkpoint after committed row ``i`` (sequential runs): model, plugins, RNG, counters."""
        if self.mode != "sequential" or not self.cfg["train"]["checkpoint"]:
            return
        clock = {
            k: v
            for k, v in vars(strategy.clock).items()
            if isinstance(v, int) and not isinstance(v, bool)
        }
        save_checkpoint(
            self.folder.checkpoints,
            i,
            strategy.model,
            plugins,
            extra={
                "global_epoch": self.logger.global_epoch,
                "metrics_bytes": self._metrics_bytes(),
                "clock": clock,
            },
        )
        if i > 0 and self.cfg["tracking"].get("log_models"):
            self._log_model(i)

    def _log_model(self, i: int) -> None:
        """``tracking.log_models``: the merged model after experience ``i`` as an MLflow model
        (the folder under RUN_DIR/exports, the pyfunc in the run); offline runs keep the folder."""
        from experiments.export import export_run

        online = bool(self.recorder.online and self.recorder.run_id)
        result = export_run(self.folder.path, self.folder.path / "exports" / f"after_exp{i}",
                            after=i, mlflow=online, tracking_uri=self.uri)  # fmt: skip
        if result.model_uri:
            self.recorder.set_tags({f"model_after_exp{i}": result.model_uri})

    def _dataset_resolver(self):
        """Rebuilds a checkpointed dataset (``[[manifest, row], ...]``) from the train stream."""
        where: dict[tuple[str, int], tuple[Any, int]] = {}
        for exp in self.bench.train_stream:
            for i, (manifest, row) in enumerate(dataset_refs(exp.dataset, "train")):
                where[(manifest, int(row))] = (exp.dataset, i)

        def resolve(refs: list[list[Any]]):
            parts: list[tuple[Any, list[int]]] = []
            for manifest, row in refs:
                if (manifest, int(row)) not in where:
                    raise ValueError(
                        f"checkpointed utterance {manifest} row {row} is not in this run's stream"
                    )
                dataset, i = where[(manifest, int(row))]
                if parts and parts[-1][0] is dataset:
                    parts[-1][1].append(i)
                else:
                    parts.append((dataset, [i]))
            if not parts:
                return self.bench.train_stream[0].dataset.subset([])
            out = parts[0][0].subset(parts[0][1])
            for dataset, idx in parts[1:]:
                out = out.concat(dataset.subset(idx))
            return out

        return resolve

    def run(self) -> RunResult:
        joint, single = self.references()
        state = self.folder.state()
        completed = int(state.get("completed", -1))
        self.logger.global_epoch = int(state.get("global_epoch", 0))
        n = len(self.domains)
        budget_rows: list[dict[str, Any]] = list(state.get("budget_rows", []))
        strategy, plugins, wer_matrix = self._strategy(self.model)
        self._validate_plugins(strategy.model, plugins, n)
        self.recorder.log_params(adapter_params(plugins, strategy.model))
        seed_everything(self.seed)
        if self.resume is not None:  # restores the RNG states exactly: no reseed after it
            extra = load_checkpoint(
                self.resume[1], strategy.model, plugins, self.device, self._dataset_resolver()
            )
            completed = int(extra["experience"])
            self.logger.global_epoch = int(extra.get("global_epoch", 0))
            for key, value in (extra.get("clock") or {}).items():
                setattr(strategy.clock, key, value)
        if completed < 0:
            wer, cer = evaluate_row(strategy, self.bench, wer_matrix, 0, self.folder)
            self._commit_row(0, wer, cer, joint, single)
            self._checkpoint(0, strategy, plugins)
            completed = 0
        bar = progress_bar(
            range(completed + 1, n + 1),
            desc=self.name,
            disable=not self.progress,
            initial=completed,
            total=n,
            unit="exp",
        )
        for i in bar:
            bar.set_postfix_str(f"training on {self.domains[i - 1]}")
            self.logger.experience_step = i
            if getattr(self.bench.train_stream[i - 1], "evaluate_only", False):
                # the base's own domain: nothing is trained, the model is the one of row i - 1
                rows = self.folder.state()
                copy_utterance_errors(self.folder.artifacts / "utterances", i - 1, i)
                self._commit_row(i, rows["wer"][i - 1], rows["cer"][i - 1], joint, single)
                self._checkpoint(i, strategy, plugins)
                continue
            if self.mode == "sequential":
                strategy.train(self.bench.train_stream[i - 1])
            else:
                seed_everything(self.seed + i)  # each reference row stands alone (resumable)
                if is_whisper(self.cfg):
                    model, _ = load_whisper_base(self.cfg, self.base, self.device)
                else:
                    model, _ = load_base_model(self.base, self.device)
                strategy, plugins, wer_matrix = self._strategy(model)
                exp = (
                    joint_experience(self.bench, i)
                    if self.mode == "joint"
                    else self.bench.train_stream[i - 1]
                )
                strategy.train(exp)
            self._log_steps(i, strategy)
            wer, cer = evaluate_row(strategy, self.bench, wer_matrix, i, self.folder)
            if self.mode == "sequential":
                budget_rows = plugin_budget_rows(plugins)
            else:
                budget_rows = [r for r in budget_rows if r["experience"] != i] + plugin_budget_rows(
                    plugins, i
                )
            self.folder.update_state(budget_rows=budget_rows)
            self._commit_row(i, wer, cer, joint, single)
            self._checkpoint(i, strategy, plugins)
        bar.close()
        return self.finish(joint, single, budget_rows)

    def _log_steps(self, i: int, strategy) -> None:
        """Logs the optimiser steps experience ``i`` trained and warns when they fall short of
        ``train.max_steps``."""
        steps, cap = int(strategy.exp_steps), strategy.max_steps_per_exp
        self.recorder.log_metrics({"train/steps": steps}, step=i)
        if cap is not None and steps < cap:
            epochs = self.cfg["train"]["epochs"]
            warnings.warn(
                f"{self.name}: experience {i} ({self.domains[i - 1]}) trained {steps} optimiser "
                f"steps, fewer than train.max_steps = {cap}: train.epochs = {epochs} ran out "
                f"first (raise train.epochs to train {cap} steps)",
                HorizonWarning,
                stacklevel=2,
            )

    def finish(self, joint, single, budget_rows) -> RunResult:
        state = self.folder.state()
        summary = partial_summary(state["wer"], joint, single)
        trainable = {int(k): int(v) for k, v in state.get("trainable", {}).items()}
        if not budget_rows:
            budget_rows = [
                {"experience": k, "method": "whole model", "layer": "*", "trainable": v}
                for k, v in sorted(trainable.items())
            ]
        summary["trainable_params"] = trainable
        summary["trainable_params_max"] = max(trainable.values(), default=0)
        write_matrices(self.folder, self.domains, state["wer"], state["cer"], png=True)
        write_final_artifacts(self.folder, self.cfg, summary, budget_rows)
        if any("weight_change" in row for row in budget_rows):
            save(layer_diagnostics(budget_rows), self.folder.artifacts / "diagnostics.png")
        self.recorder.log_metrics(
            {"trainable_params_max": summary["trainable_params_max"]}, step=len(self.domains)
        )
        self.recorder.log_artifacts_dir()
        self.folder.update_state(status="FINISHED", ended=time.time())
        self.recorder.finish("FINISHED")
        return RunResult.from_run_dir(self.folder.path)


def run_experiment(
    config: Mapping[str, Any],
    seed: int,
    *,
    tracking_uri: str | None = None,
    offline: bool | None = None,
    fresh: bool = False,
    parent_run_id: str | None = None,
    progress: bool = True,
    run_dir: str | Path | None = None,
    run_name: str | None = None,
) -> RunResult:
    """Run (or resume, or return the finished) ``config`` with ``seed``; see the module docstring.

    Raises ``TrackingUnreachableError`` before any work when the store does not answer (unless
    offline); ``ConfigError`` for config problems found while building plugins/schedules.
    """
    cfg = run_config_for_seed(config, seed)
    offline = bool(cfg["tracking"]["offline"]) if offline is None else offline
    name = run_name or f"{cfg['name']}-s{seed}"
    folder = RunDir(run_dir or run_dir_for(config, seed, run_name))
    if not fresh and folder.state().get("status") == "FINISHED":
        return RunResult.from_run_dir(folder.path)
    uri = resolve_tracking_uri(tracking_uri or cfg["tracking"]["uri"], cfg["workdir"])
    if not offline:
        check_tracking(uri)  # before anything is written
    with folder.lock():  # an identical run in another process: wait, then reuse its result
        if fresh and folder.path.exists():
            shutil.rmtree(folder.path)
        if folder.state().get("status") == "FINISHED":
            return RunResult.from_run_dir(folder.path)
        run = _Run(
            cfg,
            seed,
            tracking_uri=uri,
            offline=offline,
            parent_run_id=parent_run_id,
            progress=progress,
            folder=folder,
            name=name,
        )
        run.prepare()
        run.open_recorder()
        try:
            return run.run()
        except BaseException as exc:
            status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
            run.folder.update_state(status=status, error=f"{type(exc).__name__}: {exc}")
            state = run.folder.state()
            with contextlib.suppress(Exception):  # never mask the original error
                if state.get("wer"):
                    write_matrices(run.folder, run.domains, state["wer"], state["cer"], png=True)
            run.recorder.log_artifacts_dir()
            run.recorder.finish(status)
            raise


def run_config(
    config: Mapping[str, Any],
    *,
    tracking_uri: str | None = None,
    offline: bool | None = None,
    fresh: bool = False,
    seeds: Sequence[int] | None = None,
    progress: bool = True,
    parent_run_id: str | None = None,
) -> list[RunResult]:
    """:func:`run_experiment` for every seed of the config (or ``seeds``)."""
    return [
        run_experiment(
            config,
            seed,
            tracking_uri=tracking_uri,
            offline=offline,
            fresh=fresh,
            progress=progress,
            parent_run_id=parent_run_id,
        )
        for seed in (seeds or config["seeds"])
    ]
