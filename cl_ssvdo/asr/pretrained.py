"""SpeechBrain pretrained folders: export a model, load it back (ours or a user's own).

An exported folder holds ``hyperparams.yaml``, ``model.ckpt`` (the :class:`CTCASR` state dict)
and ``tokenizer.ckpt`` (the :class:`CharTokenizer` in SpeechBrain's literal format). It needs no
network and names no hub ids, so it loads offline anywhere ``cl_ssvdo`` is importable::

    from speechbrain.inference.ASR import EncoderASR
    asr = EncoderASR.from_hparams(source=FOLDER, savedir=FOLDER)
    asr.transcribe_file("clip.wav")

:func:`load_pretrained` goes through the same ``EncoderASR.from_hparams`` call and then takes
``mods.encoder`` and ``hparams.tokenizer``:

* for our folders ``mods.encoder`` is a :class:`CTCEncoder`; its ``.model`` (a CTCASR) is
  returned with the preset stored in the yaml;
* a user's own SpeechBrain ``EncoderASR`` folder (e.g. a LibriSpeech CTC model already on disk,
  with its ``hyperparams.yaml``, ``*.ckpt`` files and ``tokenizer``) loads too: its
  ``mods.encoder`` must map ``(wavs, wav_lens)`` to CTC log-probabilities with the blank at
  id 0; it is wrapped in :class:`ExternalEncoderCTC` and the preset is ``None``. Its yaml may
  reference hub ids only if they are cached locally: loading never uses the network.

Must not depend on avalanche, mlflow or benchmarks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from .model import CTCASR, CTCEncoder, ExternalEncoderCTC
from .presets import ASRConfig
from .tokenizer import CharTokenizer, SentencePieceTokenizer, as_tokenizer

HPARAMS_FILE = "hyperparams.yaml"
MODEL_FILE = "model.ckpt"
TOKENIZER_FILE = "tokenizer.ckpt"

_YAML_TEMPLATE = """\
# SpeechBrain EncoderASR folder exported by cl_ssvdo.asr.pretrained.export_pretrained.
# Load offline with:
#   EncoderASR.from_hparams(source=<this folder>, savedir=<this folder>)
# or cl_ssvdo.asr.load_pretrained(<this folder>). Needs the cl_ssvdo package importable.

sample_rate: {sample_rate}
vocab_size: {vocab_size}
blank_index: 0

{preset_block}

asr_model: !new:cl_ssvdo.asr.model.CTCASR
    config: !ref <preset>
    vocab_size: !ref <vocab_size>

encoder: !new:cl_ssvdo.asr.model.CTCEncoder
    model: !ref <asr_model>

tokenizer: !new:cl_ssvdo.asr.tokenizer.CharTokenizer

decoding_function: !name:speechbrain.decoders.ctc_greedy_decode
    blank_id: !ref <blank_index>

modules:
    encoder: !ref <encoder>

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        model: !ref <asr_model>
        tokenizer: !ref <tokenizer>
"""


def export_pretrained(model: CTCASR, tokenizer: CharTokenizer, folder: str | Path) -> Path:
    """Writes ``model`` and ``tokenizer`` as a SpeechBrain ``EncoderASR`` folder.

    Arguments
    ---------
    model : CTCASR
        A plain model (merge adapters first: the folder rebuilds the architecture from the preset,
        so extra or missing parameters raise ``ValueError`` here rather than at load time).
    tokenizer : CharTokenizer
        Its vocabulary size must equal ``model.vocab_size``.
    folder : str or Path
        Created if missing; existing export files are overwritten.

    Returns
    -------
    Path
        The folder.
    """
    if not isinstance(model, CTCASR):
        raise TypeError(f"export_pretrained: model must be a CTCASR, got {type(model).__name__}")
    if not isinstance(tokenizer, CharTokenizer):
        raise TypeError(
            "export_pretrained: only CharTokenizer folders are supported, "
            f"got {type(tokenizer).__name__}"
        )
    if tokenizer.vocab_size != model.vocab_size:
        raise ValueError(
            f"export_pretrained: tokenizer has {tokenizer.vocab_size} classes but the model "
            f"outputs {model.vocab_size}"
        )
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    expected = set(CTCASR(model.config, model.vocab_size).state_dict())
    if set(state) != expected:
        extra = sorted(set(state) - expected)[:5]
        missing = sorted(expected - set(state))[:5]
        raise ValueError(
            "export_pretrained: the model's parameters do not match its preset "
            f"(extra {extra}, missing {missing}); merge or remove adapters before exporting"
        )
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(state, out / MODEL_FILE)
    tokenizer.save(out / TOKENIZER_FILE)
    preset_block = yaml.safe_dump(
        {"preset": model.config.to_dict()}, default_flow_style=False, sort_keys=False
    )
    text = _YAML_TEMPLATE.format(
        sample_rate=model.config.sample_rate,
        vocab_size=model.vocab_size,
        preset_block=preset_block.rstrip(),
    )
    (out / HPARAMS_FILE).write_text(text, encoding="utf-8")
    return out


def load_encoder_asr(folder: str | Path, device: str = "cpu", freeze: bool = False):
    """``speechbrain.inference.ASR.EncoderASR.from_hparams`` on a local folder, offline.

    Arguments
    ---------
    folder : str or Path
        Holds ``hyperparams.yaml`` and the files its ``pretrainer`` names.
    device : str
        Where the modules are placed.
    freeze : bool
        SpeechBrain's default freezes parameters (``requires_grad=False``); we keep them
        trainable unless asked.
    """
    from speechbrain.inference.ASR import EncoderASR
    from speechbrain.utils.fetching import FetchConfig

    path = Path(folder)
    if not (path / HPARAMS_FILE).is_file():
        raise FileNotFoundError(
            f"pretrained folder {path}: no {HPARAMS_FILE} (is this a SpeechBrain model folder?)"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return EncoderASR.from_hparams(
        source=str(path.absolute()),
        savedir=str(path.absolute()),
        run_opts={"device": device},
        freeze_params=freeze,
        fetch_config=FetchConfig(allow_network=False),
    )


def load_pretrained(
    folder: str | Path, device: str = "cpu"
) -> tuple[nn.Module, CharTokenizer | SentencePieceTokenizer, ASRConfig | None]:
    """Loads a pretrained folder through ``EncoderASR`` (see the module docstring).

    Returns
    -------
    model : CTCASR or ExternalEncoderCTC
        ``model(wavs, wav_lens) -> (log_probs, out_lens)``, parameters trainable, eval mode.
    tokenizer : CharTokenizer or SentencePieceTokenizer
        Blank id 0.
    preset : ASRConfig or None
        The architecture of our folders; None for a user's own folder.
    """
    asr = load_encoder_asr(folder, device=device)
    encoder = asr.mods.encoder
    tokenizer = as_tokenizer(asr.hparams.tokenizer)
    if isinstance(encoder, CTCEncoder):
        model: nn.Module = encoder.model
        _strict_reload(model, Path(folder) / MODEL_FILE)
        preset: ASRConfig | None = encoder.model.config
        if tokenizer.vocab_size != encoder.model.vocab_size:
            raise ValueError(
                f"pretrained folder {folder}: tokenizer has {tokenizer.vocab_size} classes, "
                f"model outputs {encoder.model.vocab_size}"
            )
    else:
        model, preset = ExternalEncoderCTC(encoder), None
    model.eval()
    for param in model.parameters():
        param.requires_grad_(True)
    return model, tokenizer, preset


def _strict_reload(model: nn.Module, path: Path) -> None:
    # SpeechBrain's Pretrainer loads non-strictly (mismatches only log a warning).
    state: dict[str, Any] = torch.load(path, map_location="cpu")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"pretrained folder: {path} does not match its preset: {err}") from err
