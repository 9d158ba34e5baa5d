import hashlib
import json
import random
import shutil

import pytest
import torch
import torchaudio.transforms as T

from benchmarks.synthetic import (
    EngineMissingError,
    SyntheticConfig,
    engines,
    generate_stream,
    plan_stream,
    stream_dir,
)
from benchmarks.synthetic.grammar import DIGITS, VOCABULARY, sentence
from benchmarks.synthetic.voices import Voice
from cl_ssvdo.data import ManifestDataset, normalize_transcript, read_manifest

MINI = {
    "preset": "tiny",
    "seed": 3,
    "domains": ["adult", "accent_caribbean"],
    "train_per_voice": 3,
    "valid_per_voice": 1,
    "test_per_voice": 2,
    "max_train_voices": 1,
    "max_test_voices": 1,
}


def _digests(root):
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".wav", ".csv"))
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_same_config_same_bytes(tiny_stream, tmp_path):
    again = generate_stream({"preset": "tiny", "seed": 0}, tmp_path, workers=1, progress=False)
    assert again.root != tiny_stream.root
    first, second = _digests(tiny_stream.root), _digests(again.root)
    assert len(first) == 240 + 9 and first == second


def test_different_seed_different_stream(tmp_path):
    a = generate_stream(MINI, tmp_path, progress=False)
    b = generate_stream({**MINI, "seed": 4}, tmp_path, progress=False)
    assert a.root != b.root
    words_a = [r.wrd for r in read_manifest(a.manifest("adult", "train"))]
    words_b = [r.wrd for r in read_manifest(b.manifest("adult", "train"))]
    assert words_a != words_b
    da, db = _digests(a.root), _digests(b.root)
    assert all(da[k] != db[k] for k in da if k.endswith(".wav"))


def test_resume_and_cache(tmp_path):
    info = generate_stream(MINI, tmp_path, progress=False)
    before = _digests(info.root)
    wavs = sorted((info.root / "audio").rglob("*.wav"))
    kept_mtime = wavs[0].stat().st_mtime_ns
    for victim in wavs[1:4]:
        victim.unlink()
    (info.root / "stream.json").unlink()  # as if killed before the end
    again = generate_stream(MINI, tmp_path, progress=False)
    log = json.loads((again.root / "generation.json").read_text())
    assert log["utterances_synthesised"] == 3 and log["utterances_total"] == len(wavs)
    assert _digests(again.root) == before and wavs[0].stat().st_mtime_ns == kept_mtime
    # complete: a third call is a cache hit that synthesises nothing
    generate_stream(MINI, tmp_path, progress=False)
    assert json.loads((again.root / "generation.json").read_text()) == log


def test_test_sentences_not_in_train(tiny_stream):
    held_out, train = set(), set()
    for d in tiny_stream.domains:
        train |= {r.wrd for r in read_manifest(tiny_stream.manifest(d, "train"))}
        for s in ("valid", "test"):
            held_out |= {r.wrd for r in read_manifest(tiny_stream.manifest(d, s))}
    assert held_out and not (held_out & train)


def test_voices_disjoint_and_recorded(tiny_stream):
    voices = tiny_stream.config["voices"]
    for d in tiny_stream.domains:
        train = {r.spk_id for r in read_manifest(tiny_stream.manifest(d, "train"))}
        test = {r.spk_id for r in read_manifest(tiny_stream.manifest(d, "test"))}
        assert train == set(voices[d]["train"]) and test == set(voices[d]["test"])
        assert train & test == set(voices[d]["shared"]) == set()
    small = plan_stream("small")
    awb = {u.split for u in small if u.domain == "accent" and u.voice.id == "flite_awb"}
    assert awb == {
        "train",
        "valid",
        "test",
    }  # the single Scottish flite voice is shared, and listed


def _f0_median(wav: torch.Tensor, sr: int = 16000) -> torch.Tensor:
    """Median F0 (Hz) of the louder 40 ms frames, from the autocorrelation peak in 70-500 Hz."""
    frames = wav.unfold(0, 640, 320)
    energy = frames.pow(2).mean(1)
    frames = frames[energy > 0.05 * energy.max()]
    frames = frames - frames.mean(1, keepdim=True)
    ac = torch.fft.irfft(torch.fft.rfft(frames, n=1280).abs().pow(2), n=1280)[:, :640]
    lo, hi = sr // 500, sr // 70
    lag = ac[:, lo:hi].argmax(1) + lo
    return (sr / lag.float()).median()


def _features(info, domain, n=12):
    ds = ManifestDataset(info.manifest(domain, "test"))
    centroid = T.SpectralCentroid(16000, n_fft=512, hop_length=160)
    cents, f0s = [], []
    for i in range(0, len(ds), max(1, len(ds) // n)):
        wav = ds[i][0]
        c = centroid(wav)
        energy = wav.unfold(0, 512, 160).pow(2).mean(1)
        k = min(len(c), len(energy))
        cents.append(c[:k][energy[:k] > 0.01 * energy.max()].median())
        f0s.append(_f0_median(wav))
    return torch.stack(cents).mean().item(), torch.stack(f0s).mean().item()


def test_domain_gap_is_real(tiny_stream):
    adult_c, adult_f0 = _features(tiny_stream, "adult")
    child_c, child_f0 = _features(tiny_stream, "child")
    # measured: centroid ~1250 vs ~2000 Hz, F0 ~100 vs ~340 Hz
    assert child_c > 1.25 * adult_c, (adult_c, child_c)
    assert child_f0 > 1.5 * adult_f0 and child_f0 > 250, (adult_f0, child_f0)


def test_grammar_vocabulary_and_mix():
    assert 130 <= len(VOCABULARY) <= 170
    rng = random.Random(0)
    sentences = [sentence(rng) for _ in range(2000)]
    digits = sum(all(w in DIGITS for w in s.split()) for s in sentences)
    assert 0.4 < digits / len(sentences) < 0.6
    assert all(normalize_transcript(s) == s for s in sentences)
    assert {w for s in sentences for w in s.split()} <= VOCABULARY


def test_two_accent_domains_and_small_sizes():
    plan = plan_stream(
        {"preset": "small", "domains": ["adult", "accent_scottish", "accent_caribbean"]}
    )
    domains = [u.domain for u in plan if u.split == "train"]
    assert domains.index("accent_scottish") < domains.index("accent_caribbean")
    assert {u.voice.name for u in plan if u.domain == "accent_caribbean"} == {"en-029"}
    default = plan_stream("small")
    per = {
        (d, s): sum(1 for u in default if (u.domain, u.split) == (d, s))
        for d in ("adult", "child", "accent")
        for s in ("train", "test")
    }
    assert per[("adult", "train")] == 7 * 600 and per[("child", "train")] == 4 * 200
    assert per[("accent", "train")] == 5 * 150 and per[("adult", "test")] == 4 * 80


def test_plan_is_deterministic_and_ids_unique():
    a, b = plan_stream(MINI), plan_stream(dict(MINI))
    assert a == b and len({u.utt_id for u in a}) == len(a)
    assert stream_dir(MINI, "c") == stream_dir(SyntheticConfig(**MINI), "c")
    assert stream_dir(MINI, "c") != stream_dir({**MINI, "seed": 9}, "c")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"preset": "huge"}, "unknown preset 'huge'"),
        ({"domains": ["adult", "martian"]}, "unknown synthetic domain 'martian'"),
        ({"sead": 1}, r"unknown key\(s\) \['sead'\]"),
        ({"domains": ["adult", "adult"]}, "duplicate domain"),
        ({"test_per_voice": -1}, "test_per_voice"),
    ],
)
def test_bad_config_is_named(config, message):
    with pytest.raises(ValueError, match=message):
        SyntheticConfig.from_any(config)


def test_missing_engine_names_debian_package(monkeypatch, tmp_path):
    real_which = shutil.which
    monkeypatch.setattr(engines.shutil, "which", lambda p: None if p == "flite" else real_which(p))
    with pytest.raises(EngineMissingError, match="apt-get install flite"):
        engines.check_voices([Voice("flite", "slt")])
    monkeypatch.setattr(engines.shutil, "which", lambda p: None if p == "sox" else real_which(p))
    with pytest.raises(EngineMissingError, match="'sox'"):
        generate_stream(MINI, tmp_path, progress=False)
    assert not list(tmp_path.rglob("*.wav"))


def test_missing_voice_names_package():
    with pytest.raises(EngineMissingError, match="festvox-rablpc16k"):
        engines.check_voices([Voice("festival", "rab_diphone")])
    with pytest.raises(EngineMissingError, match="en-zz"):
        engines.check_voices([Voice("espeak", "en-zz", "m1")])
    with pytest.raises(EngineMissingError, match="'q9'"):
        engines.check_voices([Voice("espeak", "en-us", "q9")])
