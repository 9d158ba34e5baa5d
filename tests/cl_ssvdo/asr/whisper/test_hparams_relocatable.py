"""An exported Whisper folder stores no path: ``hyperparams.yaml`` names its own folder by a
placeholder filled at load, so the folder loads in SpeechBrain after being moved."""

from __future__ import annotations

import re
import shutil

import pytest
import torch

from cl_ssvdo.asr.pretrained import load_speechbrain_asr
from cl_ssvdo.asr.whisper.hf_folder import HPARAMS_FILE, load_whisper_asr, speechbrain_overrides
from cl_ssvdo.asr.whisper.registry import export_model
from cl_ssvdo.asr.whisper.tiny import save_tiny_whisper


@pytest.fixture(scope="module")
def moved(tmp_path_factory):
    """A tiny HF Whisper exported, then moved elsewhere; (moved folder, reference state)."""
    from transformers import WhisperForConditionalGeneration

    root = tmp_path_factory.mktemp("relocate")
    source = save_tiny_whisper(root / "hf")
    out = export_model(source, root / "export" / "whisper")
    state = WhisperForConditionalGeneration.from_pretrained(source).model.state_dict()
    text = (out / HPARAMS_FILE).read_text(encoding="utf-8")
    assert str(root) not in text and str(root.resolve()) not in text
    return shutil.move(str(out), str(root / "elsewhere")), state, text


def test_hyperparams_store_no_absolute_path(moved) -> None:
    _, _, text = moved
    values = [line.split(":", 1)[1] for line in text.splitlines() if re.match(r"^\s*\w+:", line)]
    assert not [v for v in values if re.search(r"(^|[\s\"'])(/|[A-Za-z]:\\)", v)], values
    assert re.search(r"^whisper_source: !PLACEHOLDER", text, re.M)


def test_moved_folder_loads_with_its_weights(moved, monkeypatch) -> None:
    folder, state, _ = moved
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert speechbrain_overrides(folder) == {"whisper_source": str(folder)}
    for asr in (load_whisper_asr(folder), load_speechbrain_asr(folder)):
        assert type(asr).__name__ == "WhisperASR"
        loaded = asr.mods.whisper.model.state_dict()
        assert loaded.keys() == state.keys()
        assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_plain_from_hparams_names_the_missing_folder(moved, monkeypatch) -> None:
    from speechbrain.inference.ASR import WhisperASR

    folder, _, _ = moved
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="whisper_source"):
        WhisperASR.from_hparams(source=folder, savedir=folder)
