"""Named models and bad input: every failure is a named error naming the file or folder."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

from cl_ssvdo.asr.whisper.convert import WhisperSpecError
from cl_ssvdo.asr.whisper.ct2 import (
    CT2TruncatedError,
    CT2UnknownDtypeError,
    CT2VersionError,
    read_model_bin,
    write_model_bin,
)
from cl_ssvdo.asr.whisper.registry import (
    MODELS,
    ChecksumMismatchError,
    ModelPackageMissingError,
    NamedModel,
    NotAWhisperFolderError,
    TokenizerMismatchError,
    UnknownModelError,
    WhisperFileMissingError,
    export_model,
    list_models,
)
from experiments.cli import main

from .test_convert import tiny_folders

pytest.importorskip("ctranslate2")

TINY_EN = MODELS["whisper-tiny.en"]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tiny_folders(tmp_path_factory.getbasetemp() / "tiny_whisper")


@pytest.fixture
def ct2_copy(tiny, tmp_path) -> Path:
    dst = tmp_path / "ct2"
    shutil.copytree(tiny["ct2_f32"], dst)
    return dst


def _linked_package_copy(dst: Path, skip: str = "") -> Path:
    """The shipped tiny.en folder as symlinks (no 75 MB copy), optionally without one file."""
    dst.mkdir()
    for f in TINY_EN.folder().iterdir():
        if f.is_file() and f.name != skip:
            (dst / f.name).symlink_to(f)
    return dst


def test_registry_lists_tiny_en_and_the_package_is_intact():
    assert [m.name for m in list_models()] == ["whisper-tiny.en"]
    assert TINY_EN.verify() == TINY_EN.folder()


def test_changed_model_bin_is_a_checksum_error(tmp_path):
    src = _linked_package_copy(tmp_path / "pkg", skip="model.bin")
    data = bytearray((TINY_EN.folder() / "model.bin").read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, still a valid float16 file
    (src / "model.bin").write_bytes(bytes(data))
    with pytest.raises(
        ChecksumMismatchError, match=r"model\.bin has sha256 [0-9a-f]{64}, expected 1a5afae0"
    ):
        TINY_EN.export(tmp_path / "out", folder=src)
    assert not (tmp_path / "out").exists()  # nothing written on a failed check


@pytest.mark.parametrize(
    "missing", ["model.bin", "tokenizer.json", "vocabulary.txt", "config.json"]
)
def test_missing_file_of_the_named_model_is_named(tmp_path, missing):
    src = _linked_package_copy(tmp_path / "pkg", skip=missing)
    with pytest.raises(WhisperFileMissingError, match=missing.replace(".", r"\.")):
        TINY_EN.verify(src)


def test_missing_package_is_a_named_error():
    ghost = NamedModel("ghost", "cl-ssvdo-no-such-models", "9.9", "model", "0" * 64, "absent")
    with pytest.raises(ModelPackageMissingError, match="pip install cl-ssvdo-no-such-models==9.9"):
        ghost.verify()


def test_truncated_model_bin(ct2_copy, tmp_path):
    path = ct2_copy / "model.bin"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        CT2TruncatedError, match=r"model\.bin: truncated .* needed \d+ bytes for the data of"
    ):
        export_model(ct2_copy, tmp_path / "out")


def test_bad_magic(ct2_copy, tmp_path):
    path = ct2_copy / "model.bin"
    path.write_bytes(struct.pack("<I", 5) + path.read_bytes()[4:])
    with pytest.raises(CT2VersionError, match="first uint32 is 5"):
        export_model(ct2_copy, tmp_path / "out")


def test_unknown_dtype_names_the_variable(ct2_copy, tmp_path):
    path = ct2_copy / "model.bin"
    data = bytearray(path.read_bytes())
    pos = 4
    pos += 2 + struct.unpack_from("<H", data, pos)[0] + 8  # spec name, revision, count
    name_len = struct.unpack_from("<H", data, pos)[0]
    name = data[pos + 2 : pos + 1 + name_len].decode()
    pos += 2 + name_len
    rank = data[pos]
    data[pos + 1 + 4 * rank] = 9
    path.write_bytes(bytes(data))
    with pytest.raises(CT2UnknownDtypeError, match=f"variable '{name}' has unknown dtype id 9"):
        export_model(ct2_copy, tmp_path / "out")


def test_non_whisper_spec(ct2_copy, tmp_path):
    m = read_model_bin(ct2_copy / "model.bin")
    m.spec = "TransformerSpec"
    write_model_bin(ct2_copy / "model.bin", m)
    with pytest.raises(WhisperSpecError, match="'TransformerSpec'"):
        export_model(ct2_copy, tmp_path / "out")


def test_folder_that_is_neither(tmp_path):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (junk / "model.safetensors").write_bytes(b"")
    with pytest.raises(NotAWhisperFolderError, match=f"{junk} is neither"):
        export_model(junk, tmp_path / "out")
    with pytest.raises(UnknownModelError, match="whisper-tiny.en"):
        export_model("whisper-huge.xx", tmp_path / "out")


def test_vocabulary_shorter_than_the_embedding(ct2_copy, tmp_path):
    voc = ct2_copy / "vocabulary.json"
    voc.write_text(json.dumps(json.loads(voc.read_text())[:-1]))
    with pytest.raises(
        TokenizerMismatchError, match=r"vocabulary\.json has 51863 tokens but .* 51864 rows"
    ):
        export_model(ct2_copy, tmp_path / "out")


def test_vocabulary_disagreeing_with_tokenizer_json(ct2_copy, tmp_path):
    voc = ct2_copy / "vocabulary.json"
    tokens = json.loads(voc.read_text())
    tokens[100], tokens[101] = tokens[101], tokens[100]
    voc.write_text(json.dumps(tokens))
    with pytest.raises(TokenizerMismatchError, match="disagree on 2 token id.*first id 100"):
        export_model(ct2_copy, tmp_path / "out")


def test_hf_folder_whose_tokenizer_does_not_fit_the_config(tiny, tmp_path):
    src = tmp_path / "hf"
    shutil.copytree(tiny["hf"], src)
    cfg = json.loads((src / "config.json").read_text())
    cfg["decoder_start_token_id"] = 50258
    (src / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(
        TokenizerMismatchError, match=r"<\|startoftranscript\|> to id 50257.*expects 50258"
    ):
        export_model(src, tmp_path / "out")


def test_cli_models_list_and_export(tiny, tmp_path, capsys):
    assert main(["models", "list"]) == 0
    assert "whisper-tiny.en" in capsys.readouterr().out
    assert main(["models", "export", str(tmp_path), str(tmp_path / "out")]) == 1
    assert f"cl-ssvdo models export: {tmp_path} is neither" in capsys.readouterr().err
    assert main(["models", "export", str(tiny["ct2_f16"]), str(tmp_path / "ok")]) == 0
    assert "exported" in capsys.readouterr().out
    assert (tmp_path / "ok" / "hyperparams.yaml").is_file()
