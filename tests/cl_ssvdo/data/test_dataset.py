import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cl_ssvdo.data import (
    ManifestDataset,
    ManifestError,
    ManifestRow,
    SpeechBatch,
    collate_speech,
    write_manifest,
)
from tests.benchmarks.helpers import tiny_manifest, write_tone


def test_items_and_default_root(tmp_path):
    manifest = tiny_manifest(tmp_path, n=3)
    ds = ManifestDataset(manifest)
    assert len(ds) == 3 and ds.root == tmp_path.resolve()
    wav, wrd, utt_id = ds[1]
    assert wav.dtype == torch.float32 and wav.ndim == 1 and wav.numel() == 12000
    assert (wrd, utt_id) == ("word one", "u1")  # normalised: digits spelled out
    assert ds.durations == [0.5, 0.75, 1.0] and ds.speakers == ["spk"] * 3


def test_resamples_and_downmixes(tmp_path):
    write_tone(tmp_path / "a.flac", seconds=1.0, sample_rate=44100, channels=2)
    manifest = write_manifest(
        tmp_path / "m.csv", [ManifestRow("a", 1.0, "a.flac", "s", "Hello", "d")]
    )
    ds = ManifestDataset(manifest, sample_rate=16000, resample=True)
    wav, wrd, _ = ds[0]
    assert wav.ndim == 1 and abs(wav.numel() - 16000) <= 1 and wrd == "hello"
    assert ds.resampled_ids == {"a"}  # counted, never silent


def test_another_rate_is_an_error_unless_resampling_is_asked_for(tmp_path):
    """One rule for pretraining, the run and evaluation: the error names the manifest, the row,
    the file and both rates."""
    write_tone(tmp_path / "a.wav", seconds=0.5, sample_rate=8000)
    manifest = write_manifest(tmp_path / "m.csv", [ManifestRow("a", 0.5, "a.wav", "s", "x", "d")])
    pattern = r"m\.csv: row ID 'a', field 'wav': .*a\.wav is 8000 Hz, expected 16000 Hz"
    with pytest.raises(ManifestError, match=pattern):
        ManifestDataset(manifest)[0]
    ds = ManifestDataset(manifest, resample=True)
    assert ds[0][0].numel() == 8000 and ds.resampled_ids == {"a"}
    same_rate = ManifestDataset(manifest, sample_rate=8000, resample=True)
    assert same_rate[0][0].numel() == 4000 and same_rate.resampled_ids == set()


def test_exclude_ids_and_placeholder(tmp_path):
    manifest = tiny_manifest(tmp_path, n=3)
    ds = ManifestDataset(manifest, exclude_ids={"u0"})
    assert ds.ids == ["u1", "u2"]
    write_manifest(
        tmp_path / "x.csv", [ManifestRow("p", 0.5, "$data_root/audio/u0.wav", "", "a", "")]
    )
    assert ManifestDataset(tmp_path / "x.csv", root=tmp_path)[0][0].numel() == 8000


def test_unreadable_audio_names_row(tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"RIFF0000WAVEnot audio")
    manifest = write_manifest(tmp_path / "m.csv", [ManifestRow("b1", 1.0, "bad.wav", "", "a", "")])
    with pytest.raises(ManifestError, match=r"row ID 'b1', field 'wav'"):
        ManifestDataset(manifest)[0]


def test_missing_column_is_named(tmp_path):
    (tmp_path / "m.csv").write_text("ID,duration,wav\nu,1.0,a.wav\n")
    with pytest.raises(ManifestError, match="wrd"):
        ManifestDataset(tmp_path / "m.csv")


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=6))
def test_collate_pads_and_relative_lengths(lengths):
    items = [(torch.randn(n), f"w{i}", f"id{i}") for i, n in enumerate(lengths)]
    batch = collate_speech(items)
    assert isinstance(batch, SpeechBatch) and isinstance(batch, tuple) and len(batch) == 4
    t_max = max(max(lengths), 1)
    assert batch.wavs.shape == (len(lengths), t_max)
    for i, n in enumerate(lengths):
        assert torch.equal(batch.wavs[i, :n], items[i][0])
        assert torch.all(batch.wavs[i, n:] == 0)
        assert batch.wav_lens[i].item() == pytest.approx(n / t_max)
    if max(lengths) > 0:
        assert batch.wav_lens.max().item() == 1.0
    assert batch.words == [f"w{i}" for i in range(len(lengths))]
    assert batch.ids == [f"id{i}" for i in range(len(lengths))]
    moved = batch.to("cpu")
    assert isinstance(moved, SpeechBatch) and moved.ids == batch.ids


def test_collate_ignores_extra_fields_and_rejects_empty():
    batch = collate_speech([(np.ones(3, dtype=np.float32), "a", "x", 0)])
    assert batch.wavs.shape == (1, 3)
    with pytest.raises(ValueError):
        collate_speech([])


def test_pcm_scale(tmp_path):
    sf.write(str(tmp_path / "a.wav"), np.full(100, 16384, dtype=np.int16), 16000, subtype="PCM_16")
    write_manifest(tmp_path / "m.csv", [ManifestRow("a", 0.00625, "a.wav", "", "a", "")])
    wav = ManifestDataset(tmp_path / "m.csv")[0][0]
    assert torch.allclose(wav, torch.full((100,), 0.5))
