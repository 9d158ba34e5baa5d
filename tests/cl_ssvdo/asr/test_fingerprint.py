"""Fingerprints of base models and streams; a resumed run refuses a different base."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cl_ssvdo.asr import CharTokenizer, export_pretrained
from cl_ssvdo.asr.fingerprint import (
    FINGERPRINT_FILE,
    BaseMismatchError,
    check_same_base,
    read_fingerprint,
    stream_sha256,
    weights_sha256,
)
from cl_ssvdo.asr.pretrain import build_seeded_asr

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.bool]


@st.composite
def state_dicts(draw):
    keys = draw(st.lists(st.text("abcdef.", min_size=1, max_size=6), min_size=1, max_size=4,
                         unique=True))  # fmt: skip
    state = {}
    for key in keys:
        shape = tuple(draw(st.lists(st.integers(0, 3), max_size=3)))
        dtype = draw(st.sampled_from(DTYPES))
        seed = draw(st.integers(0, 2**31))
        gen = torch.Generator().manual_seed(seed)
        state[key] = (torch.rand(shape, generator=gen) * 10).to(dtype)
    return state


@given(state_dicts(), st.randoms())
@settings(max_examples=60, deadline=None)
def test_weights_sha_ignores_key_order_and_copies_but_sees_every_change(state, rnd) -> None:
    reference = weights_sha256(state)
    keys = list(state)
    rnd.shuffle(keys)
    assert weights_sha256({k: state[k].clone() for k in keys}) == reference
    key = rnd.choice(keys)
    tensor = state[key]
    assert weights_sha256({**state, key + "x": tensor}) != reference  # renamed key
    if tensor.numel():
        flat = tensor.clone().reshape(-1)
        i = rnd.randrange(flat.numel())
        flat[i] = ~flat[i] if tensor.dtype == torch.bool else flat[i] + 1
        assert weights_sha256({**state, key: flat.reshape(tensor.shape)}) != reference
    # same bytes, another shape
    assert weights_sha256({**state, key: tensor.reshape(*tensor.shape, 1)}) != reference
    if tensor.dtype == torch.float32:  # same bytes, another dtype
        assert weights_sha256({**state, key: tensor.view(torch.int32)}) != reference


def test_weights_sha_of_a_module_equals_that_of_its_saved_state(tmp_path) -> None:
    model = build_seeded_asr("ci", 29, 0)
    torch.save(model.state_dict(), tmp_path / "m.ckpt")
    loaded = torch.load(tmp_path / "m.ckpt", map_location="cpu")
    assert weights_sha256(model) == weights_sha256(loaded)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-7
    assert weights_sha256(model) != weights_sha256(loaded)


def test_export_writes_the_fingerprint_and_load_gives_the_same_weights(tmp_path) -> None:
    from cl_ssvdo.asr import load_pretrained

    model = build_seeded_asr("ci", 29, 1)
    folder = export_pretrained(model, CharTokenizer(), tmp_path / "base", stream_sha="ab" * 32)
    recorded = read_fingerprint(folder)
    assert recorded == {"weights_sha256": weights_sha256(model), "stream_sha256": "ab" * 32}
    loaded, _, _ = load_pretrained(folder)
    assert weights_sha256(loaded) == recorded["weights_sha256"]


def test_stream_sha_sees_manifests_and_stream_json(tiny_stream, tmp_path) -> None:
    copy = tmp_path / "stream"
    shutil.copytree(tiny_stream.root / "manifests", copy / "manifests")
    shutil.copy(tiny_stream.root / "stream.json", copy / "stream.json")
    reference = stream_sha256(tiny_stream.root)
    assert stream_sha256(copy) == reference  # audio is not read; the folder's place is not hashed
    meta = json.loads((copy / "stream.json").read_text())
    (copy / "stream.json").write_text(json.dumps(meta, indent=1))  # formatting is not content
    assert stream_sha256(copy) == reference
    manifest = sorted((copy / "manifests").glob("*.csv"))[0]
    manifest.write_text(manifest.read_text().replace("the", "teh", 1))
    assert stream_sha256(copy) != reference
    with pytest.raises(FileNotFoundError, match="no stream.json"):
        stream_sha256(tmp_path)


def test_bad_fingerprint_files_are_named(tmp_path) -> None:
    assert read_fingerprint(tmp_path) is None
    (tmp_path / FINGERPRINT_FILE).write_text("{")
    with pytest.raises(ValueError, match="fingerprint.json: not valid JSON"):
        read_fingerprint(tmp_path)
    (tmp_path / FINGERPRINT_FILE).write_text('{"stream_sha256": null}')
    with pytest.raises(ValueError, match="weights_sha256"):
        read_fingerprint(tmp_path)
    with pytest.raises(BaseMismatchError, match="run r started on base weights 000000000000"):
        check_same_base("0" * 64, "1" * 64, what="run r", where="x")


def test_a_resumed_run_refuses_a_different_base(tiny_stream, tmp_path, monkeypatch) -> None:
    """A run stopped after setup records its base; re-pretrained weights in the same folder make
    the resumed run fail with BaseMismatchError; --fresh starts over on the new base."""
    from experiments import runner
    from experiments.config import load_config

    tok = CharTokenizer()
    base = tmp_path / "base"
    export_pretrained(build_seeded_asr("ci", tok.vocab_size, 0), tok, base)
    config = load_config(
        "naive",
        {
            "workdir": str(tmp_path / "work"),
            "stream.root": str(tiny_stream.root),
            "model.pretrained": str(base),
            "model.preset": "ci",
            "stream.max_utterances": 4,
            "train.device": "cpu",
        },
    )

    class Stop(Exception):
        pass

    def stop(self):
        raise Stop

    monkeypatch.setattr(runner._Run, "run", stop)
    with pytest.raises(Stop):
        runner.run_experiment(config, 0, offline=True, progress=False)
    folder = runner.run_dir_for(config, 0)
    first = json.loads((folder / "state.json").read_text())
    assert first["base_weights_sha"] == read_fingerprint(base)["weights_sha256"]
    assert first["base_stream_sha"] == stream_sha256(tiny_stream.root)

    with pytest.raises(Stop):  # same base: resumes
        runner.run_experiment(config, 0, offline=True, progress=False)

    export_pretrained(build_seeded_asr("ci", tok.vocab_size, 1), tok, base)
    with pytest.raises(BaseMismatchError, match=r"run naive-s0 started on base weights"):
        runner.run_experiment(config, 0, offline=True, progress=False)
    with pytest.raises(Stop):
        runner.run_experiment(config, 0, offline=True, progress=False, fresh=True)
    fresh = json.loads((folder / "state.json").read_text())
    assert fresh["base_weights_sha"] == read_fingerprint(base)["weights_sha256"]
    assert fresh["base_weights_sha"] != first["base_weights_sha"]


def test_pretrain_seeds_make_one_set_of_sweeps_per_base() -> None:
    from experiments.study import load_study, plan_study

    study, path = load_study("study_quick", ["pretrain_seeds=[0, 3]"])
    plan = plan_study(study, path)
    assert [s.name for s in plan.sweeps] == [
        f"study_quick-small-{kind}-base{seed}"
        for seed in (0, 3)
        for kind in ("matched", "split0.75", "references")
    ]
    for sweep in plan.sweeps:
        seed = int(sweep.name.rsplit("base", 1)[1])
        assert {c.config["model"]["pretrain"]["seed"] for c in sweep.children} == {seed}
    single, single_path = load_study("study_quick")  # default: no pretraining-seed dimension
    assert all("base" not in s.name for s in plan_study(single, single_path).sweeps)
    from experiments.config import ConfigError

    with pytest.raises(ConfigError, match="pretrain_seeds.*non-unique"):
        load_study("study_quick", ["pretrain_seeds=[1, 1]"])


def _runs(shas, seeds, streams=None):
    import pandas as pd

    streams = streams or ["s" * 64] * len(shas)
    return pd.DataFrame(
        {
            "model": ["small"] * len(shas),
            "base_weights_sha": shas,
            "pretrain_seed": seeds,
            "base_stream_sha": streams,
            "base_wer/adult": [30.0 + i for i in range(len(shas))],
        }
    )


def test_results_page_groups_by_base_and_flags_mixed_ones() -> None:
    from experiments.study.page_tables import base_table as _base_table
    from experiments.study.page_tables import mixed_bases

    a, b = "a" * 64, "b" * 64
    assert mixed_bases(_runs([a, a], [0, 0])) == []
    assert mixed_bases(_runs([a, b], [0, 1])) == []  # two pretraining seeds: two bases expected
    flagged = mixed_bases(_runs([a, b, b], [0, 0, 0]))
    assert (
        len(flagged) == 1
        and "2 different base models" in flagged[0]
        and "aaaaaaaaaaaa" in flagged[0]
    )
    assert "2 different streams" in mixed_bases(_runs([a, a], [0, 0], ["x" * 64, "y" * 64]))[0]
    table = _base_table(_runs([a, b, b], [0, 0, 0]), ["small"], ["adult"])
    lines = [line for line in table.splitlines() if line.startswith("| small")]
    assert len(lines) == 2 and "`aaaaaaaaaaaa`" in lines[0] and "| 30.0 |" in lines[0]
    assert "`bbbbbbbbbbbb`" in lines[1] and "| 2 |" in lines[1] and "| 31.5 |" in lines[1]


def test_a_study_refuses_a_base_that_changed(tiny_stream, tmp_path) -> None:
    from types import SimpleNamespace

    from experiments.config import load_config
    from experiments.run_dir import RunDir
    from experiments.study import check_bases

    tok = CharTokenizer()
    base = tmp_path / "base"
    config = load_config(
        "naive",
        {"workdir": str(tmp_path), "stream.root": str(tiny_stream.root),
         "model.pretrained": str(base), "model.preset": "ci"},
    )  # fmt: skip
    sweep = SimpleNamespace(children=[SimpleNamespace(config=config)])
    folder = RunDir(tmp_path / "study")
    folder.create()
    check_bases(sweep, folder, "s")  # no base yet: nothing recorded
    assert folder.state()["bases"] == {}
    export_pretrained(build_seeded_asr("ci", tok.vocab_size, 0), tok, base)
    check_bases(sweep, folder, "s")
    assert folder.state()["bases"] == {str(base): read_fingerprint(base)["weights_sha256"]}
    check_bases(sweep, folder, "s")  # unchanged: fine
    export_pretrained(build_seeded_asr("ci", tok.vocab_size, 1), tok, base)
    with pytest.raises(BaseMismatchError, match="study s"):
        check_bases(sweep, folder, "s")


@pytest.mark.parametrize("name", ["cl_ssvdo.asr.fingerprint", "cl_ssvdo.asr.pretrain"])
def test_docstring_examples_run(name: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0


def test_demo_prints_the_base_fingerprints(tmp_path) -> None:
    from types import SimpleNamespace

    from experiments.demo import base_lines
    from experiments.run_dir import RunDir

    runs = []
    for name in ("ssvdo", "lora"):
        folder = RunDir(tmp_path / name)
        folder.create()
        folder.update_state(base_model="outputs/base/small-x", base_weights_sha="c" * 64,
                            base_stream_sha="d" * 64)  # fmt: skip
        runs.append(SimpleNamespace(run_dir=folder.path))
    assert base_lines(runs) == [
        "base model outputs/base/small-x: weights sha256 cccccccccccc, stream sha256 dddddddddddd"
    ]
