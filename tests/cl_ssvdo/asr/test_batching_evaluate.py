"""Batching and WER/CER reports (checked against jiwer)."""

from __future__ import annotations

import json

import jiwer
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cl_ssvdo.asr.batching import iterate_batches, sorted_batches
from cl_ssvdo.asr.evaluate import EvalReport, UtteranceScore, evaluate_folder, main
from cl_ssvdo.data import collate_speech


@given(
    st.lists(st.floats(0.1, 20.0), max_size=40), st.integers(1, 7), st.booleans(), st.integers(0, 9)
)
@settings(max_examples=80, deadline=None)
def test_sorted_batches_partition_the_data(durations, batch_size, shuffle, seed) -> None:
    batches = sorted_batches(durations, batch_size, shuffle=shuffle, seed=seed)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(durations)))
    assert all(0 < len(b) <= batch_size for b in batches)
    # within a batch durations are sorted; batches do not overlap in duration
    spans = sorted((min(durations[i] for i in b), max(durations[i] for i in b)) for b in batches)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert batches == sorted_batches(durations, batch_size, shuffle=shuffle, seed=seed)


def test_pad_batch_and_iteration() -> None:
    items = [(torch.ones(5), "a", "u1"), (torch.ones(2), "b", "u2", 0), (torch.ones(3), "c", "u3")]
    wavs, lens, words, ids = collate_speech(items)
    assert wavs.shape == (3, 5) and wavs[1, 2:].abs().sum() == 0
    assert torch.allclose(lens, torch.tensor([1.0, 0.4, 0.6]))
    assert (words, ids) == (["a", "b", "c"], ["u1", "u2", "u3"])
    batches = list(iterate_batches(items, 2, shuffle=False))
    assert [b[3] for b in batches] == [["u2", "u3"], ["u1"]]
    assert [b[3] for b in iterate_batches(items, 2, skip=1)] == [["u1"]]
    with pytest.raises(ValueError, match="empty"):
        collate_speech([])


REF_HYP = st.lists(
    st.tuples(
        st.lists(st.sampled_from(["one", "two", "oh", "light", "on"]), max_size=6),
        st.lists(st.sampled_from(["one", "two", "oh", "lights", "on"]), max_size=6),
    ),
    min_size=1,
    max_size=8,
)


@given(REF_HYP)
@settings(max_examples=60, deadline=None)
def test_report_matches_jiwer(pairs) -> None:
    refs = [" ".join(r) for r, _ in pairs]
    hyps = [" ".join(h) for _, h in pairs]
    report = EvalReport(
        [
            UtteranceScore.score(str(i), r, h)
            for i, (r, h) in enumerate(zip(refs, hyps, strict=True))
        ]
    )
    out = jiwer.process_words(refs, hyps)
    n = out.hits + out.substitutions + out.deletions
    assert report.wer == pytest.approx(
        100 * (out.substitutions + out.deletions + out.insertions) / max(n, 1)
    )
    chars = jiwer.process_characters(refs, hyps)
    nc = chars.hits + chars.substitutions + chars.deletions
    assert report.cer == pytest.approx(
        100 * (chars.substitutions + chars.deletions + chars.insertions) / max(nc, 1)
    )


def test_report_groups() -> None:
    report = EvalReport(
        [
            UtteranceScore.score("1", "a b", "a b", speaker="s1", domain="adult"),
            UtteranceScore.score("2", "a b", "a", speaker="s2", domain="child"),
            UtteranceScore.score("3", "c d", "x y", speaker="s2", domain="child"),
        ]
    )
    assert report.wer == pytest.approx(50.0)
    assert {k: v.wer for k, v in report.by("domain").items()} == {"adult": 0.0, "child": 75.0}
    assert report.summary()["speakers"]["s2"]["utterances"] == 2
    with pytest.raises(ValueError, match="key"):
        report.by("voice")


def test_evaluate_saved_folder_per_domain_and_speaker(pretrained_ci, tiny_stream, tmp_path) -> None:
    manifests = [tiny_stream.manifest(d, "valid") for d in tiny_stream.domains]
    report = evaluate_folder(pretrained_ci, manifests, device="cpu", progress=False)
    summary = report.summary()
    assert set(summary["domains"]) == set(tiny_stream.domains)
    assert sum(v["utterances"] for v in summary["speakers"].values()) == len(report.utterances)
    assert 0.0 <= summary["domains"]["adult"]["wer"] < summary["domains"]["child"]["wer"]
    out = tmp_path / "report.json"
    printed = main([str(pretrained_ci), str(manifests[0]), "--json", str(out)])
    assert json.loads(out.read_text())["wer"] == pytest.approx(printed["wer"])
    assert printed["wer"] == pytest.approx(summary["domains"]["adult"]["wer"])
