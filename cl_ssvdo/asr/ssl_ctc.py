"""HF self-supervised speech encoders (wav2vec2 / HuBERT / WavLM) + a CTC head, via SpeechBrain.

A local Hugging Face folder (``config.json`` with ``model_type`` ``wav2vec2``, ``hubert`` or
``wavlm``, the weights, ``preprocessor_config.json``) is loaded through SpeechBrain's
integration (``speechbrain.integrations.huggingface.{wav2vec2.Wav2Vec2, hubert.HuBERT,
wavlm.WavLM}``, which loads ``AutoModel``: a ``*ForCTC`` folder gives its encoder, its
``lm_head`` is not used). A new linear CTC head over the project's tokenizer (blank id 0)
sits on top, as SpeechBrain's wav2vec2-CTC recipes do. The result has the :class:`CTCASR`
interface: ``model(wavs [B, T], wav_lens [B]) -> (log_probs [B, T', V], wav_lens [B])``.
Nothing is downloaded: a folder that is not one of these families is a clear error naming it.

>>> hf_encoder_family("/nonexistent")
Traceback (most recent call last):
...
FileNotFoundError: /nonexistent: no config.json (expected a local HF wav2vec2/hubert/wavlm folder)
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import torch
from torch import nn

__all__ = ["SSL_FAMILIES", "SSLEncoderCTC", "hf_encoder_family", "load_hf_encoder_ctc"]

SSL_FAMILIES: dict[str, str] = {
    "wav2vec2": "speechbrain.integrations.huggingface.wav2vec2.Wav2Vec2",
    "hubert": "speechbrain.integrations.huggingface.hubert.HuBERT",
    "wavlm": "speechbrain.integrations.huggingface.wavlm.WavLM",
}


def hf_encoder_family(folder: str | Path) -> str:
    """``model_type`` of a local HF folder if it is one of :data:`SSL_FAMILIES`, else an error."""
    config = Path(folder) / "config.json"
    if not config.is_file():
        raise FileNotFoundError(
            f"{folder}: no config.json (expected a local HF wav2vec2/hubert/wavlm folder)"
        )
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (json.JSONDecodeError, AttributeError) as exc:
        raise ValueError(f"{config}: not a JSON object ({exc})") from exc
    if model_type not in SSL_FAMILIES:
        raise ValueError(
            f"{config}: model_type {model_type!r} is not one of {sorted(SSL_FAMILIES)}"
        )
    return model_type


class SSLEncoderCTC(nn.Module):
    """A SpeechBrain HF-encoder lobe followed by a linear CTC head (blank id 0).

    Arguments
    ---------
    encoder : nn.Module
        ``encoder(wavs [B, T], wav_lens [B]) -> features [B, T', H]``.
    hidden_size : int
        ``H``.
    vocab_size : int
        Output classes incl. the blank.
    """

    def __init__(self, encoder: nn.Module, hidden_size: int, vocab_size: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(hidden_size, vocab_size)
        self.vocab_size = vocab_size
        self.config = None  # no project preset: like ExternalEncoderCTC

    def forward(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, T], [B] -> ([B, T', V] log-probabilities, [B] relative lengths)."""
        feats = self.encoder(wavs, wav_lens)
        return self.head(feats).log_softmax(dim=-1), wav_lens.clone()


def load_hf_encoder_ctc(
    folder: str | Path,
    vocab_size: int,
    *,
    freeze_feature_extractor: bool = True,
    seed: int | None = 0,
) -> SSLEncoderCTC:
    """Load a local wav2vec2/HuBERT/WavLM folder through SpeechBrain and add a CTC head.

    The convolutional feature extractor is frozen by default (as in SpeechBrain's recipes);
    the transformer and the head are trainable. ``seed`` makes the new head reproducible.
    """
    family = hf_encoder_family(folder)
    module_name, cls_name = SSL_FAMILIES[family].rsplit(".", 1)
    cls = getattr(importlib.import_module(module_name), cls_name)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = str(Path(folder).absolute())
    encoder = cls(
        source=path,
        save_path=path,
        freeze=False,
        freeze_feature_extractor=freeze_feature_extractor,
    )
    with torch.random.fork_rng(devices=[]):  # a reproducible head, global RNG untouched
        if seed is not None:
            torch.manual_seed(seed)
        model = SSLEncoderCTC(encoder, encoder.model.config.hidden_size, vocab_size)
    return model.eval()
