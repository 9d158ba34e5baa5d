"""SpeechBrain pretrained folders: export a model, load it back (ours or a user's own).

An exported folder holds ``hyperparams.yaml``, ``model.ckpt`` (the :class:`CTCASR` state dict),
``tokenizer.ckpt`` (the :class:`CharTokenizer` in SpeechBrain's literal format) and
``fingerprint.json`` (sha256 of the weights and of the training stream, see
:mod:`cl_ssvdo.asr.fingerprint`). It needs no
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

from .fingerprint import weights_sha256, write_fingerprint
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


def export_pretrained(
    model: CTCASR,
    tokenizer: CharTokenizer,
    folder: str | Path,
    *,
    stream_sha: str | None = None,
) -> Path:
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
    stream_sha : str, optional
        Fingerprint of the stream the model was trained on, written to ``fingerprint.json``
        with the weights' fingerprint.

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
    write_fingerprint(out, weights_sha256(state), stream_sha)
    # Last: a folder counts as pretrained once its hyperparams file is there.
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


TRUST_ENV = "CL_SSVDO_TRUST_FOLDER"
_EXPORT_HEADER = "# SpeechBrain EncoderASR folder exported by cl_ssvdo"


class UntrustedFolderError(ValueError):
    """A foreign SpeechBrain folder was to be loaded without ``trust_folder``."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        super().__init__(
            f"{folder} is not a folder exported by cl_ssvdo: loading it runs its "
            f"{HPARAMS_FILE} (HyperPyYAML can execute code, e.g. !apply tags). If you trust "
            f"it, pass --trust-folder (trust_folder=True, or {TRUST_ENV}=1)"
        )


def own_folder_hparams(folder: str | Path) -> dict[str, Any] | None:
    """The ``hyperparams.yaml`` of a folder written by :func:`export_pretrained`, read as data
    (every ``!tag`` ignored, nothing executed); None for any other folder."""
    path = Path(folder)
    hparams_file = path / HPARAMS_FILE
    if not hparams_file.is_file():
        raise FileNotFoundError(
            f"pretrained folder {path}: no {HPARAMS_FILE} (is this a SpeechBrain model folder?)"
        )
    text = hparams_file.read_text(encoding="utf-8", errors="replace")
    if not text.startswith(_EXPORT_HEADER):
        return None
    try:
        hparams = yaml.load(text, Loader=_IgnoreTagsLoader)
    except yaml.YAMLError as exc:
        raise ValueError(f"{hparams_file}: not valid YAML ({exc})") from exc
    ok = (
        isinstance(hparams, dict)
        and isinstance(hparams.get("preset"), dict)
        and isinstance(hparams.get("vocab_size"), int)
        and (path / MODEL_FILE).is_file()
        and (path / TOKENIZER_FILE).is_file()
    )
    return hparams if ok else None


def _load_own_folder(
    folder: Path, hparams: dict[str, Any], device: str
) -> tuple[CTCASR, CharTokenizer, ASRConfig]:
    """Our folder as data: the preset from the yaml, weights with ``weights_only=True``, the
    tokenizer's literal file; the yaml's tags (anything appended to it) are never run."""
    from .presets import resolve_preset

    try:
        preset = resolve_preset(hparams["preset"])
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"{folder / HPARAMS_FILE}: bad preset ({exc})") from exc
    model = CTCASR(preset, int(hparams["vocab_size"]))
    _strict_reload(model, folder / MODEL_FILE)
    tokenizer = CharTokenizer()
    tokenizer.load(folder / TOKENIZER_FILE)
    if tokenizer.vocab_size != model.vocab_size:
        raise ValueError(
            f"pretrained folder {folder}: tokenizer has {tokenizer.vocab_size} classes, "
            f"model outputs {model.vocab_size}"
        )
    return model.to(device), tokenizer, preset


def load_pretrained(
    folder: str | Path, device: str = "cpu", trust_folder: bool | None = None
) -> tuple[nn.Module, CharTokenizer | SentencePieceTokenizer, ASRConfig | None]:
    """Loads a pretrained folder (see the module docstring).

    A folder written by :func:`export_pretrained` is read as data: nothing in its
    ``hyperparams.yaml`` is executed. Any other SpeechBrain folder goes through
    ``EncoderASR.from_hparams``, which runs its HyperPyYAML: only with ``trust_folder`` (default:
    ``$CL_SSVDO_TRUST_FOLDER == "1"``, what ``--trust-folder`` sets), else
    :class:`UntrustedFolderError`.

    Returns
    -------
    model : CTCASR or ExternalEncoderCTC
        ``model(wavs, wav_lens) -> (log_probs, out_lens)``, parameters trainable, eval mode.
    tokenizer : CharTokenizer or SentencePieceTokenizer
        Blank id 0.
    preset : ASRConfig or None
        The architecture of our folders; None for a user's own folder.
    """
    own = own_folder_hparams(folder)
    if own is not None:
        model_, tokenizer_, preset_ = _load_own_folder(Path(folder), own, device)
        model_.eval()
        for param in model_.parameters():
            param.requires_grad_(True)
        return model_, tokenizer_, preset_
    if trust_folder is None:
        trust_folder = os.environ.get(TRUST_ENV) == "1"
    if not trust_folder:
        raise UntrustedFolderError(folder)
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
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"pretrained folder: {path} does not match its preset: {err}") from err


# -- a user's SpeechBrain folder of any of the three ASR interfaces --------------------------------
SPEECHBRAIN_INTERFACES = ("EncoderASR", "EncoderDecoderASR", "WhisperASR")


class _IgnoreTagsLoader(yaml.SafeLoader):
    """Reads a hyperpyyaml file's structure without instantiating its ``!new:``/``!ref`` tags."""


_IgnoreTagsLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def speechbrain_interface(folder: str | Path) -> str:
    """Which ``speechbrain.inference.ASR`` interface a folder's ``hyperparams.yaml`` is for.

    Read off its ``modules:`` keys: ``whisper`` + ``decoder`` -> ``WhisperASR``, ``encoder`` +
    ``decoder`` -> ``EncoderDecoderASR``, ``encoder`` -> ``EncoderASR``; anything else is a
    ``ValueError`` naming the file.
    """
    path = Path(folder) / HPARAMS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"pretrained folder {folder}: no {HPARAMS_FILE}")
    try:
        hparams = yaml.load(path.read_text(encoding="utf-8"), Loader=_IgnoreTagsLoader)
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML ({exc})") from exc
    modules = set((hparams or {}).get("modules") or {})
    if {"whisper", "decoder"} <= modules:
        return "WhisperASR"
    if {"encoder", "decoder"} <= modules:
        return "EncoderDecoderASR"
    if "encoder" in modules:
        return "EncoderASR"
    raise ValueError(
        f"{path}: modules {sorted(modules)} fit none of {', '.join(SPEECHBRAIN_INTERFACES)} "
        "(EncoderASR needs 'encoder', EncoderDecoderASR 'encoder'+'decoder', "
        "WhisperASR 'whisper'+'decoder')"
    )


def load_speechbrain_asr(
    folder: str | Path,
    interface: str | None = None,
    device: str = "cpu",
    freeze: bool = False,
):
    """``<interface>.from_hparams`` on a local SpeechBrain folder, offline.

    ``interface`` (``EncoderASR``, ``EncoderDecoderASR`` or ``WhisperASR``) defaults to
    :func:`speechbrain_interface`. Parameters stay trainable unless ``freeze``. Returns the
    SpeechBrain inference object (``.mods``, ``.hparams``, ``.transcribe_batch``).
    """
    import speechbrain.inference.ASR as sb_asr
    from speechbrain.utils.fetching import FetchConfig

    interface = interface or speechbrain_interface(folder)
    if interface not in SPEECHBRAIN_INTERFACES:
        raise ValueError(f"interface {interface!r} is not one of {SPEECHBRAIN_INTERFACES}")
    from .whisper.hf_folder import speechbrain_overrides  # fills an export's folder placeholder

    path = Path(folder).absolute()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return getattr(sb_asr, interface).from_hparams(
        source=str(path),
        savedir=str(path),
        overrides=speechbrain_overrides(path),
        run_opts={"device": device},
        freeze_params=freeze,
        fetch_config=FetchConfig(allow_network=False),
    )
