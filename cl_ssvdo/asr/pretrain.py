"""Base pretraining (experience 0): train a CTC model on the first domain from scratch.

The recipe of ``docs/base-model.md``: AdamW (weight decay 0.01), linear warm-up then
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

The loop is :class:`~cl_ssvdo.asr.pretrain_loop.PretrainLoop`, its checkpointed state
:mod:`cl_ssvdo.asr.train_state`, the seeding :mod:`cl_ssvdo.asr.reproducibility`.

Must not depend on avalanche, mlflow or benchmarks.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cl_ssvdo.data import StreamInfo, concat_manifests

from .evaluate import evaluate_model, run_cli
from .fingerprint import stream_sha256
from .model import CTCASR, build_asr, count_parameters
from .pretrain_loop import PretrainLoop
from .pretrained import export_pretrained
from .reproducibility import seed_everything
from .tokenizer import CharTokenizer, Tokenizer

__all__ = ["PretrainResult", "build_seeded_asr", "main", "pretrain"]

logger = logging.getLogger(__name__)


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
    seed_everything(seed)
    model.to(device)
    loop = PretrainLoop(
        model,
        tokenizer,
        train_data,
        valid_data,
        checkpoint_dir=out / "checkpoints",
        device=device,
        use_amp=amp and device.type == "cuda",
        max_epochs=max_epochs,
        max_steps=max_steps,
        max_minutes=max_minutes,
        lr=lr,
        weight_decay=weight_decay,
        warmup_steps=warmup_steps,
        schedule_steps=schedule_steps,
        batch_size=batch_size,
        valid_batch_size=valid_batch_size,
        grad_clip=grad_clip,
        early_stopping_patience=early_stopping_patience,
        ckpt_every_minutes=ckpt_every_minutes,
        ckpt_every_steps=ckpt_every_steps,
        seed=seed,
        num_workers=num_workers,
        progress=progress,
    )
    stopped_by = loop.run()
    if restore_best:
        loop.restore_best()
    pretrained_dir = None
    if export:
        pretrained_dir = export_pretrained(
            model, tokenizer, out / "pretrained", stream_sha=stream_sha
        )
    state = loop.state
    (out / "history.json").write_text(json.dumps(state.history, indent=2), encoding="utf-8")
    return PretrainResult(
        out_dir=out,
        pretrained_dir=pretrained_dir,
        steps=state.step,
        epochs_completed=state.epoch,
        best_valid_wer=state.best_wer,
        stopped_by=stopped_by,
        resumed_from_step=loop.resumed_from,
        train_minutes=state.train_seconds / 60.0,
        history=list(state.history),
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command-line entry point over manifest CSVs or a stream folder.

    With ``--stream ROOT`` the first domain's train/valid manifests are used and, after
    training, the exported model is scored on every domain's test manifest (the base row of the
    WER matrix); the printed JSON then has ``test_wer`` per domain.
    """
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
    reading: dict[str, Any] = {}  # how the stream's audio is read (rate, resampling)
    if args.stream is not None:
        info = StreamInfo.load(args.stream)
        first = info.domains[0]
        args.train = args.train or [str(info.manifest(first, "train"))]
        args.valid = args.valid or [str(info.manifest(first, "valid"))]
        tests = {d: info.manifest(d, "test") for d in info.domains}
        reading = {"sample_rate": info.sample_rate, "resample": info.resample}
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
        concat_manifests(args.train, **reading),
        concat_manifests(args.valid, **reading),
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
            d: evaluate_model(model, tokenizer, concat_manifests([m], **reading), batch_size=32).wer
            for d, m in tests.items()
        }
    (args.out_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=2))
    return summary


if __name__ == "__main__":
    run_cli(main)
