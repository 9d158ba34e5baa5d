"""The manifest reader that pretraining and evaluation used (``cl_ssvdo.asr.data.ManifestSpeech``),
now :class:`cl_ssvdo.data.ManifestDataset`: its assertions, on the one reader."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from cl_ssvdo.data import ManifestDataset, ManifestError, concat_manifests, normalize_transcript


def test_normalize_text() -> None:
    """Was ``cl_ssvdo.asr.data.normalize_text``, now the one normaliser."""
    assert normalize_transcript("Don't  STOP, now!") == "don't stop now"


def _manifest(tmp_path, rows: list[str], header="ID,duration,wav,spk_id,wrd,domain") -> str:
    (tmp_path / "manifests").mkdir(exist_ok=True)
    path = tmp_path / "manifests" / "d_test.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return str(path)


def test_manifest_reader(tmp_path) -> None:
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "a.wav", np.zeros(1600, dtype=np.float32), 16000)
    sf.write(tmp_path / "audio" / "b.wav", np.zeros(800, dtype=np.float32), 8000)
    path = _manifest(
        tmp_path, ["a,0.1,audio/a.wav,s1,Hello World,adult", "b,0.1,audio/b.wav,s2,x,child"]
    )
    ds = ManifestDataset(path)
    assert len(ds) == 2 and ds.speakers == ["s1", "s2"] and ds.domains == ["adult", "child"]
    wav, words, utt = ds[0]
    assert wav.shape == (1600,) and words == "hello world" and utt == "a"
    with pytest.raises(ValueError, match="b.wav is 8000 Hz"):
        ds[1]
    both = concat_manifests([path, path])
    assert len(both) == 4 and both.ids == ["a", "b", "a", "b"]


def test_manifest_errors_name_the_problem(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"missing column\(s\) \['duration'\]"):
        ManifestDataset(_manifest(tmp_path, [], header="ID,wav,wrd"))
    with pytest.raises(ValueError, match="row ID 'a', field 'duration'"):
        ManifestDataset(_manifest(tmp_path, ["a,abc,a.wav,s,x,d"]))
    with pytest.raises(ManifestError, match="nope.csv: manifest file not found"):
        ManifestDataset(tmp_path / "nope.csv")
