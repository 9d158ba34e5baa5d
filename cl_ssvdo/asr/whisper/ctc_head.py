"""``whisper-ctc`` model kind: the pretrained Whisper encoder + a CTC head over ``CharTokenizer``.

Same contract as ``cl_ssvdo.asr.CTCASR``: ``forward(wavs [B, T], wav_lens [B] relative) ->
(log_probs [B, N, V], out_lens [B] relative to N)``, so the CTC template, its decoders and the
CTC continual-learning plugins apply unchanged. ``N = audio_ctx`` encoder positions (20 ms
each); ``out_lens`` is the share of the window the audio covers.

As in SpeechBrain's Whisper-encoder CTC recipes, the head (a linear layer, optionally preceded
by one hidden layer) is first trained on the base domain with the encoder frozen
(:func:`train_ctc_head`); the base folder keeps only the head (``ctc_head.pt``), the encoder
comes from the Whisper folder.

>>> import tempfile, torch
>>> from cl_ssvdo.asr.whisper.tiny import save_tiny_whisper
>>> model = WhisperCTC.from_folder(save_tiny_whisper(tempfile.mkdtemp()), vocab_size=30,
...                                audio_ctx=50)
>>> log_probs, out_lens = model(torch.zeros(2, 8000), torch.tensor([1.0, 0.5]))
>>> tuple(log_probs.shape), out_lens.tolist()
((2, 50, 30), [0.5, 0.25])
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn

from .model import WhisperBackbone

__all__ = ["WhisperCTC", "load_ctc_head", "save_ctc_head", "train_ctc_head"]

HEAD_FILE = "ctc_head.pt"


class WhisperCTC(nn.Module):
    """Whisper encoder + CTC head.

    Arguments
    ---------
    backbone : WhisperBackbone
        Its decoder is not used (load with ``encoder_only=True`` to drop it).
    vocab_size : int
        CTC output size (blank 0), e.g. ``CharTokenizer().vocab_size``.
    hidden : int
        Width of a hidden ``Linear + LeakyReLU`` layer before the output (0: none).
    """

    kind = "whisper-ctc"

    def __init__(self, backbone: WhisperBackbone, vocab_size: int, hidden: int = 0) -> None:
        super().__init__()
        self.backbone = backbone
        d_model = int(backbone.hf.config.d_model)
        layers: list[nn.Module] = []
        if hidden:
            layers += [nn.Linear(d_model, hidden), nn.LeakyReLU()]
        layers.append(nn.Linear(hidden or d_model, vocab_size))
        self.head = nn.Sequential(*layers)
        self.vocab_size = int(vocab_size)
        self.hidden = int(hidden)

    @classmethod
    def from_folder(
        cls,
        folder: str | os.PathLike,
        vocab_size: int,
        audio_ctx: int | None = None,
        hidden: int = 0,
    ) -> WhisperCTC:
        backbone = WhisperBackbone.from_folder(folder, audio_ctx=audio_ctx, encoder_only=True)
        return cls(backbone, vocab_size, hidden)

    def forward(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.backbone.encode(wavs, wav_lens)
        log_probs = self.head(enc).float().log_softmax(-1)
        covered = wav_lens.float() * wavs.shape[1] / self.backbone.window_samples
        return log_probs, covered.clamp(max=1.0)


def save_ctc_head(model: WhisperCTC, folder: str | os.PathLike, meta: dict) -> Path:
    """Write ``<folder>/ctc_head.pt`` (head weights + ``meta``: Whisper folder, window, vocab)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / HEAD_FILE
    tmp = path.with_suffix(".tmp")
    torch.save({"head": model.head.state_dict(), "hidden": model.hidden, **meta}, tmp)
    os.replace(tmp, path)
    return path


def load_ctc_head(model: WhisperCTC, folder: str | os.PathLike) -> dict:
    """Load the head saved by :func:`save_ctc_head`; returns its metadata."""
    path = Path(folder) / HEAD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no trained CTC head")
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        model.head.load_state_dict(state["head"])
    except RuntimeError as exc:
        raise ValueError(f"{path}: head does not fit the model ({exc})") from exc
    return {k: v for k, v in state.items() if k != "head"}


def train_ctc_head(
    model: WhisperCTC,
    batches: Iterable,
    loss_fn: Callable[[tuple[torch.Tensor, torch.Tensor], list[str]], torch.Tensor],
    *,
    steps: int,
    lr: float = 1e-3,
    device: str | torch.device = "cpu",
    progress: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train the head only (encoder frozen, in eval mode) for ``steps`` minibatches.

    ``batches`` yields ``(wavs, wav_lens, words, ...)`` and is cycled; ``loss_fn`` is the CTC
    loss (e.g. ``cl_ssvdo.asr.loss.ctc_batch_loss`` bound to a tokenizer). Returns the losses.
    """
    model.to(device)
    flags = {n: p.requires_grad for n, p in model.backbone.named_parameters()}
    model.backbone.requires_grad_(False)
    model.backbone.eval()
    model.head.train()
    opt = torch.optim.AdamW(model.head.parameters(), lr=lr)
    losses: list[float] = []
    started = time.perf_counter()
    try:
        while len(losses) < steps:
            seen = False
            for batch in batches:
                seen = True
                wavs, wav_lens, words = batch[0].to(device), batch[1].to(device), list(batch[2])
                with torch.no_grad():
                    enc = model.backbone.encode(wavs, wav_lens)
                log_probs = model.head(enc).float().log_softmax(-1)
                covered = (wav_lens.float() * wavs.shape[1] / model.backbone.window_samples).clamp(
                    max=1.0
                )
                loss = loss_fn((log_probs, covered), words)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss))
                if progress is not None:
                    progress(len(losses), time.perf_counter() - started)
                if len(losses) >= steps:
                    break
            if not seen:
                raise ValueError("train_ctc_head: no training batches")
    finally:
        for n, p in model.backbone.named_parameters():
            p.requires_grad_(flags[n])
    return losses
