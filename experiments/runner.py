"""One strategy over the stream: the loop behind ``cl-ssvdo run``.

Per seed: check the tracking store (a named error before any work), prepare the stream and
the base model (reused when present), build the CTC template and plugins from the config,
evaluate the base model on every domain (row 0 of the WER matrix), then per experience train,
evaluate every domain (row i), write the row and a checkpoint to the run folder and log the
row to MLflow. At the end: continual metrics (``cl_ssvdo.metrics``), matrices, plots, budget
table and a short summary.

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
import yaml
from tqdm.auto import tqdm

from experiments.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from experiments.config import ConfigError, config_hash
from experiments.factory import build_plugins, build_strategy, resolve_device
from experiments.mlflow_logger import MLflowLogger, run_params
from experiments.prepare import (
    load_base_model,
    make_stream_benchmark,
    prepare_base_model,
    prepare_stream,
    stream_key,
)
from experiments.recorder import RunDir, RunRecorder
from experiments.references import find_local_reference, load_reference
from experiments.results import (
    RunResult,
    format_result,
    partial_summary,
    step_metrics,
    write_final_artifacts,
    write_matrices,
)
from experiments.tracking import check_tracking, resolve_artifact_location, resolve_tracking_uri

__all__ = ["RunResult", "format_result", "run_config", "run_dir_for", "run_experiment"]


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


def _evaluate_row(
    strategy, bench, wer_matrix, row: int, folder: RunDir
) -> tuple[list[float], list[float]]:
    """Evaluate every test experience into ``row``; hypotheses go to artifacts/hypotheses."""
    wer_matrix.force_row = row
    strategy.eval(bench.test_stream)
    n = len(bench.test_stream)
    cells = [wer_matrix.cells[(row, j)] for j in range(n)]
    hyp_dir = folder.artifacts / "hypotheses"
    hyp_dir.mkdir(parents=True, exist_ok=True)
    lines = ["domain\tid\treference\thypothesis"]
    for cell in cells:
        lines += [
            f"{cell.domain}\t{i}\t{r}\t{h}"
            for i, r, h in zip(cell.ids, cell.refs, cell.hyps, strict=True)
        ]
    (hyp_dir / f"row{row}.tsv").write_text("\n".join(lines) + "\n")
    return [float(c.wer) for c in cells], [float(c.cer) for c in cells]


def _joint_experience(bench, upto: int):
    """One experience holding the training data of the first ``upto`` domains."""
    from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets

    data = bench.train_stream[0].dataset
    for k in range(1, upto):
        data = data.concat(bench.train_stream[k].dataset)
    exp = benchmark_from_datasets(train=[data]).train_stream[0]
    exp.domain = "+".join(bench.domains[:upto])
    return exp


def _budget_rows(plugins: Sequence[Any], step: int | None = None) -> list[dict[str, Any]]:
    rows = []
    for plugin in plugins:
        for record in getattr(plugin, "records", []) or []:
            for layer in record.layers:
                rows.append(
                    {
                        "experience": step if step is not None else record.experience + 1,
                        "method": record.method,
                        "layer": layer.name,
                        "group": layer.group,
                        "out_features": layer.out_features,
                        "in_features": layer.in_features,
                        "k": layer.k,
                        "l": layer.l,
                        "rank": layer.rank,
                        "trainable": layer.trainable,
                        "drift_u": layer.drift_u,
                        "drift_v": layer.drift_v,
                    }
                )
    return rows


class _Run:
    """The state of one seed's run (kept small: one method per phase)."""

    def __init__(
        self,
        config: Mapping[str, Any],
        seed: int,
        *,
        tracking_uri: str | None,
        offline: bool,
        parent_run_id: str | None,
        progress: bool,
        folder: RunDir,
        name: str,
    ) -> None:
        self.cfg = config
        self.seed = seed
        self.progress = progress
        self.folder = folder
        self.name = name
        self.workdir = Path(config["workdir"])
        self.offline = offline
        self.uri = tracking_uri
        self.parent_run_id = parent_run_id
        self.device = resolve_device(config["train"]["device"])
        self.mode = config["strategy"]["mode"]

    # -- setup ---------------------------------------------------------------------------------
    def prepare(self) -> None:
        cfg = self.cfg
        build_plugins(cfg)  # config errors in plugins/schedules before any data or model work
        self.folder.create()
        (self.folder.path / "config.yaml").write_text(yaml.safe_dump(dict(cfg), sort_keys=False))
        self.info = prepare_stream(cfg, progress=self.progress)
        self.bench = make_stream_benchmark(cfg, self.info)
        self.domains = list(self.bench.domains)
        self.model, self.tokenizer, self.base = prepare_base_model(
            cfg, self.info, progress=self.progress, device=self.device
        )
        self.base_key = config_hash(
            {"stream": stream_key(cfg, self.info), "base": str(self.base.resolve())}
        )
        state = self.folder.state()
        self.folder.update_state(
            status="RUNNING",
            run_name=self.name,
            seed=self.seed,
            mode=self.mode,
            strategy=cfg["strategy"]["name"],
            domains=self.domains,
            base_key=self.base_key,
            base_model=str(self.base),
            workdir=str(self.workdir),
            config_hash=config_hash(cfg),
            started=state.get("started", time.time()),
        )

    def open_recorder(self) -> None:
        cfg = self.cfg
        previous = self.folder.state().get("mlflow") or {}
        resume_id = None
        if (
            previous.get("synced")
            and previous.get("tracking_uri") == self.uri
            and previous.get("run_id")
        ):
            resume_id = previous["run_id"]
        tags = {
            "cl_ssvdo.strategy": cfg["strategy"]["name"],
            "cl_ssvdo.mode": self.mode,
            "cl_ssvdo.adapter": (cfg["strategy"].get("adapter") or {}).get("method", "none"),
            "cl_ssvdo.plugins": ",".join(p["name"] for p in cfg["strategy"].get("plugins", []))
            or "none",
            "cl_ssvdo.seed": str(self.seed),
            "cl_ssvdo.base_key": self.base_key,
            "cl_ssvdo.config_name": cfg["name"],
            **cfg["tracking"].get("tags", {}),
        }
        self.recorder = RunRecorder(
            self.folder.path,
            None if self.offline else self.uri,
            cfg["tracking"]["experiment"],
            self.name,
            parent_run_id=self.parent_run_id,
            run_id=resume_id,
            offline=self.offline,
            check=False,
            artifact_location=resolve_artifact_location(
                self.uri, self.workdir, cfg["tracking"].get("artifact_location")
            ),
            tags=tags,
        )
        if resume_id is None and self.folder.metrics_file.is_file():
            self.recorder.replay_local_history()
        self.recorder.set_tags(tags)
        self.logger = MLflowLogger(self.recorder, domains=self.domains)
        params = run_params(cfg, self.seed)
        params.update(
            {
                "base_model": str(self.base),
                "stream.path": str(self.info.root),
                "stream.domains": ",".join(self.domains),
                "run_dir": str(self.folder.path),
            }
        )
        self.recorder.log_params(params)

    def references(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        refs = self.cfg["references"]
        out: dict[str, np.ndarray | None] = {}
        for key, mode in (("joint", "joint"), ("single_task", "single_task")):
            source = refs.get(key)
            out[key] = None
            if source is not None:  # named in the config: must load
                out[key] = load_reference(source, self.domains, self.uri)
            elif self.mode == "sequential":
                found = find_local_reference(self.workdir, mode, self.base_key)
                if found is not None:
                    try:
                        out[key] = load_reference(str(found), self.domains)
                        source = str(found)
                    except (OSError, ValueError) as exc:
                        warnings.warn(
                            f"ignoring reference run {found}: {exc}", RuntimeWarning, stacklevel=2
                        )
            if out[key] is not None:
                self.recorder.log_params({f"reference.{key}": source})
        return out["joint"], out["single_task"]

    def _strategy(self, model):
        from avalanche.evaluation.metrics import loss_metrics
        from avalanche.training.plugins import EvaluationPlugin

        from strategies.wer import WERMatrix

        wer_matrix = WERMatrix(stream="test")
        evaluator = EvaluationPlugin(
            loss_metrics(epoch=True, experience=True), loggers=[self.logger]
        )
        strategy, plugins = build_strategy(
            self.cfg,
            model,
            self.tokenizer,
            evaluator=evaluator,
            extra_plugins=[wer_matrix],
            device=self.device,
        )
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
    def _commit_row(self, i: int, wer: list[float], cer: list[float], joint, single) -> None:
        state = self.folder.state()
        wer_rows = state.get("wer", [])[:i] + [wer]
        cer_rows = state.get("cer", [])[:i] + [cer]
        trainable = {
            **state.get("trainable", {}),
            **{str(k): v for k, v in self.logger.trainable.items()},
        }
        self.folder.update_state(
            completed=i,
            wer=wer_rows,
            cer=cer_rows,
            trainable=trainable,
            global_epoch=self.logger.global_epoch,
        )
        write_matrices(self.folder, self.domains, wer_rows, cer_rows, png=False)
        self.logger.log_eval_row(
            i, {d: {"wer": w, "cer": c} for d, w, c in zip(self.domains, wer, cer, strict=True)}
        )
        if i >= 1:
            summary = partial_summary(wer_rows, joint, single)
            self.recorder.log_metrics(step_metrics(summary, wer, self.domains, i), step=i)

    def run(self) -> RunResult:
        joint, single = self.references()
        state = self.folder.state()
        completed = int(state.get("completed", -1))
        self.logger.global_epoch = int(state.get("global_epoch", 0))
        n = len(self.domains)
        budget_rows: list[dict[str, Any]] = list(state.get("budget_rows", []))
        strategy, plugins, wer_matrix = self._strategy(self.model)
        self._validate_plugins(strategy.model, plugins, n)
        if self.mode == "sequential" and completed >= 1:
            ckpt = latest_checkpoint(self.folder.checkpoints)
            if ckpt is None or ckpt[0] != completed:
                completed = 0 if ckpt is None else ckpt[0]  # rows after the checkpoint are redone
            if completed >= 1:
                load_checkpoint(ckpt[1], strategy.model, plugins, self.device)
        seed_everything(self.seed + max(completed, 0))
        if completed < 0:
            wer, cer = _evaluate_row(strategy, self.bench, wer_matrix, 0, self.folder)
            self._commit_row(0, wer, cer, joint, single)
            completed = 0
        bar = tqdm(
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
            if self.mode == "sequential":
                strategy.train(self.bench.train_stream[i - 1])
            else:
                model, _ = load_base_model(self.base, self.device)
                strategy, plugins, wer_matrix = self._strategy(model)
                exp = (
                    _joint_experience(self.bench, i)
                    if self.mode == "joint"
                    else self.bench.train_stream[i - 1]
                )
                strategy.train(exp)
            wer, cer = _evaluate_row(strategy, self.bench, wer_matrix, i, self.folder)
            if self.mode == "sequential":
                budget_rows = _budget_rows(plugins)
                if self.cfg["train"]["checkpoint"]:
                    save_checkpoint(
                        self.folder.checkpoints,
                        i,
                        strategy.model,
                        plugins,
                        extra={"global_epoch": self.logger.global_epoch},
                    )
            else:
                budget_rows = [r for r in budget_rows if r["experience"] != i] + _budget_rows(
                    plugins, i
                )
            self.folder.update_state(budget_rows=budget_rows)
            self._commit_row(i, wer, cer, joint, single)
        bar.close()
        return self.finish(joint, single, budget_rows)

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
    if fresh and folder.path.exists():
        shutil.rmtree(folder.path)
    if folder.state().get("status") == "FINISHED":
        return RunResult.from_run_dir(folder.path)
    uri = resolve_tracking_uri(tracking_uri or cfg["tracking"]["uri"], cfg["workdir"])
    if not offline:
        check_tracking(uri)
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
