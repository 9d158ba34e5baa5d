"""The real Whisper tiny.en: export from the pinned package, transcribe a generated adult clip."""

from __future__ import annotations

import re
import shutil
import subprocess

import jiwer
import pytest
import soundfile as sf
import torch
import torchaudio

from experiments.cli import main

TEXT = "please turn on the kitchen lights and close the window"


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]+", " ", text.lower()).split())


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_tiny_en_export_transcribes_an_adult_clip(tmp_path, monkeypatch):
    from speechbrain.inference.ASR import WhisperASR

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    raw, wav = tmp_path / "raw.wav", tmp_path / "adult.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "140", "-w", str(raw), TEXT], check=True)
    audio, sr = sf.read(raw, dtype="float32")
    sf.write(wav, torchaudio.functional.resample(torch.from_numpy(audio), sr, 16000).numpy(), 16000)

    out = tmp_path / "whisper-tiny.en"
    assert main(["models", "export", "whisper-tiny.en", str(out)]) == 0
    asr = WhisperASR.from_hparams(
        source=str(out), savedir=str(out), overrides={"whisper_source": str(out)}
    )
    segments = asr.transcribe_file(str(wav))
    hyp = " ".join(s.words for s in segments)
    wer = jiwer.wer(_norm(TEXT), _norm(hyp))
    assert wer <= 0.2, (hyp, wer)
    for word in ("kitchen", "lights", "window"):
        assert word in _norm(hyp).split()
