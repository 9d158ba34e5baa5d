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

from benchmarks.stream import StreamError, mark_base_domains
from cl_ssvdo.asr.fingerprint import check_same_base, stream_sha256, weights_sha256
from experiments.checkpoint import dataset_refs, load_checkpoint, resume_point, save_checkpoint
from experiments.config import ConfigError, config_hash
from experiments.factory import build_plugins, build_strategy, resolve_device
from experiments.mlflow_logger import MLflowLogger, adapter_params, run_description, run_params
from experiments.plots import layer_diagnostics, save
from experiments.prepare import (
    load_base_model,
    make_stream_benchmark,
    prepare_base_model,
    prepare_stream,
    stream_key,
)
from experiments.progress import StepProgress, progress_bar
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
from experiments.whisper_base import is_whisper, load_whisper_base, prepare_whisper_base

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
    write_utterance_errors(folder.artifacts / "utterances", row, cells, _test_speakers(bench))
    return [float(c.wer) for c in cells], [float(c.cer) for c in cells]


def _test_speakers(bench) -> dict[tuple[str, str], str]:
    """``(domain, utterance id) -> voice`` from the test manifests (empty when unknown)."""
    from benchmarks.manifest import read_manifest

    info = getattr(bench, "stream_info", None)
    if info is None:
        return {}
    out: dict[tuple[str, str], str] = {}
    for domain in bench.domains:
        with contextlib.suppress(OSError, ValueError, KeyError):
            for r in read_manifest(info.manifest(domain, "test")):
                out[(domain, r.ID)] = r.spk_id
    return out


def write_utterance_errors(
    folder: Path, row: int, cells: Sequence[Any], speakers: Mapping[tuple[str, str], str]
) -> Path:
    """``<folder>/after_exp_<row>.csv.gz``: one line per test utterance of every domain after
    ``row`` experiences: ``row, domain, id, speaker, errors, words`` (jiwer's word errors
    S + D + I and reference words), what the study's voice/utterance bootstrap resamples."""
    import pandas as pd

    records = [
        {
            "row": row,
            "domain": cell.domain,
            "id": uid,
            "speaker": speakers.get((cell.domain, uid), ""),
            "errors": int(e),
            "words": int(w),
        }
        for cell in cells
        for uid, e, w in zip(cell.ids, cell.errors, cell.words, strict=True)
    ]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"after_exp_{row}.csv.gz"
    columns = ["row", "domain", "id", "speaker", "errors", "words"]
    pd.DataFrame.from_records(records, columns=columns).to_csv(path, index=False)
    return path


def _copy_utterance_errors(folder: Path, src: int, dst: int) -> None:
    """Row ``dst`` is row ``src`` (an evaluate-only experience): same per-utterance errors."""
    import pandas as pd

    path = folder / f"after_exp_{src}.csv.gz"
    if path.is_file():
        frame = pd.read_csv(path, dtype={"id": str, "speaker": str}, keep_default_na=False)
        frame.assign(row=dst).to_csv(folder / f"after_exp_{dst}.csv.gz", index=False)


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
                        "subspace": getattr(layer, "subspace", ""),
                        **getattr(layer, "diagnostics", {}),
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
        self.folder.artifacts.mkdir(parents=True, exist_ok=True)
        self.bench = make_stream_benchmark(cfg, self.info, skipped_dir=self.folder.artifacts)
        self.skipped_rows = len(getattr(self.bench, "skipped_rows", []))
        if self.skipped_rows:
            warnings.warn(
                f"stream.validate: skip dropped {self.skipped_rows} rows (listed in "
                f"{self.folder.artifacts}/*.skipped.tsv and MLflow param data.skipped_rows)",
                UserWarning,
                stacklevel=2,
            )
        try:  # a pretrained base's own domains: evaluated (forgetting), never trained on
            mark_base_domains(self.bench, cfg["stream"].get("base_domains"))
        except StreamError as exc:
            raise ConfigError(str(exc), "stream.base_domains") from exc
        self.domains = list(self.bench.domains)
        if is_whisper(cfg):
            self.model, self.tokenizer, self.base = prepare_whisper_base(
                cfg, self.info, progress=self.progress, device=self.device
            )
        else:
            self.model, self.tokenizer, self.base = prepare_base_model(
                cfg, self.info, progress=self.progress, device=self.device
            )
        # The weights themselves, not the folder name: a folder can be re-pretrained in place.
        self.base_weights_sha = weights_sha256(self.model)
        self.base_stream_sha = stream_sha256(self.info.root)
        self.base_key = config_hash(
            {
                "stream": stream_key(cfg, self.info),
                "base": str(self.base.resolve()),
                "weights": self.base_weights_sha,
            }
        )
        state = self.folder.state()
        check_same_base(
            state.get("base_weights_sha"),
            self.base_weights_sha,
            what=f"run {self.name}",
            where=self.folder.path / "state.json",
        )
        self.folder.update_state(
            status="RUNNING",
            run_name=self.name,
            seed=self.seed,
            mode=self.mode,
            strategy=cfg["strategy"]["name"],
            domains=self.domains,
            base_key=self.base_key,
            base_model=str(self.base),
            base_weights_sha=self.base_weights_sha,
            base_stream_sha=self.base_stream_sha,
            workdir=str(self.workdir),
            config_hash=config_hash(cfg),
            started=state.get("started", time.time()),
        )

    def rewind(self) -> bool:
        """Cut the folder back to what the last checkpoint (sequential) or committed row
        (other modes) covers: rows after it, the killed attempt's metric rows and a torn last
        line go. Returns True when metric rows were dropped."""
        state = self.folder.state()
        completed = int(state.get("completed", -1))
        self.resume = None
        keep_bytes = int(state.get("metrics_bytes", 0)) if completed >= 0 else 0
        if self.mode == "sequential" and completed >= 0:
            self.resume = resume_point(self.folder.checkpoints, at_most=completed)
            if self.resume is None:
                completed, keep_bytes = -1, 0
            else:
                completed = self.resume[0]
                keep_bytes = int(self.resume[2].get("metrics_bytes", 0))
        if completed != int(state.get("completed", -1)):
            self.folder.update_state(
                completed=completed,
                wer=state.get("wer", [])[: completed + 1],
                cer=state.get("cer", [])[: completed + 1],
            )
        metrics = self.folder.metrics_file
        if metrics.is_file() and metrics.stat().st_size > keep_bytes:
            with metrics.open("r+b") as fh:
                fh.truncate(keep_bytes)
            return True
        return False

    def open_recorder(self) -> None:
        cfg = self.cfg
        rewound = self.rewind()
        previous = self.folder.state().get("mlflow") or {}
        resume_id = stale_id = None
        if (
            previous.get("synced")
            and previous.get("tracking_uri") == self.uri
            and previous.get("run_id")
        ):
            # Rows of a killed attempt cannot be taken back from an MLflow run: start a new
            # one from the (cut) folder and retire the old one.
            if rewound:
                stale_id = previous["run_id"]
            else:
                resume_id = previous["run_id"]
        tags = {
            "cl_ssvdo.strategy": cfg["strategy"]["name"],
            "cl_ssvdo.mode": self.mode,
            "cl_ssvdo.adapter": (cfg["strategy"].get("adapter") or {}).get("method", "none"),
            "cl_ssvdo.plugins": ",".join(p["name"] for p in cfg["strategy"].get("plugins", []))
            or "none",
            "cl_ssvdo.seed": str(self.seed),
            "cl_ssvdo.base_key": self.base_key,
            "base.weights_sha": self.base_weights_sha,
            "base.stream_sha": self.base_stream_sha,
            "cl_ssvdo.config_name": cfg["name"],
            "mlflow.note.content": run_description(cfg, self.seed),
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
        if stale_id and self.recorder.online and self.recorder.client is not None:
            with contextlib.suppress(Exception):
                self.recorder.client.set_tag(
                    stale_id, "cl_ssvdo.superseded_by", self.recorder.run_id
                )
                self.recorder.client.set_terminated(stale_id, "KILLED")
                self.recorder.client.delete_run(stale_id)
        self.recorder.set_tags(tags)
        self.logger = MLflowLogger(self.recorder, domains=self.domains)
        params = run_params(cfg, self.seed)
        params.update(
            {
                "base_model": str(self.base),
                "base.weights_sha": self.base_weights_sha,
                "base.stream_sha": self.base_stream_sha,
                "stream.path": str(self.info.root),
                "stream.domains": ",".join(self.domains),
                "data.skipped_rows": self.skipped_rows,
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

        from strategies.metrics.wer import WERMatrix

        wer_matrix = WERMatrix(stream="test")
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
            wer, cer = _evaluate_row(strategy, self.bench, wer_matrix, 0, self.folder)
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
                _copy_utterance_errors(self.folder.artifacts / "utterances", i - 1, i)
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
                    _joint_experience(self.bench, i)
                    if self.mode == "joint"
                    else self.bench.train_stream[i - 1]
                )
                strategy.train(exp)
            wer, cer = _evaluate_row(strategy, self.bench, wer_matrix, i, self.folder)
            if self.mode == "sequential":
                budget_rows = _budget_rows(plugins)
            else:
                budget_rows = [r for r in budget_rows if r["experience"] != i] + _budget_rows(
                    plugins, i
                )
            self.folder.update_state(budget_rows=budget_rows)
            self._commit_row(i, wer, cer, joint, single)
            self._checkpoint(i, strategy, plugins)
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
