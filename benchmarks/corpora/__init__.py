"""Preparers that turn local copies of real corpora into the stream layout (no downloads).

Each takes a path to the corpus and an output stream root, writes
``manifests/<domain>_<split>.csv`` and merges ``stream.json`` so that several preparers can
build one stream (e.g. LibriSpeech adult, then MyST child, then Common Voice accents).
"""

from benchmarks.corpora.cgn import prepare_cgn
from benchmarks.corpora.common import CorpusError
from benchmarks.corpora.commonvoice import prepare_commonvoice
from benchmarks.corpora.generic import prepare_generic
from benchmarks.corpora.l2arctic import prepare_l2arctic
from benchmarks.corpora.librispeech import prepare_librispeech
from benchmarks.corpora.myst import prepare_myst

__all__ = [
    "CorpusError",
    "prepare_cgn",
    "prepare_commonvoice",
    "prepare_generic",
    "prepare_l2arctic",
    "prepare_librispeech",
    "prepare_myst",
]
