"""Pretrained Whisper models: import (CTranslate2 -> HF/SpeechBrain folder) and training.

Import (see docs/whisper.md): :func:`cl_ssvdo.asr.whisper.registry.export_model` turns the
registered ``whisper-tiny.en`` or a local CTranslate2 / Hugging Face Whisper folder into a folder
that ``transformers`` and SpeechBrain's ``WhisperASR`` load offline; ``cl-ssvdo models export``
is its command line. Modules: ``ct2`` (model.bin reader), ``convert`` (weight mapping),
``hf_folder`` (folder detection, tokenizer, hyperparams.yaml), ``registry`` (names, checks).
"""
