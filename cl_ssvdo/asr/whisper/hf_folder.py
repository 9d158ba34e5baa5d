"""Whisper folders on disk: recognise HF / CTranslate2 folders, write an HF+SpeechBrain folder.

An exported folder (what :func:`write_export_folder` writes) holds::

    config.json, generation_config.json, model.safetensors     WhisperForConditionalGeneration
    tokenizer.json, tokenizer_config.json                      WhisperTokenizer
    preprocessor_config.json                                   WhisperFeatureExtractor
    hyperparams.yaml                                           speechbrain WhisperASR

and loads offline with ``WhisperForConditionalGeneration.from_pretrained(DIR)``,
``WhisperProcessor.from_pretrained(DIR)`` and
``speechbrain.inference.ASR.WhisperASR.from_hparams(source=DIR, savedir=DIR,
overrides={"whisper_source": DIR})`` (or :func:`load_whisper_asr`). ``hyperparams.yaml`` stores
no path: its ``whisper_source`` is a HyperPyYAML ``!PLACEHOLDER`` filled at load, so the folder
can be moved or copied to another machine.

The tokenizer of a CTranslate2 folder is rebuilt from its ``tokenizer.json`` (byte-level BPE
vocab + merges + special tokens) and ``vocabulary.txt`` or ``vocabulary.json`` (one token per
model row, as lines or a JSON list; the rows after
the special tokens are the timestamp tokens ``<|0.00|>`` .. ``<|30.00|>``); the two must agree
id by id, and ``vocabulary.txt`` must have one line per embedding row.

>>> kind_of_folder(Path(__file__).parent) is None
True
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CT2_FILES",
    "NotAWhisperFolderError",
    "TokenizerMismatchError",
    "WhisperFileMissingError",
    "WhisperImportError",
    "HPARAMS_FILE",
    "SOURCE_KEY",
    "load_whisper_asr",
    "speechbrain_overrides",
    "build_ct2_tokenizer",
    "check_hf_tokenizer",
    "kind_of_folder",
    "missing_ct2_files",
    "read_vocabulary",
    "vocabulary_file",
    "require_kind",
    "write_export_folder",
    "write_speechbrain_hparams",
]

HPARAMS_FILE = "hyperparams.yaml"
#: The ``hyperparams.yaml`` key that names the folder itself (a placeholder, filled at load).
SOURCE_KEY = "whisper_source"


class WhisperImportError(ValueError):
    """Base of the import errors; every message names the file or folder at fault."""


class NotAWhisperFolderError(WhisperImportError):
    """A path that is neither a CTranslate2 nor a Hugging Face Whisper folder."""


class WhisperFileMissingError(WhisperImportError, FileNotFoundError):
    """A file the import needs is missing."""


class TokenizerMismatchError(WhisperImportError):
    """The tokenizer files do not fit the model (count or special-token ids)."""


CT2_FILES = ("model.bin", "config.json", "tokenizer.json")
VOCAB_FILES = ("vocabulary.txt", "vocabulary.json")
HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")

_HPARAMS = """\
# SpeechBrain WhisperASR folder exported by cl_ssvdo.asr.whisper (cl-ssvdo models export).
# Load offline (HF_HUB_OFFLINE=1) with:
#   WhisperASR.from_hparams(source=<this folder>, savedir=<this folder>,
#                           overrides={{"whisper_source": <this folder>}})
# or cl_ssvdo.asr.whisper.hf_folder.load_whisper_asr(<this folder>). No path is stored here,
# so the folder can be moved: whisper_source is filled in when the folder is loaded.

whisper_source: !PLACEHOLDER      # this folder, given at load
sample_rate: 16000
language: {language}

whisper: !new:speechbrain.integrations.huggingface.whisper.Whisper
    source: !ref <whisper_source>
    save_path: !ref <whisper_source>
    sampling_rate: !ref <sample_rate>
    language: !ref <language>

decoder: !new:speechbrain.decoders.seq2seq.S2SWhisperGreedySearcher
    model: !ref <whisper>
    min_decode_ratio: 0.0
    max_decode_ratio: 1.0

modules:
    whisper: !ref <whisper>
    decoder: !ref <decoder>

# from_hparams requires a pretrainer; the weights are already in the HF files of this folder.
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables: {{}}
"""


def kind_of_folder(path: Path) -> str | None:
    """``"ct2"``, ``"hf"`` or ``None`` for a folder (CTranslate2 Whisper, HF Whisper, neither)."""
    path = Path(path)
    if not path.is_dir():
        return None
    if (path / "model.bin").is_file():
        return "ct2"
    config = path / "config.json"
    if config.is_file() and any((path / w).is_file() for w in HF_WEIGHTS):
        try:
            model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            return None
        if model_type == "whisper":
            return "hf"
    return None


def require_kind(path: Path) -> str:
    """:func:`kind_of_folder` or :class:`NotAWhisperFolderError` naming the folder."""
    kind = kind_of_folder(path)
    if kind is None:
        what = "does not exist" if not Path(path).exists() else "is neither"
        raise NotAWhisperFolderError(
            f"{path} {what} a CTranslate2 Whisper folder (model.bin, config.json, "
            f"tokenizer.json, vocabulary.txt|json) nor a Hugging Face Whisper folder (config.json "
            f"with model_type 'whisper' and model.safetensors or pytorch_model.bin)"
        )
    return kind


def vocabulary_file(folder: Path) -> Path:
    """``vocabulary.txt`` (older converters) or ``vocabulary.json`` (CTranslate2 >= 4) of a folder."""
    for name in VOCAB_FILES:
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    raise WhisperFileMissingError(
        f"{Path(folder) / VOCAB_FILES[0]} (or {VOCAB_FILES[1]}) is missing"
    )


def missing_ct2_files(folder: Path) -> list[str]:
    """The CTranslate2 Whisper files absent from ``folder`` (empty when complete)."""
    folder = Path(folder)
    missing = [n for n in CT2_FILES if not (folder / n).is_file()]
    if not any((folder / n).is_file() for n in VOCAB_FILES):
        missing.append(" or ".join(VOCAB_FILES))
    return missing


def read_vocabulary(path: Path) -> list[str]:
    """The tokens of a CTranslate2 vocabulary file (id = position): ``.txt`` lines or ``.json`` list."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        try:
            tokens = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TokenizerMismatchError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise TokenizerMismatchError(f"{path} is not a JSON list of token strings")
        return tokens
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def build_ct2_tokenizer(folder: Path, vocab_size: int) -> Any:
    """A ``WhisperTokenizer`` from a CTranslate2 folder's ``tokenizer.json`` + ``vocabulary.txt``.

    Raises :class:`WhisperFileMissingError` or :class:`TokenizerMismatchError` naming the files.
    """
    from tokenizers import AddedToken
    from transformers import WhisperTokenizer

    folder = Path(folder)
    tj_path, voc_path = folder / "tokenizer.json", vocabulary_file(folder)
    if not tj_path.is_file():
        raise WhisperFileMissingError(f"{tj_path} is missing (needed for the tokenizer)")
    try:
        tj = json.loads(tj_path.read_text(encoding="utf-8"))
        vocab, merges = tj["model"]["vocab"], tj["model"]["merges"]
        added = tj.get("added_tokens", [])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise TokenizerMismatchError(
            f"{tj_path}: not a byte-level BPE tokenizer.json ({exc})"
        ) from exc
    tokens = read_vocabulary(voc_path)
    if len(tokens) != vocab_size:
        raise TokenizerMismatchError(
            f"{voc_path} has {len(tokens)} tokens but the model's embedding has {vocab_size} rows"
        )
    by_id = {int(i): t for t, i in vocab.items()} | {int(a["id"]): a["content"] for a in added}
    wrong = [
        (i, t, tokens[i] if i < len(tokens) else None)
        for i, t in sorted(by_id.items())
        if i >= len(tokens) or tokens[i] != t
    ]
    if wrong:
        i, t, v = wrong[0]
        raise TokenizerMismatchError(
            f"{tj_path} and {voc_path} disagree on {len(wrong)} token id(s), first id {i}: "
            f"{t!r} vs {v!r}"
        )
    if "<|startoftranscript|>" not in by_id.values() or "<|endoftext|>" not in by_id.values():
        raise TokenizerMismatchError(f"{tj_path} lacks <|startoftranscript|> / <|endoftext|>")
    merge_pairs = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]
    tok = WhisperTokenizer(vocab=vocab, merges=merge_pairs)
    specials = [
        a["content"] for a in sorted(added, key=lambda a: a["id"]) if a["content"] not in vocab
    ]
    tok.add_special_tokens({"additional_special_tokens": specials})
    rest = tokens[max(by_id) + 1 :]
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in rest])
    if len(tok) != vocab_size:
        raise TokenizerMismatchError(
            f"{tj_path}: rebuilt tokenizer has {len(tok)} tokens, model {vocab_size}"
        )
    return tok


def check_hf_tokenizer(tokenizer: Any, config: Any, folder: Path) -> None:
    """Raise :class:`TokenizerMismatchError` if ``tokenizer`` does not fit the model ``config``."""
    n = len(tokenizer)
    if n > config.vocab_size:
        raise TokenizerMismatchError(
            f"{folder}: tokenizer has {n} tokens but the model's vocab_size is {config.vocab_size}"
        )
    for token, want in (
        ("<|startoftranscript|>", config.decoder_start_token_id),
        ("<|endoftext|>", config.eos_token_id),
    ):
        got = tokenizer.convert_tokens_to_ids(token)
        if got != want:
            raise TokenizerMismatchError(
                f"{folder}: tokenizer maps {token} to id {got}, the model config expects {want}"
            )


def write_speechbrain_hparams(out_dir: Path, language: str = "en") -> Path:
    """Write ``hyperparams.yaml`` for ``WhisperASR.from_hparams`` (no path stored in it)."""
    path = Path(out_dir) / HPARAMS_FILE
    path.write_text(_HPARAMS.format(language=language), encoding="utf-8")
    return path


def speechbrain_overrides(folder: str | Path) -> dict[str, str]:
    """HyperPyYAML overrides that load ``folder``'s ``hyperparams.yaml`` from where it is now.

    ``{"whisper_source": <absolute folder>}`` when the file has the ``whisper_source`` key (our
    exports), else ``{}`` (any other SpeechBrain folder).

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = write_speechbrain_hparams(folder)
    >>> speechbrain_overrides(folder) == {"whisper_source": str(folder.absolute())}
    True
    >>> speechbrain_overrides(tempfile.mkdtemp())
    {}
    """
    path = Path(folder) / HPARAMS_FILE
    if not path.is_file():
        return {}
    keys = {line.split(":", 1)[0] for line in path.read_text(encoding="utf-8").splitlines()}
    return {SOURCE_KEY: str(Path(folder).absolute())} if SOURCE_KEY in keys else {}


def load_whisper_asr(folder: str | Path, **kwargs: Any):
    """``speechbrain.inference.ASR.WhisperASR`` of an exported folder, offline, wherever it lies.

    ``kwargs`` go to ``from_hparams`` (``run_opts``, ``freeze_params``, ...).
    """
    import os

    from speechbrain.inference.ASR import WhisperASR
    from speechbrain.utils.fetching import FetchConfig

    path = Path(folder).absolute()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    kwargs.setdefault("fetch_config", FetchConfig(allow_network=False))
    return WhisperASR.from_hparams(
        source=str(path), savedir=str(path), overrides=speechbrain_overrides(path), **kwargs
    )


def hf_config_for(dims: Any, tokenizer: Any, ct2_config: dict[str, Any]) -> tuple[Any, Any]:
    """``(WhisperConfig, GenerationConfig)`` for CTranslate2 ``dims`` and its ``config.json``."""
    from transformers import GenerationConfig, WhisperConfig

    ids = tokenizer.convert_tokens_to_ids
    eot, sot = ids("<|endoftext|>"), ids("<|startoftranscript|>")
    suppress = list(ct2_config.get("suppress_ids") or [])
    begin = list(ct2_config.get("suppress_ids_begin") or [220, eot])
    config = WhisperConfig(
        vocab_size=dims.vocab_size,
        num_mel_bins=dims.n_mels,
        encoder_layers=dims.encoder_layers,
        encoder_attention_heads=dims.encoder_heads,
        decoder_layers=dims.decoder_layers,
        decoder_attention_heads=dims.decoder_heads,
        encoder_ffn_dim=dims.encoder_ffn,
        decoder_ffn_dim=dims.decoder_ffn,
        d_model=dims.d_model,
        max_source_positions=dims.max_source_positions,
        max_target_positions=dims.max_target_positions,
        decoder_start_token_id=sot,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        suppress_tokens=suppress,
        begin_suppress_tokens=begin,
        tie_word_embeddings=True,
    )
    multilingual = dims.vocab_size >= 51865  # OpenAI's rule: the .en models have 51864 tokens
    gen = GenerationConfig(
        decoder_start_token_id=sot,
        eos_token_id=eot,
        pad_token_id=eot,
        bos_token_id=eot,
        max_length=dims.max_target_positions,
        suppress_tokens=suppress,
        begin_suppress_tokens=begin,
        no_timestamps_token_id=ids("<|notimestamps|>"),
        prev_sot_token_id=ids("<|startofprev|>"),
        is_multilingual=multilingual,
        return_timestamps=False,
    )
    if ct2_config.get("alignment_heads"):
        gen.alignment_heads = [list(h) for h in ct2_config["alignment_heads"]]
    if multilingual:
        gen.lang_to_id = {
            tokenizer.convert_ids_to_tokens(i): i for i in ct2_config.get("lang_ids", [])
        }
        gen.task_to_id = {"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")}
    return config, gen


def write_export_folder(
    out_dir: Path,
    state_dict: dict[str, torch.Tensor],
    config: Any,
    generation_config: Any,
    tokenizer: Any,
    language: str = "en",
) -> Path:
    """Build the HF model from ``state_dict`` (strict) and write the whole exported folder."""
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):  # the throw-away init must not move the global RNG
        model = WhisperForConditionalGeneration(config)
    model.load_state_dict(state_dict, strict=True)
    model.generation_config = generation_config
    model.eval()
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(out_dir)
    write_speechbrain_hparams(out_dir, language)
    return out_dir
