"""Every entry point reads data the same way (issue 14, 5): pretraining, the continual run's
benchmark and evaluation go through one reader (``cl_ssvdo.data``), so an 8 kHz file, a
header-only wav or a transcript with digits and symbols gets one treatment everywhere, named
by manifest, row, field and reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from benchmarks.stream import make_benchmark, write_stream_json
from cl_ssvdo.asr import CharTokenizer, evaluate_folder, export_pretrained
from cl_ssvdo.asr.pretrain import build_seeded_asr
from cl_ssvdo.asr.pretrain import main as pretrain_main
from cl_ssvdo.data import ManifestError, ManifestRow, write_manifest

ROOT = Path(__file__).resolve().parents[2]


def _clip(root: Path, utt: str, seconds: float, rate: int) -> str:
    t = np.arange(int(seconds * rate)) / rate
    (root / "audio").mkdir(parents=True, exist_ok=True)
    sf.write(
        root / "audio" / f"{utt}.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype("float32"), rate
    )
    return f"audio/{utt}.wav"


def _stream(
    root: Path, utt: str, seconds: float, rate: int, words: str = "hello", resample: bool = False
) -> Path:
    """A one-domain stream whose only clip is ``utt``; returns its test manifest."""
    for split in ("train", "valid", "test"):
        wav = _clip(root, utt, seconds, rate)
        write_manifest(
            root / "manifests" / f"d_{split}.csv", [ManifestRow(utt, seconds, wav, "s", words, "d")]
        )
    write_stream_json(root, "probe", ["d"], ("train", "valid", "test"), resample=resample)
    return root / "manifests" / "d_test.csv"


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory) -> Path:
    tok = CharTokenizer()
    return export_pretrained(
        build_seeded_asr("ci", tok.vocab_size, 0), tok, tmp_path_factory.mktemp("base") / "ci"
    )


@pytest.mark.parametrize(
    "utt, seconds, rate, reason",
    [
        ("narrow", 1.0, 8000, r"8000 Hz, expected 16000 Hz"),
        ("empty", 0.0, 16000, "no audio frames"),
    ],
)
def test_bad_audio_gets_the_same_named_error_from_every_entry_point(
    tmp_path, base_folder, utt, seconds, rate, reason
) -> None:
    manifest = _stream(tmp_path / "s", utt, seconds, rate)
    where = rf"d_test\.csv: row ID '{utt}', field 'wav': .*{reason}"
    with pytest.raises(ManifestError, match=where):  # cl-ssvdo evaluate / python -m ...evaluate
        evaluate_folder(base_folder, [manifest], device="cpu", progress=False)
    with pytest.raises(ManifestError, match=where.replace("test", "train")):  # pretraining
        pretrain_main(
            ["--stream", str(tmp_path / "s"), "--out-dir", str(tmp_path / "out"), "--preset",
             "ci", "--max-steps", "1", "--threads", "1", "--no-progress"]
        )  # fmt: skip
    bench = make_benchmark(tmp_path / "s", splits=("test",))  # the continual run
    with pytest.raises(ManifestError, match=where):
        bench.test_stream[0].dataset[0]


def test_a_stream_that_asks_for_resampling_is_resampled_everywhere(tmp_path, base_folder) -> None:
    manifest = _stream(tmp_path / "s", "narrow", 1.0, 8000, resample=True)
    report = evaluate_folder(base_folder, [manifest], device="cpu", progress=False)
    assert [u.id for u in report.utterances] == ["narrow"]
    summary = pretrain_main(
        ["--stream", str(tmp_path / "s"), "--out-dir", str(tmp_path / "out"), "--preset", "ci",
         "--max-steps", "1", "--threads", "1", "--no-progress", "--patience", "0"]
    )  # fmt: skip
    assert summary["steps"] == 1 and set(summary["test_wer"]) == {"d"}
    wav, _, _ = make_benchmark(tmp_path / "s", splits=("test",)).test_stream[0].dataset[0]
    assert wav.numel() == 16000


def test_the_evaluate_command_names_the_row_without_a_traceback(tmp_path, base_folder) -> None:
    manifest = _stream(tmp_path / "s", "narrow", 1.0, 8000)
    proc = subprocess.run(
        [sys.executable, "-m", "cl_ssvdo.asr.evaluate", str(base_folder), str(manifest)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "row ID 'narrow', field 'wav'" in proc.stderr and "8000 Hz" in proc.stderr


def test_one_normaliser_for_training_and_scoring_references(tmp_path, base_folder) -> None:
    """``3 3 6`` was spelled out by the run's reader and emptied by pretraining's; symbols were
    spaces in one and deleted in the other. Now the reference is the same everywhere."""
    manifest = _stream(tmp_path / "s", "digits", 1.0, 16000, words="Call 3 3 6, three@six!")
    expected = "call three three six three six"
    bench = make_benchmark(tmp_path / "s", splits=("train", "test"))
    assert bench.train_stream[0].dataset[0][1] == expected
    report = evaluate_folder(base_folder, [manifest], device="cpu", progress=False)
    assert report.utterances[0].ref == expected
