"""Every preparer on a small fixture tree in its corpus's real layout."""

import gzip
import json

import pytest

from benchmarks.corpora import (
    CorpusError,
    prepare_cgn,
    prepare_commonvoice,
    prepare_generic,
    prepare_l2arctic,
    prepare_librispeech,
    prepare_myst,
)
from benchmarks.stream import make_benchmark
from benchmarks.validate import validate_stream
from cl_ssvdo.data import ManifestDataset, StreamInfo, read_manifest

from .helpers import write_tone


def _rows(info, domain, split):
    return read_manifest(info.manifest(domain, split))


def _librispeech(root):
    for subset, spk in (("train-clean-100", "19"), ("dev-clean", "84"), ("test-clean", "121")):
        chapter = root / "LibriSpeech" / subset / spk / "198"
        lines = []
        for i in range(2):
            utt = f"{spk}-198-{i:04d}"
            write_tone(chapter / f"{utt}.flac", seconds=0.6 + 0.1 * i, seed=i, format="FLAC")
            lines.append(f"{utt} NORTHANGER ABBEY'S {i} CHAPTER")
        (chapter / f"{spk}-198.trans.txt").write_text("\n".join(lines) + "\n")
    return root / "LibriSpeech"


def test_librispeech(tmp_path):
    corpus = _librispeech(tmp_path / "corpus")
    info = prepare_librispeech(tmp_path / "corpus", tmp_path / "stream")
    assert info.domains == ["adult"] and info.splits == ["train", "valid", "test"]
    rows = _rows(info, "adult", "train")
    assert [r.ID for r in rows] == ["19-198-0000", "19-198-0001"]
    assert rows[0].wrd == "northanger abbey's zero chapter" and rows[0].spk_id == "19"
    assert rows[1].duration == pytest.approx(0.7) and rows[0].wav.startswith("audio/librispeech/")
    assert _rows(info, "adult", "test")[0].spk_id == "121"
    validate_stream(info)  # durations, audio and transcripts all consistent
    wav, wrd, _ = ManifestDataset(info.manifest("adult", "valid"))[1]
    assert wav.numel() == 11200 and wrd == "northanger abbey's one chapter"
    (corpus / "test-clean" / "121" / "198" / "121-198-0001.flac").unlink()
    with pytest.raises(CorpusError, match="121-198-0001"):
        prepare_librispeech(corpus, tmp_path / "stream2")
    with pytest.raises(CorpusError, match="subset 'train-other-500'"):
        prepare_librispeech(corpus, tmp_path / "stream3", subsets={"train": ["train-other-500"]})


def _myst(root):
    data = root / "myst_child_conv_speech" / "data"
    texts = {
        "train": ["<no_signal> the magnet sticks to (*) iron", "(()) it goes"],
        "development": ["um plants need light <laugh>", "water"],
        "test": ["the circuit is closed", "<noise>"],
    }
    for part, lines in texts.items():
        for i, text in enumerate(lines):
            session = data / part / f"0021{i}" / f"myst_0021{i}_2014-03-{i + 10}_00-00-00_MX_2.1"
            stem = f"{session.name}_{i:03d}"
            write_tone(session / f"{stem}.flac", seconds=0.8, f0=300.0, seed=i, format="FLAC")
            (session / f"{stem}.trn").write_text(text + "\n")
    return root


def test_myst(tmp_path):
    info = prepare_myst(_myst(tmp_path / "myst"), tmp_path / "stream")
    train = _rows(info, "child", "train")
    assert [r.wrd for r in train] == ["the magnet sticks to iron"]  # (()) dropped
    assert train[0].spk_id == "00210"
    assert [r.wrd for r in _rows(info, "child", "valid")] == ["um plants need light", "water"]
    assert [r.wrd for r in _rows(info, "child", "test")] == ["the circuit is closed"]
    dropped = info.config["sources"][-1]["dropped"]
    assert dropped == {
        "empty transcript after normalisation": 1,
        "unintelligible (( )) in transcript": 1,
    }
    validate_stream(info)


def _commonvoice(root):
    clips = root / "clips"
    header = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tvariant\tlocale\tsegment"
    rows = {
        "train.tsv": [
            ("a1", "common_voice_en_1.mp3", "Hello there!", "Scottish English"),
            ("b2", "common_voice_en_2.mp3", "It's 5 o'clock.", "United States English"),
            ("c3", "common_voice_en_3.mp3", "No accent given.", ""),
        ],
        "dev.tsv": [("d4", "common_voice_en_4.mp3", "Good morning.", "Jamaican English")],
        "test.tsv": [
            ("e5", "common_voice_en_5.mp3", "See you soon.", "Scotland, Edinburgh"),
            ("f6", "common_voice_en_6.mp3", "One more.", "Caribbean"),
        ],
    }
    for tsv, entries in rows.items():
        lines = [header]
        for i, (client, path, sentence, accent) in enumerate(entries):
            write_tone(clips / path, seconds=1.0, sample_rate=48000, seed=i, format="MP3")
            lines.append(f"{client}\t{path}\t{sentence}\t2\t0\tthirties\tfemale\t{accent}\t\ten\t")
        (root / tsv).write_text("\n".join(lines) + "\n")
    return root


def test_commonvoice_accent_rules_and_mp3(tmp_path):
    corpus = _commonvoice(tmp_path / "cv" / "en")
    info = prepare_commonvoice(corpus, tmp_path / "stream")
    assert info.domains == ["accent_scottish", "accent_caribbean", "adult"]
    assert [r.wrd for r in _rows(info, "accent_scottish", "train")] == ["hello there"]
    assert [r.wrd for r in _rows(info, "adult", "train")] == ["it's five o'clock"]
    assert {r.ID for r in _rows(info, "accent_caribbean", "valid")} == {"common_voice_en_4"}
    assert info.config["sources"][-1]["dropped"] == {"accent matches no rule": 1}
    assert info.resample  # corpus audio is linked at its own rate: the stream says to resample
    wav, _, _ = ManifestDataset(info.manifest("accent_scottish", "test"), resample=info.resample)[0]
    assert abs(wav.numel() - 16000) < 1200  # 48 kHz mp3 decoded and resampled (codec padding aside)
    info2 = prepare_commonvoice(
        corpus, tmp_path / "stream2", accent_rules=[("scot", "accent")], default_domain="adult"
    )
    assert info2.domains == ["accent", "adult"] and len(_rows(info2, "adult", "train")) == 2


def test_l2arctic(tmp_path):
    corpus = tmp_path / "l2arctic_release_v5"
    for spk in ("ABA", "SKA", "ZHAA", "BWC"):
        for i in range(3):
            stem = f"arctic_a{i + 1:04d}"
            write_tone(corpus / spk / "wav" / f"{stem}.wav", seconds=0.7, sample_rate=44100, seed=i)
            (corpus / spk / "transcript").mkdir(parents=True, exist_ok=True)
            (corpus / spk / "transcript" / f"{stem}.txt").write_text(
                f"Author of the danger trail, Philip Steels, etc {i}"
            )
        (corpus / spk / "annotation").mkdir()
    info = prepare_l2arctic(corpus, tmp_path / "stream", test_speakers=["ZHAA"], valid_fraction=0.3)
    test = _rows(info, "accent_l2", "test")
    assert {r.spk_id for r in test} == {"ZHAA"} and len(test) == 3
    train_valid = _rows(info, "accent_l2", "train") + _rows(info, "accent_l2", "valid")
    assert len(train_valid) == 9 and "ZHAA" not in {r.spk_id for r in train_valid}
    assert test[0].wrd == "author of the danger trail philip steels etc zero"
    validate_stream(info)
    per_l1 = prepare_l2arctic(
        corpus, tmp_path / "stream2", test_speakers=["ZHAA", "BWC"], per_l1=True
    )
    assert per_l1.domains == ["accent_arabic", "accent_mandarin"]


_TEXTGRID_LONG = """File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0
xmax = 4
tiers? <exists>
size = 3
item []:
    item [1]:
        class = "IntervalTier"
        name = "{spk1}"
        xmin = 0
        xmax = 4
        intervals: size = 3
        intervals [1]:
            xmin = 0
            xmax = 1.5
            text = "ja dat is ggg mooi*v ."
        intervals [2]:
            xmin = 1.5
            xmax = 2.5
            text = ""
        intervals [3]:
            xmin = 2.5
            xmax = 4
            text = "xxx zei hij"
    item [2]:
        class = "IntervalTier"
        name = "{spk2}"
        xmin = 0
        xmax = 4
        intervals: size = 1
        intervals [1]:
            xmin = 1
            xmax = 3.25
            text = "het café is ""open"" ."
    item [3]:
        class = "TextTier"
        name = "COMMENT"
        xmin = 0
        xmax = 4
        points: size = 1
        points [1]:
            number = 2
            mark = "lachen"
"""

_TEXTGRID_SHORT = """File type = "ooTextFile"
Object class = "TextGrid"

0
4
<exists>
1
"IntervalTier"
"{spk1}"
0
4
1
0.5
2.5
"dag allemaal"
"""


def test_cgn_segments_regions_and_both_textgrid_formats(tmp_path):
    data = tmp_path / "CGN_2.0.3" / "data"
    files = {
        ("nl", "fn000001"): (_TEXTGRID_LONG, "N01001", "N01002"),
        ("vl", "fv000001"): (_TEXTGRID_SHORT, "V40001", ""),
    }
    for (region, fn), (grid, spk1, spk2) in files.items():
        write_tone(data / "audio" / "wav" / "comp-o" / region / f"{fn}.wav", seconds=4.0)
        ort = data / "annot" / "text" / "ort" / "comp-o" / region / f"{fn}.ort.gz"
        ort.parent.mkdir(parents=True, exist_ok=True)
        ort.write_bytes(gzip.compress(grid.format(spk1=spk1, spk2=spk2).encode("latin-1")))
    info = prepare_cgn(tmp_path / "CGN_2.0.3", tmp_path / "stream", test_speakers=["N01002"])
    assert info.domains == ["cgn_nl", "cgn_vl"]
    train = _rows(info, "cgn_nl", "train")
    assert [(r.ID, r.wrd, r.spk_id) for r in train] == [
        ("fn000001_N01001_0000", "ja dat is mooi", "N01001")
    ]
    assert train[0].duration == pytest.approx(1.5)
    test = _rows(info, "cgn_nl", "test")
    assert [r.wrd for r in test] == ["het cafe is open"] and test[0].duration == pytest.approx(2.25)
    assert [r.wrd for r in _rows(info, "cgn_vl", "train")] == ["dag allemaal"]
    assert info.config["sources"][-1]["dropped"]["unintelligible (xxx) or empty segment"] == 1
    validate_stream(info)
    assert ManifestDataset(info.manifest("cgn_nl", "test"))[0][0].numel() == 36000


def test_generic_csv_and_jsonl(tmp_path):
    data = tmp_path / "mydata"
    for i in range(4):
        write_tone(data / "wavs" / f"{i}.wav", seconds=0.5 + 0.1 * i, seed=i)
    (data / "list.csv").write_text(
        "path,text,speaker,domain,split\n"
        "wavs/0.wav,Hello World,s1,adult,train\n"
        "wavs/1.wav,Good Bye,s2,child,train\n"
        "wavs/2.wav,Test one,s3,adult,test\n"
        "wavs/3.wav,Test two,s4,child,test\n"
    )
    info = prepare_generic(data / "list.csv", tmp_path / "stream", domains=["adult", "child"])
    assert info.domains == ["adult", "child"] and info.splits == ["train", "test"]
    assert [r.wrd for r in _rows(info, "child", "train")] == ["good bye"]
    bench = make_benchmark(info, splits=("train", "test"))
    assert [e.domain for e in bench.test_stream] == ["adult", "child"]
    validate_stream(info)

    lines = [
        json.dumps({"audio_filepath": str(data / "wavs" / "1.wav"), "text": "abc", "duration": 0.6})
    ]
    (data / "more.jsonl").write_text("\n".join(lines) + "\n")
    info2 = prepare_generic(
        data / "more.jsonl", tmp_path / "stream2", default_domain="accent", default_split="test"
    )
    row = _rows(info2, "accent", "test")[0]
    assert row.wav == str((data / "wavs" / "1.wav").resolve()) and row.spk_id == "unknown"
    (data / "bad.jsonl").write_text(json.dumps({"text": "no audio"}) + "\n")
    with pytest.raises(CorpusError, match=r"bad.jsonl:1: no audio path"):
        prepare_generic(
            data / "bad.jsonl", tmp_path / "stream3", default_domain="a", default_split="train"
        )
    with pytest.raises(CorpusError, match="no domain"):
        prepare_generic(data / "more.jsonl", tmp_path / "stream4", default_split="train")


def test_preparers_build_one_stream(tmp_path):
    out = tmp_path / "stream"
    prepare_librispeech(_librispeech(tmp_path / "ls"), out)
    prepare_myst(_myst(tmp_path / "myst"), out)
    prepare_commonvoice(_commonvoice(tmp_path / "cv"), out, accent_rules=[("scot", "accent")])
    prepare_myst(tmp_path / "myst", out)  # re-running replaces its record
    info = StreamInfo.load(out)
    assert info.domains == ["adult", "child", "accent"]
    assert [s["corpus"] for s in info.config["sources"]] == ["librispeech", "commonvoice", "myst"]
    bench = make_benchmark(info, splits=("train", "test"))
    assert [e.domain for e in bench.train_stream] == ["adult", "child", "accent"]
    assert info.hours["child"]["train"] > 0
