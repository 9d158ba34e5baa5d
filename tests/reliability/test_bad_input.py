"""Bad input is named (file, row, field, reason) or, with policy ``skip``, dropped and listed:
real wav files with 0 frames, 8 kHz, two channels, a 3,000-word transcript on 2 s; Latin-1 and
BOM manifests."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from benchmarks.validate import validate_manifest
from cl_ssvdo.data import (
    ManifestDataset,
    ManifestError,
    ManifestRow,
    normalize_transcript,
    read_manifest,
    write_manifest,
)


def _tone(seconds: float, rate: int = 16000, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


def _stream(tmp_path, clips: dict[str, tuple[np.ndarray, int, str]]):
    rows = []
    for utt, (audio, rate, words) in clips.items():
        sf.write(tmp_path / f"{utt}.wav", audio, rate, subtype="PCM_16")
        rows.append(ManifestRow(utt, len(audio) / rate, f"{utt}.wav", "s1", words, "d"))
    return write_manifest(tmp_path / "d_test.csv", rows)


BAD = {
    "empty": (np.zeros(0, dtype=np.float32), 16000, "hello", "no audio frames"),
    "narrow": (_tone(1.0, 8000), 8000, "hello", "sample rate 8000 Hz"),
    "stereo": (_tone(1.0, channels=2), 16000, "hello", "2 channels"),
    "chatty": (_tone(2.0), 16000, " ".join(["word"] * 3000), "too long for its audio"),
}


@pytest.mark.parametrize("utt", sorted(BAD))
def test_each_bad_row_is_named(utt, tmp_path) -> None:
    audio, rate, words, reason = BAD[utt]
    manifest = _stream(tmp_path, {"good": (_tone(1.0), 16000, "fine"), utt: (audio, rate, words)})
    with pytest.raises(ManifestError, match=reason) as err:
        validate_manifest(manifest, policy="error", sample_rate=16000)
    assert err.value.row_id == utt and str(manifest) in str(err.value)
    assert err.value.field == ("wrd" if utt == "chatty" else "wav")


def test_skip_drops_counts_and_lists_in_the_given_folder(tmp_path) -> None:
    clips = {"good": (_tone(1.0), 16000, "fine")}
    clips.update({u: (a, r, w) for u, (a, r, w, _) in BAD.items()})
    manifest = _stream(tmp_path, clips)
    run_dir = tmp_path / "run"
    report = validate_manifest(manifest, policy="skip", sample_rate=16000, skipped_dir=run_dir)
    assert report.n_kept == 1 and sorted(report.skipped_ids) == sorted(BAD)
    assert report.skipped_file == run_dir / "d_test.skipped.tsv"
    assert len(report.skipped_file.read_text().splitlines()) == 1 + len(BAD)
    assert not (tmp_path / "d_test.skipped.tsv").exists()  # the stream folder is not written


def test_a_header_only_wav_is_named_when_loaded(tmp_path) -> None:
    manifest = _stream(tmp_path, {"empty": (np.zeros(0, dtype=np.float32), 16000, "hi")})
    with pytest.raises(ManifestError, match="no audio frames") as err:
        ManifestDataset(manifest, root=tmp_path)[0]
    assert err.value.row_id == "empty" and err.value.field == "wav"


def test_latin1_is_named_and_a_bom_is_accepted(tmp_path) -> None:
    manifest = _stream(tmp_path, {"good": (_tone(1.0), 16000, "cafe")})
    text = manifest.read_text(encoding="utf-8").replace("cafe", "café")
    manifest.write_bytes(text.encode("latin-1"))
    with pytest.raises(ManifestError, match=r"not UTF-8: byte 0xe9 on line 2"):
        read_manifest(manifest)
    manifest.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert [r.wrd for r in read_manifest(manifest)] == ["café"]


def test_one_normaliser_keeps_words_apart_and_spells_digits() -> None:
    assert normalize_transcript("three@three#six") == "three three six"
    assert normalize_transcript("call 3 3 6 \U0001f600 now!") == "call three three six now"


def test_a_run_with_validate_skip_reports_the_dropped_rows(
    tiny_config, tiny_stream, store_uri, tmp_path
) -> None:
    """``stream.validate: skip`` in a real run: the dropped rows are counted in the run output
    (a warning) and in MLflow (param ``data.skipped_rows``, the listing as an artifact), and the
    stream folder is not written."""
    import shutil
    import warnings

    from mlflow.tracking import MlflowClient

    from experiments.runner import run_experiment

    root = tmp_path / "stream"
    shutil.copytree(tiny_stream.root, root)
    manifest = root / "manifests" / "child_test.csv"
    lines = manifest.read_text().splitlines()
    lines.append(
        lines[1].replace(lines[1].split(",")[0], "bad_missing_wav", 1).replace(".wav", "_gone.wav")
    )
    manifest.write_text("\n".join(lines) + "\n")
    cfg = tiny_config("naive", {"stream.root": str(root), "stream.validate": "skip"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_experiment(cfg, seed=0, tracking_uri=store_uri, progress=False)
    said = [str(w.message) for w in caught if "dropped" in str(w.message)]
    assert said and "dropped 1 rows" in said[0]
    params = MlflowClient(store_uri).get_run(result.run_id).data.params
    assert params["data.skipped_rows"] == "1"
    listing = result.run_dir / "artifacts" / "child_test.skipped.tsv"
    assert "bad_missing_wav" in listing.read_text()
    assert not list(root.glob("manifests/*.skipped.tsv"))
    artifacts = {a.path for a in MlflowClient(store_uri).list_artifacts(result.run_id)}
    assert "child_test.skipped.tsv" in artifacts


def test_a_run_on_a_resampling_stream_counts_the_resampled_rows(
    tiny_config, tiny_stream, store_uri, tmp_path
) -> None:
    """A stream that allows resampling (``"resample": true``, as corpus streams write) may hold
    files at another rate: the run says how many up front (a warning) and logs it (param
    ``data.resampled_rows``); nothing is resampled silently."""
    import json
    import shutil
    import warnings

    import soundfile as sf
    from mlflow.tracking import MlflowClient

    from cl_ssvdo.data import read_manifest, resolve_wav
    from experiments.runner import run_experiment

    root = tmp_path / "stream"
    shutil.copytree(tiny_stream.root, root)
    row = read_manifest(root / "manifests" / "child_train.csv")[0]
    wav = resolve_wav(row.wav, root)
    data, rate = sf.read(wav)
    sf.write(wav, data[::2], rate // 2)  # the same file, recorded at half the rate
    meta = json.loads((root / "stream.json").read_text())
    (root / "stream.json").write_text(json.dumps({**meta, "resample": True}))
    cfg = tiny_config("naive", {"stream.root": str(root)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_experiment(cfg, seed=0, tracking_uri=store_uri, progress=False)
    said = [str(w.message) for w in caught if "resampling" in str(w.message)]
    assert said and "resampling 1 rows" in said[0] and "child_train 1" in said[0]
    params = MlflowClient(store_uri).get_run(result.run_id).data.params
    assert params["data.resampled_rows"] == "1"
