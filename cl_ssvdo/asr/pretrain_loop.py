"""The training loop of :func:`cl_ssvdo.asr.pretrain.pretrain`: optimizer and schedule,
SpeechBrain ``Checkpointer`` resume, epochs of duration-sorted batches, validation, early
stopping and checkpoints inside and at the end of epochs.

Must not depend on avalanche, mlflow or benchmarks.
"""

from __future__ import annotations

import logging
import shutil
import time
from typing import Any

import torch
from speechbrain.utils.checkpoints import Checkpointer
from torch import nn

from cl_ssvdo.progress import progress_bar

from .batching import durations_of, is_item_dataset, iterate_batches, num_batches
from .evaluate import evaluate_model
from .loss import ctc_batch_loss
from .reproducibility import deterministic_algorithms, seed_everything
from .tokenizer import Tokenizer
from .train_state import TrainState, warmup_cosine

__all__ = ["PretrainLoop"]

logger = logging.getLogger(__name__)


class PretrainLoop:
    """One pretraining run over ``train_data``: built from the arguments of
    :func:`~cl_ssvdo.asr.pretrain.pretrain` (see there), resumed from ``checkpoint_dir`` when
    it holds a checkpoint; :meth:`run` trains until a budget, early stopping or ``max_epochs``
    and returns what stopped it.

    The model must already be on ``device`` and the generators seeded with ``seed``.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Tokenizer,
        train_data: Any,
        valid_data: Any,
        *,
        checkpoint_dir: Any,
        device: torch.device,
        use_amp: bool,
        max_epochs: int,
        max_steps: int | None,
        max_minutes: float | None,
        lr: float,
        weight_decay: float,
        warmup_steps: int,
        schedule_steps: int | None,
        batch_size: int,
        valid_batch_size: int | None,
        grad_clip: float,
        early_stopping_patience: int,
        ckpt_every_minutes: float | None,
        ckpt_every_steps: int | None,
        seed: int,
        num_workers: int,
        progress: bool,
    ) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.train_data, self.valid_data = train_data, valid_data
        self.device, self.use_amp = device, use_amp
        self.max_epochs, self.max_steps, self.max_minutes = max_epochs, max_steps, max_minutes
        self.batch_size = batch_size
        self.valid_batch_size = valid_batch_size or batch_size
        self.grad_clip, self.patience = grad_clip, early_stopping_patience
        self.ckpt_every_minutes, self.ckpt_every_steps = ckpt_every_minutes, ckpt_every_steps
        self.seed, self.num_workers, self.progress = seed, num_workers, progress

        self.train_durations = durations_of(train_data) if is_item_dataset(train_data) else None
        self.steps_per_epoch = num_batches(train_data, batch_size)
        if schedule_steps is None:
            if max_steps is not None:
                schedule_steps = max_steps
            elif self.steps_per_epoch is not None:
                schedule_steps = max_epochs * self.steps_per_epoch
            else:
                raise ValueError("schedule_steps is required when train_data has no length")
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("pretrain: the model has no trainable parameters")
        self.optimizer = torch.optim.AdamW(self.params, lr=lr, weight_decay=weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(warmup_steps, schedule_steps)
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        self.state = TrainState()
        recoverables: dict[str, Any] = {
            "model": model,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
        }
        if use_amp:
            recoverables["scaler"] = self.scaler
        recoverables["state"] = self.state  # saved last: see _drop_unfinished
        self.checkpointer = Checkpointer(checkpoint_dir, recoverables=recoverables)
        self.resumed_from = self._recover()
        self.last_ckpt_time = time.monotonic()

    def _recover(self) -> int:
        """Loads the latest checkpoint, if any; returns the step it resumed from."""
        state = self.state
        self._drop_unfinished()
        recovered = self.checkpointer.recover_if_possible()
        resumed_from = state.step
        if recovered is not None:
            logger.info(
                "resuming from %s at step %d (epoch %d)", recovered.path, state.step, state.epoch
            )
            if not state.restore_rng():  # a checkpoint written before generator states were kept
                seed_everything(self.seed + state.step)
        return resumed_from

    def _drop_unfinished(self) -> None:
        """Deletes checkpoints whose save or deletion a killed process interrupted.

        SpeechBrain writes a checkpoint's ``CKPT.yaml`` before its parameter files, and deletes
        old checkpoints file by file, so a kill at the wrong moment leaves a folder that is listed
        as the newest (or the best) checkpoint but lacks files. The recoverables are saved in
        order, ``state`` last: a checkpoint is complete when every file is there and
        ``state.ckpt`` parses.
        """
        names = list(self.checkpointer.recoverables)
        for ckpt in self.checkpointer.list_checkpoints():
            missing = [n for n in names if n not in ckpt.paramfiles]
            if not missing and TrainState.is_readable(ckpt.paramfiles["state"]):
                continue
            logger.warning(
                "deleting checkpoint %s: its save was interrupted (missing or unreadable: %s)",
                ckpt.path,
                ", ".join(missing) or "state",
            )
            shutil.rmtree(ckpt.path)

    def save(self, valid_wer: float | None, end_of_epoch: bool) -> None:
        """Checkpoints model, optimizer, scheduler and state (keeping the best by WER)."""
        self.state.capture_rng()
        meta: dict[str, Any] = {"step": self.state.step, "epoch": self.state.epoch}
        if valid_wer is not None:
            meta["WER"] = valid_wer
        self.checkpointer.save_and_keep_only(
            meta=meta,
            end_of_epoch=end_of_epoch,
            num_to_keep=1,
            min_keys=["WER"],
            importance_keys=[],
            verbosity=logging.DEBUG,
        )

    def validate(self, partial: bool) -> float | None:
        """Scores the validation data (when given); appends a history entry; returns the WER."""
        state = self.state
        report = None
        if self.valid_data is not None:
            report = evaluate_model(
                self.model,
                self.tokenizer,
                self.valid_data,
                batch_size=self.valid_batch_size,
                device=self.device,
            )
        entry = {
            "epoch": state.epoch,
            "step": state.step,
            "train_loss": state.epoch_loss_sum / max(state.epoch_loss_count, 1),
            "valid_wer": None if report is None else report.wer,
            "valid_cer": None if report is None else report.cer,
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_minutes": state.train_seconds / 60.0,
            "partial": partial,
        }
        state.history.append(entry)
        logger.info("validation %s", entry)
        return entry["valid_wer"]

    def out_of_budget(self) -> str | None:
        """``"max_steps"`` / ``"max_minutes"`` when that budget is spent, else None."""
        if self.max_steps is not None and self.state.step >= self.max_steps:
            return "max_steps"
        if self.max_minutes is not None and self.state.train_seconds >= self.max_minutes * 60.0:
            return "max_minutes"
        return None

    def _batches(self):
        # Starting a DataLoader draws its workers' base seed from torch's generator: drawn
        # on a fork (a function of the seeded state) so that a run resumed mid-epoch, which
        # starts one more loader, continues the same random stream as an uninterrupted one.
        with torch.random.fork_rng(devices=[]):
            return iterate_batches(
                self.train_data,
                self.batch_size,
                shuffle=True,
                seed=self.seed + self.state.epoch,
                skip=self.state.batch_in_epoch,
                durations=self.train_durations,
                num_workers=self.num_workers,
            )

    def _step(self, wavs: torch.Tensor, wav_lens: torch.Tensor, words: list[str]) -> float:
        """One optimizer step on a batch; returns the loss."""
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(
            device_type=self.device.type, dtype=torch.float16, enabled=self.use_amp
        ):
            log_probs, out_lens = self.model(wavs.to(self.device), wav_lens.to(self.device))
        loss = ctc_batch_loss(log_probs, out_lens, words, self.tokenizer)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"pretrain: non-finite loss at step {self.state.step}")
        self.scaler.scale(loss).backward()
        if self.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return loss.item()

    def train_epoch(self) -> str | None:
        """Trains the rest of the epoch in progress (checkpointing when due); returns the
        budget that stopped it early, or None when the epoch ran to its end."""
        state = self.state
        self.model.train()
        bar = progress_bar(
            self._batches(),
            total=None
            if self.steps_per_epoch is None
            else self.steps_per_epoch - state.batch_in_epoch,
            disable=not self.progress,
            desc=f"epoch {state.epoch + 1}/{self.max_epochs}",
            unit="batch",
            leave=False,
        )
        stop = None
        # Training time includes loading the batches, not validation or checkpointing.
        t0 = time.monotonic()
        for wavs, wav_lens, words, _ids in bar:
            loss = self._step(wavs, wav_lens, words)
            state.step += 1
            state.batch_in_epoch += 1
            state.epoch_loss_sum += loss
            state.epoch_loss_count += 1
            state.train_seconds += time.monotonic() - t0
            bar.set_postfix(loss=f"{loss:.3f}", step=state.step)
            due = (self.ckpt_every_steps and state.step % self.ckpt_every_steps == 0) or (
                self.ckpt_every_minutes is not None
                and time.monotonic() - self.last_ckpt_time >= self.ckpt_every_minutes * 60.0
            )
            if due:
                self.save(None, end_of_epoch=False)
                self.last_ckpt_time = time.monotonic()
            stop = self.out_of_budget()
            if stop:
                break
            t0 = time.monotonic()
        bar.close()
        return stop

    def end_epoch(self, stop: str | None) -> bool:
        """Validates, updates early stopping and checkpoints; True when patience ran out."""
        state = self.state
        epoch_done = stop is None
        wer = self.validate(partial=not epoch_done)
        improved = wer is not None and (state.best_wer is None or wer < state.best_wer)
        if improved:
            state.best_wer, state.bad_epochs = wer, 0
        elif epoch_done and wer is not None:
            state.bad_epochs += 1
        if epoch_done:
            state.epoch += 1
            state.batch_in_epoch = 0
            state.epoch_loss_sum, state.epoch_loss_count = 0.0, 0
        patience_out = self.patience > 0 and state.bad_epochs >= self.patience
        if patience_out:
            state.finished = True
        self.save(wer, end_of_epoch=epoch_done)
        self.last_ckpt_time = time.monotonic()
        return patience_out

    def run(self) -> str:
        """Trains with deterministic kernels (the caller's setting again afterwards); returns
        what stopped it: ``max_epochs``, ``max_steps``, ``max_minutes``, ``early_stopping`` or
        ``finished`` (a folder whose run had already ended)."""
        state = self.state
        with deterministic_algorithms():
            self.last_ckpt_time = time.monotonic()
            if state.finished:
                return "finished"
            while not state.finished and state.epoch < self.max_epochs:
                stop = self.out_of_budget()
                if stop:
                    return stop
                stop = self.train_epoch()
                if self.end_epoch(stop):
                    return "early_stopping"
                if stop:
                    return stop
        return "max_epochs"

    def restore_best(self) -> None:
        """Loads the weights of the checkpoint with the lowest validation WER, if any."""
        best = self.checkpointer.find_checkpoint(min_key="WER")
        if best is not None:
            self.model.load_state_dict(
                torch.load(best.paramfiles["model"], map_location=self.device)
            )
