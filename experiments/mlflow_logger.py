"""An Avalanche logger that sends any Avalanche strategy's run to MLflow (through a local-first
:class:`~experiments.recorder.RunRecorder`).

What it logs:
- params: whatever is passed (use :func:`run_params` for the flattened config, git commit,
  package versions and seed);
- ``train/loss`` per epoch (mean minibatch loss; step = epoch count over the whole run) and
  ``train/loss_exp<i>`` per experience (step = epoch within the experience);
- ``trainable_params`` per experience (step = experience index, 1-based: what the optimiser
  really updates, counted at the first epoch, after plugins have injected adapters);
- per-experience WER/CER per domain as step metrics ``wer/<domain>``, ``cer/<domain>``
  (step = experiences trained so far, 0 = base): from ``strategies.metrics.wer.wer_metrics`` when the
  evaluator has them, or through :meth:`MLflowLogger.log_eval_row`;
- every numeric metric the strategy's ``EvaluationPlugin`` emits (name sanitised, step = x_plot).

Example (any Avalanche template)::

    logger = MLflowLogger(tracking_uri="sqlite:///outputs/mlflow.db", experiment="demo",
                          params=run_params(cfg, seed=0))
    strategy = Naive(model, opt, evaluator=EvaluationPlugin(loss_metrics(epoch=True), loggers=[logger]))
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from avalanche.logging import BaseLogger

from experiments.config import flatten
from experiments.recorder import RunRecorder
from experiments.tracking import default_tracking_uri

__all__ = [
    "MLflowLogger",
    "adapter_params",
    "git_commit",
    "package_versions",
    "run_description",
    "run_params",
    "trainable_parameters",
]

PACKAGES = (
    "torch",
    "torchaudio",
    "speechbrain",
    "avalanche-lib",
    "mlflow",
    "peft",
    "jiwer",
    "cl_ssvdo",
)
_BAD_NAME_CHARS = re.compile(r"[^A-Za-z0-9_\-. :/]")


def git_commit(root: str | Path | None = None) -> dict[str, str]:
    """``{"git.commit": sha or "unknown", "git.dirty": "true"/"false"/"unknown"}``."""
    cwd = Path(root) if root else Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return {"git.commit": "unknown", "git.dirty": "unknown"}
    commit = sha.stdout.strip() if sha.returncode == 0 else "unknown"
    is_dirty = "unknown" if dirty.returncode != 0 else str(bool(dirty.stdout.strip())).lower()
    return {"git.commit": commit, "git.dirty": is_dirty}


def package_versions() -> dict[str, str]:
    """``{"version.<package>": version}`` for the packages a result depends on."""
    out = {}
    for name in PACKAGES:
        try:
            out[f"version.{name}"] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[f"version.{name}"] = "not installed"
    return out


def run_params(config: Mapping[str, Any], seed: int | None = None) -> dict[str, str]:
    """MLflow params of a run: the flattened config, git commit, package versions and seed."""
    params = {f"config.{k}": v for k, v in flatten(config).items()}
    params.update(git_commit())
    params.update(package_versions())
    if seed is not None:
        params["seed"] = str(seed)
    return params


def run_description(config: Mapping[str, Any], seed: int | None = None) -> str:
    """The run's MLflow description (``mlflow.note.content``): the config's ``description``
    and one line saying what this run is, so runs of configs that inherit a description
    (``extends:``) still read as themselves."""
    strategy = config.get("strategy", {})
    adapter = (strategy.get("adapter") or {}).get("method", "none")
    plugins = ",".join(p["name"] for p in strategy.get("plugins", [])) or "none"
    line = (
        f"Run of config `{config.get('name')}`: strategy {strategy.get('name')} "
        f"({strategy.get('mode', 'sequential')}), adapter {adapter}, plugins {plugins}"
        + (f", seed {seed}" if seed is not None else "")
        + "."
    )
    text = str(config.get("description") or "").strip()
    return f"{text}\n\n{line}" if text else line


def adapter_params(plugins: Any, model: Any) -> dict[str, str]:
    """Top-level params ``adapter.method``, ``adapter.budget`` (trainable parameters the first
    experience gets, or the SSVD-O count a baseline is matched to) and ``adapter.inner_share``
    (the part of an SSVD-O budget in the inner rotation); ``"none"`` / ``"n/a"`` otherwise."""
    from cl_ssvdo.budget import ssvdo_params

    adapter = next((p for p in plugins if getattr(p, "adapter_method", None)), None)
    out = {"adapter.method": "none", "adapter.budget": "n/a", "adapter.inner_share": "n/a"}
    if adapter is None:
        return out
    out["adapter.method"] = str(adapter.adapter_method)
    schedule, outer = getattr(adapter, "schedule", None), getattr(adapter, "outer", True)
    if schedule is None and getattr(adapter, "match", None) is not None:
        schedule, outer = adapter.match
    if schedule is None:
        return out
    try:
        settings = schedule.resolve(0, adapter.target_layers(model), outer=outer)
    except Exception:  # the run's own validation reports schedule errors
        return out
    total = sum(s.trainable for s in settings)
    inner = sum(ssvdo_params(s.out_features, s.in_features, s.inner_ratio, 0) for s in settings)
    out["adapter.budget"] = str(total)
    out["adapter.inner_share"] = f"{inner / total:.4f}" if total else "n/a"
    return out


def trainable_parameters(strategy: Any) -> int:
    """Parameters the optimiser updates (falls back to ``requires_grad`` ones of the model)."""
    optimizer = getattr(strategy, "optimizer", None)
    seen: set[int] = set()
    total = 0
    if optimizer is not None:
        for group in optimizer.param_groups:
            for p in group["params"]:
                if id(p) not in seen and p.requires_grad:
                    seen.add(id(p))
                    total += p.numel()
    if total == 0:
        total = sum(p.numel() for p in strategy.model.parameters() if p.requires_grad)
    return total


class MLflowLogger(BaseLogger):
    """Avalanche ``BaseLogger`` that writes to one MLflow run (and its run folder).

    Arguments
    ---------
    recorder : RunRecorder or None
        Where to write; when ``None`` a recorder for a new MLflow run is created from
        ``tracking_uri`` / ``experiment`` / ``run_name`` (no local folder).
    params : Mapping[str, Any] or None
        Params to log once, at construction.
    domains : list[str] or None
        Domain names in stream order (names the per-domain metrics).
    log_avalanche_metrics : bool
        Also log the metrics the ``EvaluationPlugin`` emits.
    """

    def __init__(
        self,
        recorder: RunRecorder | None = None,
        *,
        tracking_uri: str | None = None,
        experiment: str = "cl-ssvdo",
        run_name: str | None = None,
        params: Mapping[str, Any] | None = None,
        domains: list[str] | None = None,
        log_avalanche_metrics: bool = True,
    ) -> None:
        super().__init__()
        if recorder is None:
            recorder = RunRecorder(
                None, tracking_uri or default_tracking_uri("outputs"), experiment, run_name
            )
        self.recorder = recorder
        self.domains = list(domains) if domains else None
        self.log_avalanche_metrics = log_avalanche_metrics
        # The runner sets this (absolute, 1-based experience index); otherwise it is read
        # from ``strategy.experience.current_experience``.
        self.experience_step: int | None = None
        self.global_epoch = 0
        self._exp_epoch = 0
        self._loss_sum = 0.0
        self._loss_count = 0
        self._counted = False
        self.trainable: dict[int, int] = {}
        if params:
            self.recorder.log_params(params)

    # The recorder holds an MLflow client: never pickle it into an Avalanche checkpoint.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["recorder"] = None
        return state

    # -- Avalanche metric stream -------------------------------------------------------------
    def log_single_metric(self, name: str, value: Any, x_plot: int) -> None:
        if not self.log_avalanche_metrics or self.recorder is None:
            return
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, int | float):
            return  # images, histograms, text: not scalar metrics
        self.recorder.log_metric(_BAD_NAME_CHARS.sub("_", name), float(value), int(x_plot))

    # -- callbacks (called by the EvaluationPlugin with the metric values) ------------------
    def _step(self, strategy: Any) -> int:
        if self.experience_step is not None:
            return self.experience_step
        return int(strategy.experience.current_experience) + 1

    def before_training_exp(self, strategy: Any, metric_values: Any = None, **kwargs: Any) -> None:
        self._exp_epoch = 0
        self._counted = False

    def before_training_epoch(
        self, strategy: Any, metric_values: Any = None, **kwargs: Any
    ) -> None:
        self._loss_sum, self._loss_count = 0.0, 0
        if not self._counted:
            step = self._step(strategy)
            count = trainable_parameters(strategy)
            self.trainable[step] = count
            self.recorder.log_metric("trainable_params", count, step)
            self._counted = True

    def after_training_iteration(
        self, strategy: Any, metric_values: Any = None, **kwargs: Any
    ) -> None:
        loss = getattr(strategy, "loss", None)
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            self._loss_sum += float(loss.detach())
            self._loss_count += 1

    def after_training_epoch(self, strategy: Any, metric_values: Any = None, **kwargs: Any) -> None:
        if self._loss_count:
            mean = self._loss_sum / self._loss_count
            self.recorder.log_metric("train/loss", mean, self.global_epoch)
            self.recorder.log_metric(f"train/loss_exp{self._step(strategy)}", mean, self._exp_epoch)
        self.global_epoch += 1
        self._exp_epoch += 1

    def after_eval_exp(self, strategy: Any, metric_values: Any = None, **kwargs: Any) -> None:
        """With ``strategies.metrics.wer.wer_metrics`` in the evaluator, also log its per-experience
        WER/CER as ``wer/<domain>`` / ``cer/<domain>`` at step = experiences trained so far."""
        found = {}
        for mv in metric_values or []:
            name = str(getattr(mv, "name", ""))
            for prefix, key in (("WER_Exp/", "wer"), ("CER_Exp/", "cer")):
                if name.startswith(prefix) and "eval_phase/test_stream" in name:
                    found[key] = float(mv.value)
        if not found:
            return
        exp = strategy.experience
        domain = getattr(exp, "domain", None) or f"exp{int(exp.current_experience)}"
        step = int(strategy.clock.train_exp_counter)
        self.recorder.log_metrics({f"{k}/{domain}": v for k, v in found.items()}, step)

    # -- evaluation rows (called by the runner, or by anything that computed a WER row) -------
    def log_eval_row(self, step: int, results: Mapping[str, Mapping[str, float]]) -> None:
        """Log ``{domain: {"wer": x, "cer": y}}`` after ``step`` experiences (0 = base)."""
        metrics = {}
        for domain, values in results.items():
            for name, value in values.items():
                metrics[f"{name}/{domain}"] = float(value)
        self.recorder.log_metrics(metrics, step)
