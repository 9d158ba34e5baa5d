"""Avalanche ``SupervisedTemplate`` for speech recognition on padded speech batches.

A minibatch is a ``cl_ssvdo.data.SpeechBatch`` ``(wavs [B, T], wav_lens [B] relative,
words: list[str], ids: list[str])``. For a CTC model ``mb_output`` is
``(log_probs [B, T', V], out_lens [B])``; a model following :class:`ASRModel` (e.g. the
``whisper`` seq2seq kind) defines its own output, loss and decoding.

Imports cl_ssvdo and avalanche; never mlflow or experiments.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any, Protocol, runtime_checkable

import torch
from avalanche.core import BasePlugin
from avalanche.evaluation.metrics import loss_metrics
from avalanche.training.plugins import EvaluationPlugin
from avalanche.training.templates import SupervisedTemplate
from torch import nn
from torch.utils.data import DataLoader

from cl_ssvdo.asr.decode import Decoder, make_decoder
from cl_ssvdo.asr.loss import ctc_batch_loss
from cl_ssvdo.asr.tokenizer import Tokenizer

from .metrics.wer import wer_metrics

__all__ = ["ASRModel", "ASRTemplate", "CTCCriterion", "CTCTemplate", "default_ctc_evaluator"]


@runtime_checkable
class ASRModel(Protocol):
    """A recogniser that defines its loss and decoding (``cl_ssvdo.asr.whisper.WhisperSeq2Seq``).

    ``forward(wavs [B, T], wav_lens [B]) -> output`` (any object), ``loss(output, words) ->
    scalar tensor``, ``transcribe(output, references=None) -> list[str]`` (``references`` lets
    a scorer pick between equivalent spellings such as digits vs number words). Models without
    ``loss``/``transcribe`` are CTC models: ``(log_probs, out_lens)`` + :class:`CTCCriterion`.
    """

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> Any: ...

    def loss(self, output: Any, words: Sequence[str]) -> torch.Tensor: ...

    def transcribe(self, output: Any, references: Sequence[str] | None = None) -> list[str]: ...


class CTCCriterion(nn.Module):
    """``criterion((log_probs, out_lens), words) -> loss``: mean CTC loss, blank 0.

    Transcripts are tokenized here, so empty transcripts are handled (zero-length targets).
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        super().__init__()
        self.tokenizer = tokenizer

    def forward(
        self, mb_output: tuple[torch.Tensor, torch.Tensor], words: Sequence[str]
    ) -> torch.Tensor:
        log_probs, out_lens = mb_output
        return ctc_batch_loss(log_probs, out_lens, words, self.tokenizer)


def default_ctc_evaluator() -> EvaluationPlugin:
    """Loss (epoch/experience/stream) and WER/CER (experience/stream); no loggers, no accuracy."""
    return EvaluationPlugin(
        loss_metrics(epoch=True, experience=True, stream=True),
        wer_metrics(experience=True, stream=True, cer=True),
        loggers=[],
    )


class CTCTemplate(SupervisedTemplate):
    """CTC training and evaluation of a speech recogniser inside Avalanche.

    Arguments
    ---------
    model : nn.Module
        ``model(wavs, wav_lens) -> (log_probs, out_lens)`` (e.g. ``cl_ssvdo.asr.CTCASR``).
    tokenizer : Tokenizer
        Encodes ``mb_words`` for the loss and decodes hypotheses (blank 0).
    lr, weight_decay : float
        AdamW settings of the per-experience optimizer.
    train_mb_size, train_epochs, eval_mb_size :
        As in Avalanche.
    device : str, optional
        Default: CUDA when available, else CPU.
    plugins : list, optional
        Avalanche plugins.
    evaluator : EvaluationPlugin, optional
        Default :func:`default_ctc_evaluator` (loss + WER/CER, no accuracy).
    grad_clip : float
        Max global gradient norm of the trainable parameters (0 disables).
    amp : bool
        Autocast on CUDA (``amp_dtype``; float16 also gets a ``GradScaler``); ignored on CPU.
    amp_dtype : str
        ``"float16"`` (default) or ``"bfloat16"`` (no loss scaling, so no host sync per step).
    max_steps_per_exp : int, optional
        Stop an experience after this many optimizer steps (budgets by steps, not epochs).
    decoder : callable, optional
        ``decoder(log_probs, out_lens) -> list[str]``; default greedy
        (``cl_ssvdo.asr.make_decoder(tokenizer, beam_size)`` gives beam search).
    optimizer_factory : callable, optional
        ``factory(params) -> Optimizer``; default ``AdamW(params, lr, weight_decay)``.
    num_workers : int
        DataLoader workers for training.
    **kwargs :
        Forwarded to ``SupervisedTemplate`` (e.g. ``eval_every``).

    Optimizer lifecycle (plugins rely on this)
    ------------------------------------------
    The optimizer is built over the parameters with ``requires_grad`` only, fresh (no state)
    for every training experience. Avalanche 0.6.0's ``BaseSGDTemplate._before_training_exp``
    runs, in this order: train dataset adaptation, ``make_train_dataloader``,
    ``check_model_and_optimizer`` (``model_adaptation`` + ``make_optimizer``) and only then
    the plugins' ``before_training_exp``. So a plugin that changes the trainable set there
    (SSVD-O injects adapters and freezes the base) would leave a stale optimizer. This
    template therefore compares, after all plugins' ``before_training_exp``, the trainable
    parameters with the optimizer's and rebuilds the optimizer when they differ. A plugin that
    changes the trainable set at any other point calls :meth:`reset_optimizer` (public;
    calling it from ``before_training_exp`` is also fine).

    Minibatch accessors: :attr:`mb_wavs`, :attr:`mb_wav_lens`, :attr:`mb_words`,
    :attr:`mb_ids`, :attr:`mb_hypotheses` (decoded ``mb_output``, cached per iteration).
    ``mb_x`` is the waveforms, ``mb_y`` the relative lengths (one entry per utterance, which is
    what Avalanche's loss metrics count), ``mb_task_id`` is 0.

    Example
    -------
    A one-domain stream of three utterances and an untrained ``ci`` model, one step per
    experience (a real run passes a pretrained model and the stream of
    :func:`benchmarks.stream.make_benchmark`):

    >>> import tempfile
    >>> from benchmarks.stream import make_benchmark
    >>> from benchmarks.synthetic import generate_stream
    >>> from cl_ssvdo.asr import CharTokenizer, build_asr
    >>> from strategies import WERMatrix
    >>> sizes = {"preset": "tiny", "domains": ["adult"], "max_train_voices": 1,
    ...          "max_test_voices": 1, "train_per_voice": 1, "valid_per_voice": 1,
    ...          "test_per_voice": 1}
    >>> cache = tempfile.TemporaryDirectory()
    >>> bench = make_benchmark(generate_stream(sizes, cache.name, progress=False))
    >>> tokenizer = CharTokenizer()
    >>> _ = torch.manual_seed(0)
    >>> matrix = WERMatrix()
    >>> strategy = CTCTemplate(model=build_asr("ci", tokenizer.vocab_size), tokenizer=tokenizer,
    ...                        train_mb_size=8, eval_mb_size=16, max_steps_per_exp=1,
    ...                        device="cpu", plugins=[matrix])
    >>> _ = strategy.eval(bench.test_stream)  # row 0 of the WER matrix: the base model
    >>> for exp in bench.train_stream:
    ...     _ = strategy.train(exp)
    ...     _ = strategy.eval(bench.test_stream)
    >>> matrix.wer.shape, strategy.exp_steps
    ((2, 1), 1)
    >>> cache.cleanup()
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        tokenizer: Tokenizer,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        train_mb_size: int = 16,
        train_epochs: int = 1,
        eval_mb_size: int = 16,
        device: str | torch.device | None = None,
        plugins: Sequence[BasePlugin] | None = None,
        evaluator: EvaluationPlugin | Callable[[], EvaluationPlugin] | None = None,
        grad_clip: float = 5.0,
        amp: bool = False,
        amp_dtype: str = "float16",
        max_steps_per_exp: int | None = None,
        decoder: Decoder | None = None,
        optimizer_factory: Callable[[list[nn.Parameter]], torch.optim.Optimizer] | None = None,
        num_workers: int = 0,
        **kwargs: Any,
    ) -> None:
        if lr <= 0:
            raise ValueError(f"CTCTemplate: lr must be positive, got {lr}")
        if grad_clip < 0:
            raise ValueError(f"CTCTemplate: grad_clip must be >= 0, got {grad_clip}")
        if max_steps_per_exp is not None and max_steps_per_exp < 1:
            raise ValueError(
                f"CTCTemplate: max_steps_per_exp must be >= 1, got {max_steps_per_exp}"
            )
        if amp_dtype not in ("float16", "bfloat16"):
            raise ValueError(
                f"CTCTemplate: amp_dtype must be float16 or bfloat16, got {amp_dtype!r}"
            )
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.tokenizer = tokenizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.grad_clip = grad_clip
        self.amp = bool(amp) and device.type == "cuda"
        self.amp_dtype = torch.bfloat16 if amp_dtype == "bfloat16" else torch.float16
        self.max_steps_per_exp = max_steps_per_exp
        self.decoder = decoder or make_decoder(tokenizer)
        self.num_workers = num_workers
        self._optimizer_factory = optimizer_factory or (
            lambda params: torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        )
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=self.amp and self.amp_dtype == torch.float16
        )
        self.exp_steps = 0
        self._hyp_cache: tuple[Any, list[str]] | None = None
        model = model.to(device)
        super().__init__(
            model=model,
            optimizer=self._build_optimizer(model),
            criterion=CTCCriterion(tokenizer),
            train_mb_size=train_mb_size,
            train_epochs=train_epochs,
            eval_mb_size=eval_mb_size,
            device=device,
            plugins=list(plugins or []),
            evaluator=evaluator if evaluator is not None else default_ctc_evaluator,
            **kwargs,
        )

    # ------------------------------------------------------------------ minibatch accessors
    @property
    def mb_wavs(self) -> torch.Tensor:
        """[B, T] waveforms of the current minibatch."""
        return self.mbatch[0]

    @property
    def mb_wav_lens(self) -> torch.Tensor:
        """[B] relative lengths."""
        return self.mbatch[1]

    @property
    def mb_words(self) -> list[str]:
        """B reference transcripts."""
        return list(self.mbatch[2])

    @property
    def mb_ids(self) -> list[str]:
        """B utterance IDs."""
        return list(self.mbatch[3])

    @property
    def mb_task_id(self) -> int:
        """Task label: streams here carry none, so always 0."""
        return 0

    @property
    def mb_hypotheses(self) -> list[str]:
        """Decoded ``mb_output`` (greedy unless another ``decoder`` was given), cached."""
        # Keyed on the output object itself (not its id, which a new output may reuse).
        if self._hyp_cache is None or self._hyp_cache[0] is not self.mb_output:
            if self.model_defines_loss:
                hyps = self.model.transcribe(self.mb_output, references=self.mb_words)
            else:
                log_probs, out_lens = self.mb_output
                hyps = self.decoder(log_probs, out_lens)
            self._hyp_cache = (self.mb_output, hyps)
        return self._hyp_cache[1]

    def _unpack_minibatch(self) -> None:
        """Moves the tensors of the batch to the device; strings stay on the host."""
        mbatch = self.mbatch
        if mbatch is None or len(mbatch) < 4:
            raise ValueError(
                "CTCTemplate: a minibatch must be (wavs, wav_lens, words, ids); got "
                f"{type(mbatch).__name__} of length {0 if mbatch is None else len(mbatch)}. "
                "Did the dataset lose its collate_fn (cl_ssvdo.data.collate_speech)?"
            )
        self.mbatch = [
            x.to(self.device, non_blocking=True) if isinstance(x, torch.Tensor) else x
            for x in mbatch
        ]

    # ------------------------------------------------------------------ data
    def make_train_dataloader(
        self,
        num_workers: int | None = None,
        shuffle: bool = True,
        pin_memory: bool | None = None,
        persistent_workers: bool = False,
        drop_last: bool = False,
        **kwargs: Any,
    ) -> None:
        """A shuffling DataLoader that collates with the dataset's own ``collate_fn``.

        Avalanche 0.6.0 drops the collate for datasets without task labels (issue 1531).
        """
        collate = getattr(self.adapted_dataset, "collate_fn", None)
        if collate is None:
            raise ValueError(
                "CTCTemplate: the training dataset has no collate_fn; build the stream with "
                "benchmarks.stream.make_benchmark (AvalancheDataset(..., collate_fn=collate_speech))"
            )
        workers = self.num_workers if num_workers is None else num_workers
        self.dataloader = DataLoader(
            self.adapted_dataset,
            batch_size=self.train_mb_size,
            shuffle=shuffle,
            num_workers=workers,
            collate_fn=collate,
            drop_last=drop_last,
            pin_memory=self.device.type == "cuda" if pin_memory is None else pin_memory,
            persistent_workers=persistent_workers and workers > 0,
        )

    # ------------------------------------------------------------------ optimizer
    def _trainable(self, model: nn.Module | None = None) -> list[nn.Parameter]:
        return [p for p in (model or self.model).parameters() if p.requires_grad]

    def _build_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        params = self._trainable(model)
        if not params:
            raise ValueError("CTCTemplate: the model has no parameter with requires_grad=True")
        return self._optimizer_factory(params)

    def make_optimizer(self, **kwargs: Any) -> None:
        """A fresh optimizer over the parameters that currently require grad (state dropped)."""
        self.optimizer = self._build_optimizer(self.model)

    def reset_optimizer(self) -> None:
        """Public hook for plugins that change the trainable set: rebuild the optimizer now."""
        self.make_optimizer()

    def optimizer_is_stale(self) -> bool:
        """True when the optimizer's parameters differ from the model's trainable parameters."""
        in_opt = {id(p) for group in self.optimizer.param_groups for p in group["params"]}
        return in_opt != {id(p) for p in self._trainable()}

    def check_model_and_optimizer(self, **kwargs: Any) -> None:
        """Model adaptation, then a fresh optimizer for the experience."""
        self.model = self.model_adaptation()
        self.make_optimizer()

    def _before_training_exp(self, **kwargs: Any) -> None:
        self.exp_steps = 0
        self._stop_training = False
        super()._before_training_exp(**kwargs)  # ... make_optimizer, then plugins
        if self.optimizer_is_stale():
            self.make_optimizer()

    # ------------------------------------------------------------------ computation
    @property
    def model_defines_loss(self) -> bool:
        """True when the model follows :class:`ASRModel` (own loss and decoding)."""
        return callable(getattr(self.model, "loss", None)) and callable(
            getattr(self.model, "transcribe", None)
        )

    def _autocast(self):
        if self.amp:
            return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)
        return nullcontext()

    def forward(self) -> Any:
        """The model's output on the current minibatch (CTC: ``(log_probs, out_lens)``)."""
        with self._autocast():
            return self.model(self.mb_wavs, self.mb_wav_lens)

    def criterion(self) -> torch.Tensor:
        """Mean loss of ``mb_output`` against ``mb_words``: the model's own (:class:`ASRModel`,
        under autocast: a seq2seq decoder runs here) or CTC."""
        if self.model_defines_loss:
            with self._autocast():
                return self.model.loss(self.mb_output, self.mb_words)
        return self._criterion(self.mb_output, self.mb_words)

    def backward(self) -> None:
        """Backward pass (loss scaled when AMP is on)."""
        self.scaler.scale(self.loss).backward(retain_graph=self.retain_graph)

    def optimizer_step(self) -> None:
        """Gradient clipping over the trainable parameters, then the (scaled) optimizer step."""
        if self.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self._trainable(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def training_epoch(self, **kwargs: Any) -> None:
        """Avalanche's SGD epoch, stopping the experience after ``max_steps_per_exp`` steps."""
        for self.mbatch in self.dataloader:  # noqa: B020 (Avalanche idiom)
            if self._stop_training:
                break
            self._unpack_minibatch()
            self._before_training_iteration(**kwargs)

            self.optimizer.zero_grad(set_to_none=True)
            self.loss = self._make_empty_loss()

            self._before_forward(**kwargs)
            self.mb_output = self.forward()
            self._after_forward(**kwargs)

            self.loss += self.criterion()

            self._before_backward(**kwargs)
            self.backward()
            self._after_backward(**kwargs)

            self._before_update(**kwargs)
            self.optimizer_step()
            self._after_update(**kwargs)

            self._after_training_iteration(**kwargs)
            self.exp_steps += 1
            if self.max_steps_per_exp is not None and self.exp_steps >= self.max_steps_per_exp:
                self.stop_training()
                break


#: The template under its model-agnostic name (CTC models and :class:`ASRModel` models alike).
ASRTemplate = CTCTemplate
