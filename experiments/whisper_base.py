"""The base model of a config whose ``model.kind`` is ``whisper`` or ``whisper-ctc``.

``model.pretrained`` names a local HF Whisper folder, a CTranslate2 Whisper folder or a
registered model (``whisper-tiny.en``); anything but a HF folder is exported once into
``<workdir>/base/<name>`` (``cl_ssvdo.asr.whisper.registry.export_model``) and reused.

- ``whisper``: :class:`cl_ssvdo.asr.whisper.seq2seq.WhisperSeq2Seq` (nothing to train first).
- ``whisper-ctc``: :class:`cl_ssvdo.asr.whisper.ctc_head.WhisperCTC`; its CTC head is trained
  once on the train split of ``model.pretrain.domains`` (default: the stream's base domains,
  else its first domain) with the encoder frozen, saved as
  ``<workdir>/base/whisper-ctc-<hash>/ctc_head.pt`` and reused.

Returned like ``prepare_base_model``: ``(model, tokenizer, folder)`` with a ``CharTokenizer``
(the CTC head's vocabulary; the seq2seq kind keeps its own BPE tokenizer).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from experiments.config import ConfigError, config_hash

__all__ = ["WHISPER_KINDS", "is_whisper", "load_whisper_base", "prepare_whisper_base"]

WHISPER_KINDS = ("whisper", "whisper-ctc")


def is_whisper(config: Mapping[str, Any]) -> bool:
    return config["model"].get("kind", "ctc") in WHISPER_KINDS


def whisper_folder(config: Mapping[str, Any]) -> Path:
    """The HF Whisper folder of ``model.pretrained`` (exported once when it is not one)."""
    name = config["model"].get("pretrained")
    if not name:
        raise ConfigError(
            "a Whisper model needs model.pretrained: a Whisper folder or a registered name "
            "(cl-ssvdo models list)",
            "model.pretrained",
        )
    path = Path(name)
    if (path / "config.json").is_file() and (path / "preprocessor_config.json").is_file():
        return path
    out = Path(config["workdir"]) / "base" / path.name
    if (out / "config.json").is_file():
        return out
    from cl_ssvdo.asr.whisper.registry import export_model

    try:
        return Path(export_model(name, out))
    except (ValueError, ImportError, OSError) as exc:
        raise ConfigError(str(exc), "model.pretrained") from exc


def _options(config: Mapping[str, Any]) -> dict[str, Any]:
    return dict(config["model"].get("whisper") or {})


def _build(config: Mapping[str, Any], folder: Path, tokenizer):
    from cl_ssvdo.asr.whisper.ctc_head import WhisperCTC
    from cl_ssvdo.asr.whisper.seq2seq import WhisperSeq2Seq

    opts = _options(config)
    try:
        if config["model"]["kind"] == "whisper":
            return WhisperSeq2Seq.from_folder(
                folder,
                audio_ctx=opts.get("audio_ctx"),
                beam_size=int(opts.get("beam_size", 1)),
                tokens_per_second=float(opts.get("tokens_per_second", 6.0)),
                token_margin=int(opts.get("token_margin", 8)),
            )
        return WhisperCTC.from_folder(
            folder,
            tokenizer.vocab_size,
            audio_ctx=opts.get("audio_ctx"),
            hidden=int(opts.get("ctc_hidden", 0)),
        )
    except ValueError as exc:
        raise ConfigError(str(exc), "model.whisper") from exc


def _head_folder(config: Mapping[str, Any], folder: Path, info, domains: list[str]) -> Path:
    key = config_hash(
        {
            "whisper": str(folder.resolve()),
            "whisper_options": _options(config),
            "pretrain": config["model"]["pretrain"],
            "stream": info.config.get("hash") or str(Path(info.root).resolve()),
            "domains": domains,
            "max_utterances": config["stream"].get("max_utterances"),
        }
    )
    return Path(config["workdir"]) / "base" / f"whisper-ctc-{key}"


def _head_domains(config: Mapping[str, Any], info) -> list[str]:
    domains = (
        config["model"]["pretrain"].get("domains")
        or config["stream"].get("base_domains")
        or [info.domains[0]]
    )
    unknown = [d for d in domains if d not in info.domains]
    if unknown:
        raise ConfigError(f"unknown domain(s) {unknown}", "model.pretrain.domains", info.domains)
    return list(domains)


def _train_head(config, model, tokenizer, info, domains, device, progress: bool) -> None:
    from torch.utils.data import ConcatDataset, DataLoader

    from cl_ssvdo.asr.loss import ctc_batch_loss
    from cl_ssvdo.asr.whisper.ctc_head import train_ctc_head
    from cl_ssvdo.data import ManifestDataset, collate_speech

    settings = config["model"]["pretrain"]
    limit = config["stream"].get("max_utterances")
    parts = []
    for domain in domains:
        part = ManifestDataset(
            info.manifest(domain, "train"), root=info.root, resample=info.resample
        )
        if limit is not None:
            part.rows = part.rows[:limit]
        parts.append(part)
    torch.manual_seed(settings["seed"])
    loader = DataLoader(
        ConcatDataset(parts),
        batch_size=int(settings["batch_size"]),
        shuffle=True,
        collate_fn=collate_speech,
    )
    steps = int(settings.get("max_steps") or 200)

    def report(step: int, seconds: float) -> None:
        if progress and (step % 25 == 0 or step == steps):
            print(f"whisper-ctc head: step {step}/{steps}, {seconds:.0f} s", flush=True)

    train_ctc_head(
        model,
        loader,
        lambda out, words: ctc_batch_loss(out[0], out[1], words, tokenizer),
        steps=steps,
        lr=float(settings["lr"]),
        device=device,
        progress=report,
    )


def prepare_whisper_base(
    config: Mapping[str, Any], info, *, progress: bool = True, device: str | torch.device = "cpu"
):
    """``(model, tokenizer, folder)`` for a Whisper config (see the module docstring)."""
    from cl_ssvdo.asr import CharTokenizer
    from cl_ssvdo.asr.whisper.ctc_head import load_ctc_head, save_ctc_head

    tokenizer = CharTokenizer()
    folder = whisper_folder(config)
    model = _build(config, folder, tokenizer)
    if config["model"]["kind"] == "whisper":
        return model.to(device), tokenizer, folder
    domains = _head_domains(config, info)
    head = _head_folder(config, folder, info, domains)
    if not (head / "ctc_head.pt").is_file():
        _train_head(config, model, tokenizer, info, domains, device, progress)
        save_ctc_head(model, head, {"whisper": str(folder), "domains": domains})
    load_ctc_head(model, head)
    return model.to(device), tokenizer, head


def load_whisper_base(config: Mapping[str, Any], base: Path, device: str | torch.device = "cpu"):
    """A fresh copy of the prepared base (``base`` as returned by :func:`prepare_whisper_base`)."""
    from cl_ssvdo.asr import CharTokenizer
    from cl_ssvdo.asr.whisper.ctc_head import load_ctc_head

    tokenizer = CharTokenizer()
    model = _build(config, whisper_folder(config), tokenizer)
    if config["model"]["kind"] == "whisper-ctc":
        load_ctc_head(model, base)
    return model.to(device), tokenizer
