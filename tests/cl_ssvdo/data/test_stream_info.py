"""Reading ``stream.json``: every malformed file or field is named."""

from __future__ import annotations

import json

import pytest

from cl_ssvdo.data import StreamError, StreamInfo, manifest_path


def _stream(tmp_path, meta) -> StreamInfo:
    (tmp_path / "stream.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))
    return StreamInfo.load(tmp_path)


def test_fields_defaults_and_manifest_paths(tmp_path) -> None:
    info = _stream(tmp_path, {"name": "s", "domains": ["adult"], "hours": {"adult": {"test": 0.5}}})
    assert (info.splits, info.sample_rate, info.resample) == (
        ["train", "valid", "test"],
        16000,
        False,
    )
    assert info.total_hours() == 0.5 and "resample" not in info.to_json()
    with pytest.raises(StreamError, match="adult_test.csv: manifest for domain 'adult'"):
        info.manifest("adult", "test")
    manifest_path(tmp_path, "adult", "test").parent.mkdir()
    manifest_path(tmp_path, "adult", "test").write_text("ID,duration,wav,wrd\n")
    assert info.manifest("adult", "test") == tmp_path / "manifests" / "adult_test.csv"
    with pytest.raises(StreamError, match="unknown split 'dev'"):
        info.manifest("adult", "dev")


@pytest.mark.parametrize(
    "meta, message",
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ({"domains": ["a"]}, "missing field 'name'"),
        ({"name": "s", "domains": []}, "field 'domains' must be a non-empty list"),
        ({"name": "s", "domains": ["a"], "sample_rate": "fast"}, "field 'sample_rate'"),
        ({"name": "s", "domains": ["a"], "resample": "yes"}, "field 'resample' must be true"),
    ],
)
def test_malformed_stream_json_is_named(tmp_path, meta, message) -> None:
    with pytest.raises(StreamError, match=message) as err:
        _stream(tmp_path, meta)
    assert "stream.json" in str(err.value)


def test_not_a_stream_folder(tmp_path) -> None:
    with pytest.raises(StreamError, match="no stream.json"):
        StreamInfo.load(tmp_path)
