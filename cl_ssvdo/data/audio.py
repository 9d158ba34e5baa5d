"""Reading one audio file as the models expect it: mono float32 at the stream's sample rate.

One rule for pretraining, the continual run and evaluation: a file at another rate is an error
naming the file and both rates, unless the caller asks for resampling (``resample=True``, set
from a stream whose ``stream.json`` says ``"resample": true``, as the corpus preparers write
for the native-rate files they link in place).

Depends on numpy, soundfile and torchaudio (resampling only).
"""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf
import torch

__all__ = ["SampleRateError", "read_audio"]


class SampleRateError(ValueError):
    """An audio file is not at the expected rate and resampling was not asked for."""

    def __init__(self, path: str | os.PathLike, rate: int, expected: int) -> None:
        self.path, self.rate, self.expected = str(path), int(rate), int(expected)
        super().__init__(
            f"{self.path} is {self.rate} Hz, expected {self.expected} Hz (convert the file, or "
            'allow resampling: resample=True / "resample": true in stream.json)'
        )


def read_audio(
    path: str | os.PathLike, sample_rate: int = 16000, resample: bool = False
) -> tuple[torch.Tensor, bool]:
    """Read ``path`` as mono float32; returns ``(wav, resampled)``.

    Multi-channel audio is averaged. Another rate raises :class:`SampleRateError` unless
    ``resample`` (then ``torchaudio.functional.resample`` to ``sample_rate``, and
    ``resampled`` is True).

    Returns
    -------
    wav : torch.Tensor
        Shape ``[T]``, float32, nominally in ``[-1, 1]``.
    resampled : bool

    Example
    -------
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "a.wav"
    >>> sf.write(f, np.zeros((800, 2), dtype="float32"), 8000)
    >>> read_audio(f, 8000)[0].shape
    torch.Size([800])
    >>> wav, resampled = read_audio(f, 16000, resample=True)
    >>> wav.shape, resampled
    (torch.Size([1600]), True)
    >>> read_audio(f, 16000)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    cl_ssvdo.data.audio.SampleRateError: .../a.wav is 8000 Hz, expected 16000 Hz ...
    """
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    wav = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    if rate == sample_rate:
        return wav, False
    if not resample:
        raise SampleRateError(path, rate, sample_rate)
    import torchaudio.functional as AF

    return AF.resample(wav, orig_freq=rate, new_freq=sample_rate), True
