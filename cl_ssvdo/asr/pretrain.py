"""Base pretraining (experience 0): train a CTC model on the first domain from scratch.

The recipe of ``design/default-benchmark.md``: AdamW (weight decay 0.01), linear warm-up then
cosine decay, gradient clipping, batches of utterances of similar duration, validation WER after
every epoch, early stopping on it. SpeechBrain's ``Checkpointer`` saves the model, optimizer,
scheduler and loop state at every epoch end and every ``ckpt_every_minutes`` / ``ckpt_every_steps``
inside an epoch, so a killed run started again with the same ``out_dir`` resumes from its last
checkpoint (same step counter, same position in the epoch's batch order), not from scratch.
At the end the best-validation checkpoint is loaded and exported as a pretrained folder.

Reproducibility: for a given seed, torch thread count, machine and commit the exported weights
are bit-identical from run to run. The model is initialised from ``seed``
(:func:`build_seeded_asr`; torch seeds its default generator at random in every new process,
so a model built before seeding differs between processes: the cause of issue 19), batch
order is a function of ``seed + epoch``, dropout draws from the seeded generator, torch runs
with ``use_deterministic_algorithms`` (warn-only) during training, and the generator states
(torch, CUDA, numpy, random) are checkpointed so a resumed run continues the same random
stream. Time only decides *when* checkpoints are written, never what is trained, unless
``max_minutes`` is set (a wall-clock budget: the step count then depends on the machine's
speed). Different thread counts or CPUs may round reductions differently, so bit-identity
across them is not promised; ``fingerprint.json`` in the exported folder tells bases apart.

Command line (a stream folder or manifest CSVs; see ``--help``)::

    python -m cl_ssvdo.asr.pretrain --stream STREAM_ROOT --preset small \\
        --out-dir outputs/base --max-minutes 10 --max-epochs 17 --threads 2

trains on the stream's first domain, exports ``outputs/base/pretrained`` and prints the test WER
of every domain (also in ``outputs/base/summary.json``). Set ``--max-epochs`` to about the
number of epochs that fit the time budget: the cosine schedule spans ``max_epochs`` epochs.

Must not depend on avalanche, mlflow or benchmarks.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import logging
import math
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from speechbrain.utils.checkpoints import (
    Checkpointer,
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)
from torch import nn
from tqdm.auto import tqdm

from .data import durations_of, is_item_dataset, iterate_batches, num_batches
from .evaluate import evaluate_model
from .fingerprint import stream_sha256
from .loss import ctc_batch_loss
from .model import CTCASR, build_asr
from .pretrained import export_pretrained
from .tokenizer import CharTokenizer, Tokenizer

logger = logging.getLogger(__name__)


def warmup_cosine(warmup_steps: int, total_steps: int, floor: float = 0.0):
    """LR multiplier: linear warm-up to 1 over ``warmup_steps``, cosine decay to ``floor``
    at ``total_steps`` (constant ``floor`` afterwards).

    >>> f = warmup_cosine(10, 110)
    >>> f(0), f(10), round(f(60), 3), f(110), f(500)
    (0.1, 1.0, 0.5, 0.0, 0.0)
    """

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(total_steps - warmup_steps, 1)
        progress = min((step - warmup_steps) / span, 1.0)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


@register_checkpoint_hooks
class TrainState:
    """The loop's counters, checkpointed as JSON next to the model and optimizer."""

    def __init__(self) -> None:
        self.step = 0
        self.epoch = 0  # index of the epoch in progress (= epochs completed)
        self.batch_in_epoch = 0  # batches of that epoch already trained
        self.epoch_loss_sum = 0.0
        self.epoch_loss_count = 0
        self.best_wer: float | None = None
        self.bad_epochs = 0
        self.train_seconds = 0.0
        self.history: list[dict[str, Any]] = []
        self.finished = False
        self.rng: dict[str, Any] | None = None  # generator states at the last save

    def capture_rng(self) -> None:
        """Stores the torch (and CUDA), numpy and ``random`` generator states."""
        self.rng = _rng_state()

    def restore_rng(self) -> bool:
        """Restores the states stored by :meth:`capture_rng`; False when there are none."""
        if not self.rng:
            return False
        _set_rng_state(self.rng)
        return True

    @mark_as_saver
    def save(self, path: str | Path) -> None:
        """Writes the state as JSON."""
        Path(path).write_text(json.dumps(vars(self)), encoding="utf-8")

    @mark_as_loader
    def load(self, path: str | Path, end_of_epoch: bool = False) -> None:
        """Reads the state written by :meth:`save`."""
        del end_of_epoch
        for key, value in json.loads(Path(path).read_text(encoding="utf-8")).items():
            setattr(self, key, value)


@dataclass
class PretrainResult:
    """What :func:`pretrain` did.

    ``history`` has one entry per validation: epoch, step, train_loss, valid_wer, valid_cer,
    lr, train_minutes (training time, validation excluded), partial (True for a validation at
    a mid-epoch stop).
    """

    out_dir: Path
    pretrained_dir: Path | None
    steps: int
    epochs_completed: int
    best_valid_wer: float | None
    stopped_by: str
    resumed_from_step: int
    train_minutes: float
    history: list[dict[str, Any]] = field(default_factory=list)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _b64(tensor: torch.Tensor) -> str:
    return base64.b64encode(tensor.numpy().tobytes()).decode("ascii")


def _unb64(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)


def _rng_state() -> dict[str, Any]:
    """JSON-serialisable states of every generator training draws from."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": _b64(torch.get_rng_state()),
        "numpy": [kind, keys.tolist(), pos, has_gauss, gauss],
        "random": [version, list(internal), gauss_next],
    }
    if torch.cuda.is_available():
        state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(_unb64(state["torch"]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["random"]
    random.setstate((version, tuple(internal), gauss_next))
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_unb64(s) for s in state["cuda"]])


@contextlib.contextmanager
def deterministic_algorithms() -> Iterator[None]:
    """``torch.use_deterministic_algorithms(True, warn_only=True)`` and deterministic cuDNN for
    the block, then the previous settings again.

    Warn-only: ops without a deterministic kernel (e.g. CUDA ``ctc_loss`` backward) warn
    instead of failing; on CPU the ops of these models are deterministic for a fixed thread
    count.

    >>> with deterministic_algorithms():
    ...     torch.are_deterministic_algorithms_enabled()
    True
    """
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous[2:]


def build_seeded_asr(preset: Any, vocab_size: int, seed: int) -> CTCASR:
    """:func:`build_asr` with torch's generator seeded first, so the initial weights are a
    function of ``seed`` (torch seeds its default generator at random in each new process).

    >>> from cl_ssvdo.asr.fingerprint import weights_sha256
    >>> a, b = build_seeded_asr("ci", 29, 0), build_seeded_asr("ci", 29, 0)
    >>> weights_sha256(a) == weights_sha256(b) != weights_sha256(build_seeded_asr("ci", 29, 1))
    True
    """
    torch.manual_seed(seed)
    return build_asr(preset, vocab_size)


def pretrain(
    model: nn.Module,
    tokenizer: Tokenizer,
    train_data: Any,
    valid_data: Any,
    *,
    out_dir: str | Path,
    max_epochs: int = 30,
    max_steps: int | None = None,
    max_minutes: float | None = None,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    warmup_steps: int = 300,
    schedule_steps: int | None = None,
    batch_size: int = 32,
    valid_batch_size: int | None = None,
    grad_clip: float = 5.0,
    early_stopping_patience: int = 3,
    ckpt_every_minutes: float | None = 2.0,
    ckpt_every_steps: int | None = None,
    device: str | torch.device | None = None,
    amp: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    export: bool = True,
    restore_best: bool = True,
    progress: bool = True,
    stream_sha: str | None = None,
) -> PretrainResult:
    """Trains ``model`` with CTC on ``train_data``, validating on ``valid_data`` every epoch.

    Arguments
    ---------
    model : nn.Module
        ``model(wavs, wav_lens) -> (log_probs, out_lens)``, e.g. :func:`build_asr`'s output.
    tokenizer : Tokenizer
        Encodes transcripts (blank 0).
    train_data, valid_data :
        Item datasets ``(wav, words, id)`` (batched by duration here, batch order reshuffled
        every epoch) or iterables of batches ``(wavs, wav_lens, words, ids)``. ``valid_data``
        may be None: no validation, no early stopping, the last weights are kept.
    out_dir : str or Path
        ``checkpoints/`` (resume state), ``pretrained/`` (exported best model),
        ``history.json``. Reusing a folder resumes its run.
    max_epochs, max_steps, max_minutes :
        Stop at whichever comes first (minutes count training time over all resumed runs,
        validation excluded).
    lr, weight_decay, warmup_steps, schedule_steps :
        AdamW; linear warm-up then cosine decay to 0 over ``schedule_steps`` (default:
        ``max_steps`` if given, else ``max_epochs`` epochs).
    batch_size, valid_batch_size :
        Utterances per batch.
    grad_clip : float
        Max gradient norm (0 disables).
    early_stopping_patience : int
        Epochs without a better validation WER before stopping (0 disables).
    ckpt_every_minutes, ckpt_every_steps :
        Mid-epoch checkpoint frequency (None disables either).
    device : str, optional
        Default: CUDA when available.
    amp : bool
        float16 autocast + GradScaler on CUDA (ignored on CPU).
    seed : int
        Seeds initialisation-independent randomness (batch order, dropout). Build ``model``
        with :func:`build_seeded_asr` so that its initial weights are seeded too.
    export : bool
        Export the final model to ``out_dir/pretrained`` (needs a ``CTCASR`` and ``CharTokenizer``).
    restore_best : bool
        Load the checkpoint with the lowest validation WER before exporting/returning.
    progress : bool
        tqdm progress bars.
    stream_sha : str, optional
        :func:`~cl_ssvdo.asr.fingerprint.stream_sha256` of the training stream, written to the
        exported folder's ``fingerprint.json``.

    Returns
    -------
    PretrainResult
    """
    if max_epochs < 1:
        raise ValueError(f"max_epochs must be >= 1, got {max_epochs}")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    if export and not (isinstance(model, CTCASR) and isinstance(tokenizer, CharTokenizer)):
        raise ValueError(
            "pretrain: export=True needs a CTCASR and a CharTokenizer "
            f"(got {type(model).__name__}, {type(tokenizer).__name__}); pass export=False"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    use_amp = amp and device.type == "cuda"
    _seed_everything(seed)
    model.to(device)

    train_durations = durations_of(train_data) if is_item_dataset(train_data) else None
    steps_per_epoch = num_batches(train_data, batch_size)
    if schedule_steps is None:
        if max_steps is not None:
            schedule_steps = max_steps
        elif steps_per_epoch is not None:
            schedule_steps = max_epochs * steps_per_epoch
        else:
            raise ValueError("schedule_steps is required when train_data has no length")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("pretrain: the model has no trainable parameters")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(warmup_steps, schedule_steps)
    )
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    state = TrainState()
    recoverables: dict[str, Any] = {
        "model": model,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "state": state,
    }
    if use_amp:
        recoverables["scaler"] = scaler
    checkpointer = Checkpointer(out / "checkpoints", recoverables=recoverables)
    recovered = checkpointer.recover_if_possible()
    resumed_from = state.step
    if recovered is not None:
        logger.info(
            "resuming from %s at step %d (epoch %d)", recovered.path, state.step, state.epoch
        )
        if not state.restore_rng():  # a checkpoint written before generator states were kept
            _seed_everything(seed + state.step)

    def save(valid_wer: float | None, end_of_epoch: bool) -> None:
        state.capture_rng()
        meta: dict[str, Any] = {"step": state.step, "epoch": state.epoch}
        if valid_wer is not None:
            meta["WER"] = valid_wer
        checkpointer.save_and_keep_only(
            meta=meta,
            end_of_epoch=end_of_epoch,
            num_to_keep=1,
            min_keys=["WER"],
            importance_keys=[],
            verbosity=logging.DEBUG,
        )

    def validate(partial: bool) -> float | None:
        report = None
        if valid_data is not None:
            report = evaluate_model(
                model,
                tokenizer,
                valid_data,
                batch_size=valid_batch_size or batch_size,
                device=device,
            )
        entry = {
            "epoch": state.epoch,
            "step": state.step,
            "train_loss": state.epoch_loss_sum / max(state.epoch_loss_count, 1),
            "valid_wer": None if report is None else report.wer,
            "valid_cer": None if report is None else report.cer,
            "lr": optimizer.param_groups[0]["lr"],
            "train_minutes": state.train_seconds / 60.0,
            "partial": partial,
        }
        state.history.append(entry)
        logger.info("validation %s", entry)
        return entry["valid_wer"]

    def out_of_budget() -> str | None:
        if max_steps is not None and state.step >= max_steps:
            return "max_steps"
        if max_minutes is not None and state.train_seconds >= max_minutes * 60.0:
            return "max_minutes"
        return None

    # Deterministic kernels while training (and validating); the caller's setting afterwards.
    with deterministic_algorithms():
        stopped_by = "max_epochs"
        last_ckpt_time = time.monotonic()
        if state.finished:
            stopped_by = "finished"
        while not state.finished and state.epoch < max_epochs:
            stop = out_of_budget()
            if stop:
                stopped_by = stop
                break
            model.train()
            # Starting a DataLoader draws its workers' base seed from torch's generator: drawn
            # on a fork (a function of the seeded state) so that a run resumed mid-epoch, which
            # starts one more loader, continues the same random stream as an uninterrupted one.
            with torch.random.fork_rng(devices=[]):
                batches = iterate_batches(
                    train_data,
                    batch_size,
                    shuffle=True,
                    seed=seed + state.epoch,
                    skip=state.batch_in_epoch,
                    durations=train_durations,
                    num_workers=num_workers,
                )
            bar = tqdm(
                batches,
                total=None if steps_per_epoch is None else steps_per_epoch - state.batch_in_epoch,
                disable=not progress,
                desc=f"epoch {state.epoch + 1}/{max_epochs}",
                leave=False,
            )
            # Training time includes loading the batches, not validation or checkpointing.
            t0 = time.monotonic()
            for wavs, wav_lens, words, _ids in bar:
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                    log_probs, out_lens = model(wavs.to(device), wav_lens.to(device))
                loss = ctc_batch_loss(log_probs, out_lens, words, tokenizer)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"pretrain: non-finite loss at step {state.step}")
                scaler.scale(loss).backward()
                if grad_clip > 0:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(params, grad_clip)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                state.step += 1
                state.batch_in_epoch += 1
                state.epoch_loss_sum += loss.item()
                state.epoch_loss_count += 1
                state.train_seconds += time.monotonic() - t0
                bar.set_postfix(loss=f"{loss.item():.3f}", step=state.step)
                due = (ckpt_every_steps and state.step % ckpt_every_steps == 0) or (
                    ckpt_every_minutes is not None
                    and time.monotonic() - last_ckpt_time >= ckpt_every_minutes * 60.0
                )
                if due:
                    save(None, end_of_epoch=False)
                    last_ckpt_time = time.monotonic()
                stop = out_of_budget()
                if stop:
                    break
                t0 = time.monotonic()
            bar.close()
            epoch_done = stop is None
            wer = validate(partial=not epoch_done)
            improved = wer is not None and (state.best_wer is None or wer < state.best_wer)
            if improved:
                state.best_wer, state.bad_epochs = wer, 0
            elif epoch_done and wer is not None:
                state.bad_epochs += 1
            if epoch_done:
                state.epoch += 1
                state.batch_in_epoch = 0
                state.epoch_loss_sum, state.epoch_loss_count = 0.0, 0
            patience_out = (
                early_stopping_patience > 0 and state.bad_epochs >= early_stopping_patience
            )
            if patience_out:
                state.finished = True
            save(wer, end_of_epoch=epoch_done)
            last_ckpt_time = time.monotonic()
            if patience_out:
                stopped_by = "early_stopping"
                break
            if stop:
                stopped_by = stop
                break

    best = checkpointer.find_checkpoint(min_key="WER") if restore_best else None
    if best is not None:
        model.load_state_dict(torch.load(best.paramfiles["model"], map_location=device))
    pretrained_dir = None
    if export:
        pretrained_dir = export_pretrained(
            model, tokenizer, out / "pretrained", stream_sha=stream_sha
        )
    (out / "history.json").write_text(json.dumps(state.history, indent=2), encoding="utf-8")
    return PretrainResult(
        out_dir=out,
        pretrained_dir=pretrained_dir,
        steps=state.step,
        epochs_completed=state.epoch,
        best_valid_wer=state.best_wer,
        stopped_by=stopped_by,
        resumed_from_step=resumed_from,
        train_minutes=state.train_seconds / 60.0,
        history=list(state.history),
    )


def _stream_manifests(root: Path) -> tuple[list[str], dict[str, Path]]:
    """Domains of ``<root>/stream.json`` and the manifest path pattern (no benchmarks import)."""
    meta_file = root / "stream.json"
    if not meta_file.is_file():
        raise FileNotFoundError(f"--stream {root}: no stream.json")
    domains = json.loads(meta_file.read_text(encoding="utf-8")).get("domains") or []
    if not domains:
        raise ValueError(f"{meta_file}: field 'domains' is empty")
    return domains, {d: root / "manifests" / f"{d}_{{split}}.csv" for d in domains}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command-line entry point over manifest CSVs or a stream folder.

    With ``--stream ROOT`` the first domain's train/valid manifests are used and, after
    training, the exported model is scored on every domain's test manifest (the base row of the
    WER matrix); the printed JSON then has ``test_wer`` per domain.
    """
    from .data import concat_manifests
    from .evaluate import evaluate_model
    from .model import count_parameters

    parser = argparse.ArgumentParser(
        prog="python -m cl_ssvdo.asr.pretrain", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--stream", type=Path, default=None, help="stream folder (stream.json)")
    parser.add_argument("--train", nargs="+", default=None, help="training manifest CSV(s)")
    parser.add_argument("--valid", nargs="+", default=None, help="validation manifest CSV(s)")
    parser.add_argument("--out-dir", required=True, type=Path)
    parser.add_argument(
        "--preset",
        default="small",
        help='ci | small | medium | large | crdnn, or JSON like {"base": "small", "num_layers": 6}',
    )
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--max-minutes", type=float, default=None)
    parser.add_argument("--schedule-steps", type=int, default=None)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup-steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--ckpt-every-steps", type=int, default=None)
    parser.add_argument("--ckpt-every-minutes", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    tests: dict[str, Path] = {}
    if args.stream is not None:
        domains, pattern = _stream_manifests(args.stream)
        first = pattern[domains[0]]
        args.train = args.train or [str(first).format(split="train")]
        args.valid = args.valid or [str(first).format(split="valid")]
        tests = {d: Path(str(pattern[d]).format(split="test")) for d in domains}
    if not args.train or not args.valid:
        parser.error("give --stream, or both --train and --valid")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    tokenizer = CharTokenizer()
    preset = json.loads(args.preset) if args.preset.lstrip().startswith("{") else args.preset
    model = build_seeded_asr(preset, tokenizer.vocab_size, args.seed)
    logger.info("preset %s: %d parameters", args.preset, count_parameters(model))
    result = pretrain(
        model,
        tokenizer,
        concat_manifests(args.train),
        concat_manifests(args.valid),
        out_dir=args.out_dir,
        max_epochs=args.max_epochs,
        max_steps=args.max_steps,
        max_minutes=args.max_minutes,
        schedule_steps=args.schedule_steps,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        batch_size=args.batch_size,
        early_stopping_patience=args.patience,
        ckpt_every_steps=args.ckpt_every_steps,
        ckpt_every_minutes=args.ckpt_every_minutes,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
        stream_sha=stream_sha256(args.stream) if args.stream is not None else None,
    )
    summary: dict[str, Any] = {
        k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result).items()
    }
    summary["parameters"] = count_parameters(model)
    if tests:
        summary["test_wer"] = {
            d: evaluate_model(model, tokenizer, concat_manifests([m]), batch_size=32).wer
            for d, m in tests.items()
        }
    (args.out_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=2))
    return summary


if __name__ == "__main__":
    main()
