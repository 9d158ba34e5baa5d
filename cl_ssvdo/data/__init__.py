"""The data contract, one home for the ASR code (``cl_ssvdo.asr``) and ``benchmarks``.

- :mod:`.manifest`: manifest rows, CSV reading (validated, errors name file/row/field) and
  writing; columns ``ID,duration,wav,spk_id,wrd,domain``.
- :mod:`.text`: :func:`normalize_transcript`, the one transcript normaliser.
- :mod:`.audio`: :func:`read_audio`, mono float32 at the stream's rate (another rate raises
  unless resampling is asked for).
- :mod:`.dataset`: :class:`ManifestDataset`, item ``(wav FloatTensor[T], wrd, utt_id)``, and
  :func:`concat_manifests`.
- :mod:`.batch`: :func:`collate_speech` -> :class:`SpeechBatch` ``(wavs [B, T_max], wav_lens [B]
  relative, words, ids)``.
- :mod:`.stream`: :class:`StreamInfo`, reading ``stream.json``.
- :mod:`.scoring`: WER/CER with jiwer.

Depends on torch, soundfile, torchaudio and jiwer; never on models, avalanche, mlflow,
``benchmarks``, ``strategies`` or ``experiments``.

>>> from cl_ssvdo.data import collate_speech, normalize_transcript, wer
>>> normalize_transcript("Room 42!"), wer(["a b"], ["a c"])
('room four two', 50.0)
"""

from .audio import SampleRateError, read_audio
from .batch import SpeechBatch, collate_speech
from .dataset import ManifestDataset, concat_manifests
from .manifest import (
    MANIFEST_COLUMNS,
    ManifestError,
    ManifestRow,
    default_root,
    read_manifest,
    resolve_wav,
    write_manifest,
)
from .scoring import cer, error_counts, error_rate, utterance_error_counts, wer
from .stream import (
    DEFAULT_SPLITS,
    STREAM_FILE,
    StreamError,
    StreamInfo,
    manifest_path,
    stream_resamples,
)
from .text import ALLOWED_CHARS, normalize_transcript

__all__ = [
    "ALLOWED_CHARS",
    "DEFAULT_SPLITS",
    "MANIFEST_COLUMNS",
    "STREAM_FILE",
    "ManifestDataset",
    "ManifestError",
    "ManifestRow",
    "SampleRateError",
    "SpeechBatch",
    "StreamError",
    "StreamInfo",
    "cer",
    "collate_speech",
    "concat_manifests",
    "default_root",
    "error_counts",
    "error_rate",
    "manifest_path",
    "normalize_transcript",
    "read_audio",
    "read_manifest",
    "resolve_wav",
    "stream_resamples",
    "utterance_error_counts",
    "wer",
    "write_manifest",
]
