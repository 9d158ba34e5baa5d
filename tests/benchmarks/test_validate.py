import numpy as np
import pytest
import soundfile as sf

from benchmarks.validate import skipped_ids_path, validate_manifest
from cl_ssvdo.data import ManifestError, ManifestRow, write_manifest

from .helpers import write_tone


def _good(tmp_path, name="good", seconds=1.0):
    write_tone(tmp_path / "audio" / f"{name}.wav", seconds=seconds)
    return ManifestRow(name, seconds, f"audio/{name}.wav", "s", "hello world", "d")


def _bad_cases(tmp_path):
    """(row, field, message) for every bad-input case."""
    audio = tmp_path / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    (audio / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    sf.write(str(audio / "silent.wav"), np.zeros(16000, dtype=np.float32), 16000)
    write_tone(audio / "short.wav", seconds=0.05)
    write_tone(audio / "ok.wav", seconds=1.0)
    return [
        (
            ManifestRow("missing", 1.0, "audio/nothere.wav", "s", "a b", "d"),
            "wav",
            "audio file not found",
        ),
        (
            ManifestRow("corrupt", 1.0, "audio/corrupt.wav", "s", "a b", "d"),
            "wav",
            "unreadable or corrupt",
        ),
        (ManifestRow("silent", 1.0, "audio/silent.wav", "s", "a b", "d"), "wav", "silent"),
        (ManifestRow("short", 0.05, "audio/short.wav", "s", "a b", "d"), "wav", "too short"),
        (ManifestRow("empty", 1.0, "audio/ok.wav", "s", " ?! ", "d"), "wrd", "empty transcript"),
        (
            ManifestRow("charset", 1.0, "audio/ok.wav", "s", "qq zz", "d"),
            "wrd",
            "outside the charset: 'qz'",
        ),
        (
            ManifestRow("mismatch", 2.5, "audio/ok.wav", "s", "a b", "d"),
            "duration",
            "duration mismatch",
        ),
    ]


CHARSET = set("abcdefghijklmnoprstuvwxy'")  # no q, no z


def test_clean_manifest_passes(tmp_path):
    path = write_manifest(tmp_path / "manifests" / "d_train.csv", [_good(tmp_path)])
    report = validate_manifest(path, charset=CHARSET)
    assert report.ok and report.n_rows == report.n_kept == 1
    assert report.hours_kept == pytest.approx(1 / 3600)


@pytest.mark.parametrize("case", range(7))
def test_each_bad_row_raises_named_error(tmp_path, case):
    row, fld, message = _bad_cases(tmp_path)[case]
    path = write_manifest(tmp_path / "manifests" / "d_train.csv", [_good(tmp_path), row])
    with pytest.raises(ManifestError, match=message) as info:
        validate_manifest(path, charset=CHARSET)
    err = info.value
    assert (err.row_id, err.field, err.path) == (row.ID, fld, path)
    assert f"row ID {row.ID!r}, field {fld!r}" in str(err) and "d_train.csv" in str(err)


def test_skip_policy_counts_and_lists(tmp_path):
    cases = _bad_cases(tmp_path)
    rows = [_good(tmp_path)] + [row for row, _, _ in cases]
    path = write_manifest(tmp_path / "manifests" / "d_train.csv", rows)
    report = validate_manifest(path, charset=CHARSET, policy="skip")
    assert report.n_rows == 8 and report.n_kept == 1 and report.n_skipped == 7
    assert report.skipped_ids == [row.ID for row, _, _ in cases]
    assert [s.field for s in report.skipped] == [fld for _, fld, _ in cases]
    listing = skipped_ids_path(path)
    assert report.skipped_file == listing and listing.parent == path.parent
    lines = listing.read_text().splitlines()
    assert (
        lines[0] == "ID\tfield\treason"
        and [ln.split("\t")[0] for ln in lines[1:]] == report.skipped_ids
    )
    assert "7 skipped" in report.summary()
    # fixed manifest: the stale listing goes away
    write_manifest(path, [_good(tmp_path)])
    assert validate_manifest(path, policy="skip").ok and not listing.exists()


def test_structural_errors_always_raise(tmp_path):
    (tmp_path / "nocol.csv").write_text("ID,duration,wav\nu,1.0,a.wav\n")
    with pytest.raises(ManifestError, match=r"field 'wrd'.*missing column"):
        validate_manifest(tmp_path / "nocol.csv", policy="skip")
    (tmp_path / "dup.csv").write_text("ID,duration,wav,wrd\nu,1.0,a.wav,a\nu,1.0,a.wav,b\n")
    with pytest.raises(ManifestError, match=r"row ID 'u', field 'ID': duplicate"):
        validate_manifest(tmp_path / "dup.csv", policy="skip")
    (tmp_path / "dur.csv").write_text("ID,duration,wav,wrd\nu,abc,a.wav,a\n")
    with pytest.raises(ManifestError, match=r"row ID 'u', field 'duration'"):
        validate_manifest(tmp_path / "dur.csv")
    with pytest.raises(ManifestError, match="manifest file not found"):
        validate_manifest(tmp_path / "none.csv")
    with pytest.raises(ValueError, match="policy"):
        validate_manifest(tmp_path / "dur.csv", policy="drop")


def test_resampled_and_stereo_audio_needs_conversion_allowed(tmp_path):
    write_tone(
        tmp_path / "audio" / "st.flac", seconds=1.0, sample_rate=44100, channels=2, format="FLAC"
    )
    path = write_manifest(
        tmp_path / "m.csv", [ManifestRow("st", 1.0, "audio/st.flac", "", "ok", "")]
    )
    with pytest.raises(ManifestError, match="2 channels"):
        validate_manifest(path, sample_rate=16000)
    report = validate_manifest(path, sample_rate=16000, convert=True)
    assert report.ok and report.converted == 1
