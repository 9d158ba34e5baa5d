"""``whisper`` model kind: Whisper encoder-decoder trained by teacher-forced cross-entropy.

The model follows the ``ASRModel`` protocol of ``strategies.template``:

- ``forward(wavs [B, T], wav_lens [B]) -> WhisperOutput(enc [B, N, d], durations [B] s)``
  (the encoder; what adapters on encoder layers change),
- ``loss(output, words) -> scalar``: the decoder, teacher-forced on
  ``<|startoftranscript|><|notimestamps|> text <|endoftext|>`` (``.en`` models; multilingual ones
  get the tokenizer's language/task prefix), mean cross-entropy over text tokens and eot,
- ``transcribe(output) -> list[str]``: greedy or beam decoding bounded by the audio duration, loops cut
  (``cl_ssvdo.asr.whisper.decode``), normalised by
  :func:`cl_ssvdo.asr.whisper.normalize.normalize_text` (numbers spelled out, as the references).

>>> import tempfile, torch
>>> from cl_ssvdo.asr.whisper.tiny import save_tiny_whisper
>>> model = WhisperSeq2Seq.from_folder(save_tiny_whisper(tempfile.mkdtemp()), audio_ctx=50)
>>> out = model(torch.zeros(2, 8000), torch.ones(2))
>>> bool(model.loss(out, ["hello", "a b"]) > 0)
True
>>> len(model.transcribe(out))
2
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from .decode import MIN_REPEAT, beam_decode, greedy_decode, token_limits
from .model import WhisperBackbone
from .normalize import normalize_hypothesis, normalize_text

__all__ = ["WhisperOutput", "WhisperSeq2Seq"]


class WhisperOutput(NamedTuple):
    """What :meth:`WhisperSeq2Seq.forward` returns."""

    enc: torch.Tensor  #: [B, N, d_model] encoder states
    durations: torch.Tensor  #: [B] seconds of audio


class WhisperSeq2Seq(nn.Module):
    """Whisper encoder-decoder as a continual-learning ASR model.

    Arguments
    ---------
    backbone : WhisperBackbone
    beam_size : int
        1 = greedy (KV cache, batched), > 1 = beam search.
    tokens_per_second, token_margin : float, int
        Decoding limit per utterance: ``ceil(tokens_per_second * seconds) + token_margin``.
    min_repeat : int
        A hypothesis ending in a loop of at least this many tokens stops and keeps one copy
        (``cl_ssvdo.asr.whisper.decode.loop_start``); 0 disables the check.
    """

    kind = "whisper"

    def __init__(
        self,
        backbone: WhisperBackbone,
        beam_size: int = 1,
        tokens_per_second: float = 6.0,
        token_margin: int = 8,
        min_repeat: int = MIN_REPEAT,
    ) -> None:
        super().__init__()
        if backbone.hf.decoder is None:
            raise ValueError("WhisperSeq2Seq needs the decoder (backbone loaded encoder_only)")
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        self.backbone = backbone
        self.beam_size = int(beam_size)
        self.tokens_per_second = float(tokens_per_second)
        self.token_margin = int(token_margin)
        self.min_repeat = int(min_repeat)
        tok = backbone.whisper.tokenizer
        self.tokenizer = tok
        self.eot = int(tok.convert_tokens_to_ids("<|endoftext|>"))
        self.prefix = [int(t) for t in tok.prefix_tokens]
        self.max_positions = int(backbone.hf.config.max_target_positions)

    @classmethod
    def from_folder(
        cls, folder: str | os.PathLike, audio_ctx: int | None = None, **kwargs
    ) -> WhisperSeq2Seq:
        return cls(WhisperBackbone.from_folder(folder, audio_ctx=audio_ctx), **kwargs)

    @property
    def decoder(self) -> nn.Module:
        return self.backbone.hf.decoder

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> WhisperOutput:
        return WhisperOutput(
            self.backbone.encode(wavs, wav_lens), self.backbone.durations(wavs, wav_lens)
        )

    # ------------------------------------------------------------------ training
    def targets(
        self, words: Sequence[str], device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(inputs [B, L], labels [B, L])``: teacher-forcing inputs and the labels (-100 on
        the prefix and padding)."""
        seqs, n_prefix = [], len(self.prefix)
        for text in words:
            body = (
                self.tokenizer.encode(" " + text.strip(), add_special_tokens=False)
                if text.strip()
                else []
            )
            seq = self.prefix + [int(t) for t in body] + [self.eot]
            if len(seq) > self.max_positions:
                raise ValueError(
                    f"transcript of {len(seq)} tokens exceeds the decoder's {self.max_positions} "
                    f"positions: {text[:60]!r}..."
                )
            seqs.append(seq)
        length = max(len(s) for s in seqs) - 1
        inputs = torch.full((len(seqs), length), self.eot, dtype=torch.long)
        labels = torch.full((len(seqs), length), -100, dtype=torch.long)
        for i, seq in enumerate(seqs):
            inputs[i, : len(seq) - 1] = torch.tensor(seq[:-1])
            labels[i, n_prefix - 1 : len(seq) - 1] = torch.tensor(seq[n_prefix:])
        return inputs.to(device, non_blocking=True), labels.to(device, non_blocking=True)

    def loss(self, output: WhisperOutput, words: Sequence[str]) -> torch.Tensor:
        """Mean token cross-entropy of the teacher-forced decoder (text tokens and eot)."""
        inputs, labels = self.targets(words, output.enc.device)
        # The causal mask built here, as a 4-D mask transformers takes as it is: left to build
        # its own, it reads a device tensor back to the host (a packed-sequence or an
        # all-ones-padding check), one CUDA sync per step. Padding sits after every real
        # token, so causality alone is the right mask.
        length = inputs.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=inputs.device).tril()
        hidden = self.decoder(
            input_ids=inputs,
            attention_mask=causal.expand(inputs.shape[0], 1, length, length),
            encoder_hidden_states=output.enc,
            use_cache=False,
        )
        logits = (
            hidden.last_hidden_state
            @ self.decoder.embed_tokens.weight.to(hidden.last_hidden_state.dtype).t()
        )
        return nn.functional.cross_entropy(
            logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100
        )

    # ------------------------------------------------------------------ decoding
    def limits(self, durations: torch.Tensor) -> list[int]:
        cap = self.max_positions - len(self.prefix)
        return token_limits(durations.tolist(), self.tokens_per_second, self.token_margin, cap)

    @torch.no_grad()
    def transcribe_tokens(self, output: WhisperOutput) -> list[list[int]]:
        """Text token ids per utterance (greedy or beam, bounded by the duration)."""
        limits = self.limits(output.durations)
        if self.beam_size == 1:
            return greedy_decode(
                self.decoder, output.enc, self.prefix, self.eot, limits, self.min_repeat
            )
        return beam_decode(
            self.decoder, output.enc, self.prefix, self.eot, limits, self.beam_size, self.min_repeat
        )

    def transcribe(
        self, output: WhisperOutput, references: Sequence[str] | None = None
    ) -> list[str]:
        """Normalised hypotheses (lower-case words, numbers spelled out; with ``references``,
        digits spelled the way closer to the reference: digit by digit or as a cardinal)."""
        texts = [
            self.tokenizer.decode(t, skip_special_tokens=True)
            for t in self.transcribe_tokens(output)
        ]
        refs = list(references) if references is not None else [None] * len(texts)
        return [normalize_hypothesis(h, r) for h, r in zip(texts, refs, strict=True)]

    def normalize(self, texts: Sequence[str]) -> list[str]:
        """The normaliser applied to hypotheses, for references."""
        return [normalize_text(t) for t in texts]
