import json

import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from benchmarks.stream import make_benchmark
from cl_ssvdo.data import ManifestError, SpeechBatch, StreamError, StreamInfo, read_manifest

from .helpers import tiny_manifest


def test_stream_layout(tiny_stream):
    assert tiny_stream.domains == ["adult", "child", "accent"]
    assert tiny_stream.splits == ["train", "valid", "test"]
    meta = json.loads((tiny_stream.root / "stream.json").read_text())
    assert meta["sample_rate"] == 16000 and set(meta["hours"]) == set(tiny_stream.domains)
    for domain in tiny_stream.domains:
        for split in tiny_stream.splits:
            rows = read_manifest(tiny_stream.manifest(domain, split))
            assert rows and all(r.domain == domain for r in rows)
            info = sf.info(str(tiny_stream.root / rows[0].wav))
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
            assert not rows[0].wav.startswith("/")
            assert meta["hours"][domain][split] == pytest.approx(
                sum(r.duration for r in rows) / 3600, abs=1e-3
            )


def test_benchmark_shape_and_order(tiny_benchmark, tiny_stream):
    for split in ("train", "valid", "test"):
        stream = getattr(tiny_benchmark, f"{split}_stream")
        exps = list(stream)
        assert [e.domain for e in exps] == tiny_stream.domains
        assert [e.current_experience for e in exps] == [0, 1, 2]
        for exp in exps:
            ids = [exp.dataset[i][2] for i in range(len(exp.dataset))]
            assert all(i.startswith(f"{exp.domain}-{split}-") for i in ids)
    assert tiny_benchmark.domains == tiny_stream.domains


def test_experience_batch_with_its_collate(tiny_benchmark):
    ds = tiny_benchmark.train_stream[1].dataset
    item = ds[0]
    # AvalancheDataset passes the base tuple through unchanged (no task label attached).
    assert len(item) == 3 and isinstance(item[0], torch.Tensor) and isinstance(item[1], str)
    loader = DataLoader(ds, batch_size=4, shuffle=False, collate_fn=ds.collate_fn)
    batch = next(iter(loader))
    assert isinstance(batch, SpeechBatch)
    assert batch.wavs.shape[0] == 4 and batch.wav_lens.max().item() == 1.0
    assert all(w and set(w) <= set("abcdefghijklmnopqrstuvwxyz' ") for w in batch.words)
    assert batch.ids[0].startswith("child-train-")
    # subsets (replay buffers) keep the collate
    assert ds.subset([0, 1]).collate_fn is ds.collate_fn


def test_unknown_domain_or_split(tiny_stream, tmp_path):
    with pytest.raises(StreamError, match="unknown domain 'martian'"):
        tiny_stream.manifest("martian", "train")
    with pytest.raises(StreamError, match="unknown split"):
        tiny_stream.manifest("adult", "dev")
    with pytest.raises(StreamError, match="no stream.json"):
        StreamInfo.load(tmp_path)
    (tmp_path / "stream.json").write_text('{"name": "x"}')
    with pytest.raises(StreamError, match="'domains'"):
        StreamInfo.load(tmp_path)


def test_subset_order_limit_and_exclusion(tiny_stream):
    bench = make_benchmark(
        tiny_stream,
        splits=("test",),
        domains=["child", "adult"],
        max_utterances=5,
        exclude_ids={"child_test": ["child-test-espeak_en-us_f2-0000"]},
    )
    exps = list(bench.test_stream)
    assert [e.domain for e in exps] == ["child", "adult"] and all(len(e.dataset) == 5 for e in exps)
    assert exps[0].dataset[0][2] == "child-test-espeak_en-us_f2-0001"
    assert not hasattr(bench, "train_stream")
    with pytest.raises(StreamError, match="unknown domain"):
        make_benchmark(tiny_stream, domains=["nope"])


def test_validation_skip_excludes_listed_rows(tiny_stream, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(tiny_stream.root, root)
    info = StreamInfo.load(root)
    victim = read_manifest(info.manifest("accent", "test"))[0]
    (root / victim.wav).write_bytes(b"garbage")
    with pytest.raises(ManifestError, match=victim.ID):
        make_benchmark(info, splits=("test",), validate="error")
    bench = make_benchmark(info, splits=("test",), validate="skip")
    ids = {bench.test_stream[2].dataset[i][2] for i in range(len(bench.test_stream[2].dataset))}
    assert (
        victim.ID not in ids and len(ids) == len(read_manifest(info.manifest("accent", "test"))) - 1
    )
    assert victim.ID in (root / "manifests" / "accent_test.skipped.tsv").read_text()


def test_cli_validate(tiny_stream, capsys):
    from benchmarks.__main__ import main

    assert main(["validate", str(tiny_stream.root)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 9 and out[0].startswith("adult_train.csv: 48/48 rows kept")


def _narrow_stream(root, resample: bool) -> StreamInfo:
    """One domain whose clips are 8 kHz (a corpus kept at its own rate)."""
    from benchmarks.stream import write_stream_json

    for split in ("train", "test"):
        tiny_manifest(root, n=2, name=f"d_{split}.csv", sample_rate=8000)
    return write_stream_json(root, "narrow", ["d"], ("train", "test"), resample=resample)


def test_another_rate_is_an_error_unless_the_stream_resamples(tmp_path):
    strict = _narrow_stream(tmp_path / "strict", resample=False)
    assert StreamInfo.load(strict.root).resample is False
    bench = make_benchmark(strict.root, splits=("test",))
    with pytest.raises(ManifestError, match=r"row ID 'u0', field 'wav': .*8000 Hz, expected 16000"):
        bench.test_stream[0].dataset[0]
    with pytest.raises(ManifestError, match="sample rate 8000 Hz, the stream's is 16000 Hz"):
        make_benchmark(strict.root, splits=("test",), validate="error")

    loose = _narrow_stream(tmp_path / "loose", resample=True)
    assert json.loads((loose.root / "stream.json").read_text())["resample"] is True
    bench = make_benchmark(loose.root, splits=("test",), validate="error")
    wav, _, utt_id = bench.test_stream[0].dataset[0]
    assert wav.numel() == 8000 and utt_id == "u0"  # 0.5 s at 8 kHz, resampled to 16 kHz
    # a preparer merging into the stream keeps the flag
    from benchmarks.stream import write_stream_json

    merged = write_stream_json(loose.root, "narrow", ["d"], ("train", "test"), merge=True)
    assert merged.resample and StreamInfo.load(loose.root).resample
