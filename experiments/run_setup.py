"""Setting up one seed's run (``experiments.runner``): the plugins (built once, so config
errors surface before any data or model work), the stream and base model, the run folder's
state, the rewind of a killed attempt, the MLflow recorder with its tags and params, and the
reference matrices. ``RunSetup`` holds that state; ``runner._Run`` adds the loop.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks.stream import mark_base_domains
from cl_ssvdo.asr.fingerprint import check_same_base, stream_sha256, weights_sha256
from cl_ssvdo.data import StreamError
from experiments.checkpoint import resume_point
from experiments.config import ConfigError, config_hash
from experiments.factory import build_plugins, resolve_device
from experiments.mlflow_logger import MLflowLogger, run_description, run_params
from experiments.prepare import (
    eval_split,
    make_stream_benchmark,
    prepare_base_model,
    prepare_stream,
    stream_key,
)
from experiments.recorder import RunRecorder
from experiments.references import find_local_reference, load_reference
from experiments.run_dir import RunDir
from experiments.tracking import resolve_artifact_location
from experiments.whisper_base import is_whisper, prepare_whisper_base

__all__ = ["RunSetup"]


class RunSetup:
    """One seed's run before its loop: stream, base model, run folder, tracking, references
    (the loop is ``experiments.runner._Run``)."""

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
        # Config errors in plugins/schedules before any data or model work; the run uses them.
        self.plugins = build_plugins(cfg)
        self.folder.create()
        if cfg["train"].get("save_adapters"):
            for plugin in self.plugins:
                if hasattr(plugin, "save_adapters_to"):
                    plugin.save_adapters_to = str(self.folder.path / "adapters")
        (self.folder.path / "config.yaml").write_text(yaml.safe_dump(dict(cfg), sort_keys=False))
        self.info = prepare_stream(cfg, progress=self.progress)
        self.folder.artifacts.mkdir(parents=True, exist_ok=True)
        self.bench = make_stream_benchmark(
            cfg, self.info, splits=("train", eval_split(cfg)), skipped_dir=self.folder.artifacts
        )
        self.skipped_rows = len(getattr(self.bench, "skipped_rows", []))
        if self.skipped_rows:
            warnings.warn(
                f"stream.validate: skip dropped {self.skipped_rows} rows (listed in "
                f"{self.folder.artifacts}/*.skipped.tsv and MLflow param data.skipped_rows)",
                UserWarning,
                stacklevel=2,
            )
        resampled = getattr(self.bench, "resampled_rows", {})
        self.resampled_rows = sum(resampled.values())
        if self.resampled_rows:  # allowed by the stream ("resample": true), never silent
            counts = ", ".join(f"{k} {n}" for k, n in resampled.items() if n)
            warnings.warn(
                f"resampling {self.resampled_rows} rows recorded at another rate than "
                f"{self.info.sample_rate} Hz ({counts}; MLflow param data.resampled_rows)",
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
                "data.resampled_rows": self.resampled_rows,
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
