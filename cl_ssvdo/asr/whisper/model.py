"""Whisper backbone shared by the ``whisper`` (seq2seq) and ``whisper-ctc`` model kinds.

A local HF Whisper folder (``config.json``, weights, tokenizer, feature extractor; e.g. from
``cl-ssvdo models export``) is loaded through SpeechBrain's Whisper integration
(``speechbrain.integrations.huggingface.whisper.Whisper``), which gives the HF model, its
tokenizer and the mel filter bank. Two pieces are done here instead (see docs/whisper.md):

- log-mel features normalised **per utterance** (SpeechBrain takes the maximum over the whole
  batch, so a hypothesis would depend on which utterances share its batch);
- the encoder forward with a reduced audio context (``audio_ctx``: only the first N of the 1500
  encoder positions, i.e. ``N * 320`` samples = ``N / 50`` s of audio, with the positional
  embedding sliced to N rows). ``transformers``' ``WhisperEncoder`` refuses anything but 30 s.

Shapes: ``wavs [B, T]`` at 16 kHz, ``wav_lens [B]`` relative to ``T`` (SpeechBrain convention),
``mel [B, 80, 2N]``, encoder states ``[B, N, d_model]``.

Imports torch, speechbrain and transformers only.

>>> import tempfile, torch
>>> from cl_ssvdo.asr.whisper.tiny import save_tiny_whisper
>>> folder = save_tiny_whisper(tempfile.mkdtemp())
>>> backbone = WhisperBackbone.from_folder(folder, audio_ctx=50)
>>> backbone.encode(torch.zeros(2, 8000), torch.ones(2)).shape
torch.Size([2, 50, 16])
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "SAMPLES_PER_POSITION",
    "WhisperAudioTooLong",
    "WhisperBackbone",
    "WhisperFolderError",
    "load_speechbrain_whisper",
]

SAMPLE_RATE = 16000
HOP = 160
SAMPLES_PER_POSITION = 2 * HOP  # conv2 has stride 2: one encoder position per 20 ms


class WhisperFolderError(ValueError):
    """A folder that is not a loadable HF Whisper folder (names the folder and what is missing)."""


class WhisperAudioTooLong(ValueError):
    """Audio longer than the model's audio window."""


def load_speechbrain_whisper(folder: str | os.PathLike, encoder_only: bool = False):
    """``speechbrain.integrations.huggingface.whisper.Whisper`` over a local HF folder, offline."""
    folder = Path(folder)
    missing = [n for n in ("config.json", "preprocessor_config.json") if not (folder / n).is_file()]
    if not folder.is_dir() or missing:
        raise WhisperFolderError(
            f"{folder}: not a HF Whisper folder (missing {', '.join(missing) or 'the folder'}); "
            "export one with `cl-ssvdo models export whisper-tiny.en DIR`"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from speechbrain.integrations.huggingface.whisper import Whisper

    try:
        return Whisper(
            source=str(folder), save_path=str(folder), encoder_only=encoder_only, freeze=False
        )
    except (OSError, ValueError, KeyError) as exc:
        raise WhisperFolderError(f"{folder}: cannot load as a Whisper model: {exc}") from exc


class WhisperBackbone(nn.Module):
    """Mel front end + Whisper encoder with an optional reduced audio window.

    Arguments
    ---------
    sb_whisper : speechbrain Whisper
        From :func:`load_speechbrain_whisper`; ``.model`` is the HF ``WhisperModel``.
    audio_ctx : int, optional
        Encoder positions used (1..max_source_positions); None = all (the 30 s reference).
    """

    def __init__(self, sb_whisper: nn.Module, audio_ctx: int | None = None) -> None:
        super().__init__()
        self.whisper = sb_whisper
        max_ctx = int(self.hf.config.max_source_positions)
        if audio_ctx is not None and not (1 <= int(audio_ctx) <= max_ctx):
            raise ValueError(f"audio_ctx must be in 1..{max_ctx}, got {audio_ctx}")
        self.audio_ctx = int(audio_ctx) if audio_ctx is not None else max_ctx
        self.max_ctx = max_ctx

    @classmethod
    def from_folder(
        cls, folder: str | os.PathLike, audio_ctx: int | None = None, encoder_only: bool = False
    ) -> WhisperBackbone:
        return cls(load_speechbrain_whisper(folder, encoder_only=encoder_only), audio_ctx)

    @property
    def hf(self) -> nn.Module:
        """The HF ``WhisperModel`` (``.encoder``, ``.decoder``)."""
        return self.whisper.model

    @property
    def window_samples(self) -> int:
        return self.audio_ctx * SAMPLES_PER_POSITION

    @property
    def window_seconds(self) -> float:
        return self.window_samples / SAMPLE_RATE

    def durations(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> torch.Tensor:
        """[B] seconds of real audio."""
        return wav_lens.float() * wavs.shape[1] / SAMPLE_RATE

    def mel(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> torch.Tensor:
        """[B, n_mels, 2 * audio_ctx] log-mel of the window, normalised per utterance (float32).

        Samples past each utterance's length are zeroed (as Whisper's padding), so a padded
        batch gives the same features as one utterance alone.
        """
        n = wavs.shape[1]  # a padded batch is as long as its longest utterance (no host sync)
        if n > self.window_samples:
            raise WhisperAudioTooLong(
                f"audio of {n / SAMPLE_RATE:.2f} s exceeds the Whisper window of "
                f"{self.window_seconds:.2f} s (audio_ctx={self.audio_ctx}); Whisper cannot "
                "transcribe longer audio in one window: split it or raise model.whisper.audio_ctx"
            )
        autocast_off = (
            torch.autocast(device_type=wavs.device.type, enabled=False)
            if wavs.device.type in ("cuda", "cpu")
            else contextlib.nullcontext()
        )
        with autocast_off:
            wavs = wavs.float()
            idx = torch.arange(n, device=wavs.device)
            wavs = wavs * (idx[None, :] < (wav_lens.float()[:, None] * n).round()).float()
            if n < self.window_samples:
                wavs = nn.functional.pad(wavs, (0, self.window_samples - n))
            wavs = wavs[:, : self.window_samples]
            window = torch.hann_window(400, device=wavs.device)
            stft = torch.stft(wavs, 400, HOP, window=window, return_complex=True)
            power = stft[..., :-1].abs() ** 2
            spec = self.whisper._mel_filters.to(power.device) @ power
            log_spec = torch.clamp(spec, min=1e-10).log10()
            peak = log_spec.amax(dim=(-2, -1), keepdim=True)
            log_spec = torch.maximum(log_spec, peak - 8.0)
            return (log_spec + 4.0) / 4.0

    def encode_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """[B, n_mels, 2N] -> encoder states [B, N, d_model] (positional embedding sliced to N)."""
        enc = self.hf.encoder
        x = nn.functional.gelu(enc.conv1(mel.to(enc.conv1.weight.dtype)))
        x = nn.functional.gelu(enc.conv2(x)).permute(0, 2, 1)
        x = x + enc.embed_positions.weight[: x.shape[1]].to(x.dtype)
        x = nn.functional.dropout(x, p=enc.dropout, training=self.training)
        for layer in enc.layers:
            x = layer(x, None)
            if isinstance(x, tuple):  # older transformers return (hidden, attn)
                x = x[0]
        return enc.layer_norm(x)

    def encode(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> torch.Tensor:
        """[B, T] audio -> [B, audio_ctx, d_model] encoder states."""
        return self.encode_mel(self.mel(wavs, wav_lens))
