"""Base model folders: ours are read as data (a tag appended to hyperparams.yaml never runs);
a foreign SpeechBrain folder, whose HyperPyYAML runs code, needs an explicit trust flag."""

from __future__ import annotations

import pytest
import torch

from cl_ssvdo.asr import CTCASR, build_asr
from cl_ssvdo.asr.pretrained import (
    HPARAMS_FILE,
    UntrustedFolderError,
    export_pretrained,
    load_pretrained,
)


def test_code_appended_to_our_folder_never_runs(char_tokenizer, tmp_path) -> None:
    torch.manual_seed(0)
    model = build_asr("ci", char_tokenizer.vocab_size)
    folder = export_pretrained(model, char_tokenizer, tmp_path / "base")
    marker = tmp_path / "pwned"
    with (folder / HPARAMS_FILE).open("a") as fh:
        fh.write(f"\npwn: !apply:os.mkdir [{str(marker)!r}]\n")
    loaded, tokenizer, preset = load_pretrained(folder)
    assert not marker.exists()
    assert isinstance(loaded, CTCASR) and preset == model.config
    assert tokenizer.charset == char_tokenizer.charset
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True)
    )


def test_a_foreign_folder_needs_trust(tmp_path, monkeypatch) -> None:
    marker = tmp_path / "pwned"
    folder = tmp_path / "foreign"
    folder.mkdir()
    (folder / HPARAMS_FILE).write_text(f"pwn: !apply:os.mkdir [{str(marker)!r}]\nmodules: {{}}\n")
    monkeypatch.delenv("CL_SSVDO_TRUST_FOLDER", raising=False)
    with pytest.raises(UntrustedFolderError, match="--trust-folder"):
        load_pretrained(folder)
    monkeypatch.setenv("CL_SSVDO_TRUST_FOLDER", "0")
    with pytest.raises(UntrustedFolderError):
        load_pretrained(folder, device="cpu")
    assert not marker.exists()
