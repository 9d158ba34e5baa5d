"""``cl-ssvdo run`` with a Whisper base (tiny random Whisper saved locally): adult is the base
domain (row 0 = the pretrained model, never trained on), child and accent are trained with
SSVD-O; the WER matrix and continual metrics keep their layout."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cl_ssvdo.asr.whisper.tiny import save_tiny_whisper
from cl_ssvdo.data import read_manifest
from cl_ssvdo.metrics import summarize
from experiments.config import ConfigError, load_config
from experiments.runner import run_experiment


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory):
    return save_tiny_whisper(tmp_path_factory.mktemp("whisper"), d_model=16, layers=1)


def _config(tiny_stream, tiny_whisper, tmp_path, name: str, **extra):
    return load_config(
        name,
        {
            "workdir": str(tmp_path / "work"),
            "stream.root": str(tiny_stream.root),
            "stream.synthetic": None,
            "stream.max_utterances": 2,
            "model.pretrained": str(tiny_whisper),
            "train.max_steps": 2,
            "train.batch_size": 2,
            "train.eval_batch_size": 4,
            "train.device": "cpu",
            "tracking.offline": True,
            **extra,
        },
    )


@pytest.mark.slow
def test_whisper_ssvdo_run_with_adult_as_base_domain(
    tiny_stream, tiny_whisper, tmp_path, one_thread
) -> None:
    cfg = _config(
        tiny_stream, tiny_whisper, tmp_path, "whisper_ssvdo", **{"train.checkpoint": True}
    )
    result = run_experiment(cfg, seed=0, offline=True, progress=False)
    wer = np.asarray(result.wer)
    assert wer.shape == (4, 3)
    assert np.array_equal(wer[1], wer[0])  # the base domain's experience trains nothing
    summary = summarize(wer)
    assert summary["learning"][0] == 0.0
    assert math.isfinite(summary["bwt"])  # forgetting on adult is measured
    assert result.trainable  # SSVD-O trained on child and accent

    # export after the last experience: a folder like the base, holding the run's weights
    from transformers import WhisperForConditionalGeneration

    from cl_ssvdo.asr.whisper.hf_folder import load_whisper_asr
    from experiments.checkpoint import load_model_state
    from experiments.export import WHISPER_PREFIX, export_run

    out = export_run(result.run_dir, tmp_path / "export").folder
    hf = WhisperForConditionalGeneration.from_pretrained(str(out))
    state = load_model_state(result.run_dir / "checkpoints", 3)
    exported = hf.model.state_dict()
    trained = {
        k[len(WHISPER_PREFIX) :]: v for k, v in state.items() if k.startswith(WHISPER_PREFIX)
    }
    assert trained.keys() == exported.keys()
    assert all(torch.equal(trained[k], exported[k]) for k in trained)
    base = WhisperForConditionalGeneration.from_pretrained(str(tiny_whisper)).model.state_dict()
    assert any(not torch.equal(base[k], exported[k]) for k in base)  # the adapted weights
    asr = load_whisper_asr(out)  # SpeechBrain's WhisperASR loads it offline
    wav = tiny_stream.root / read_manifest(tiny_stream.manifest("child", "test"))[0].wav
    assert isinstance(asr.transcribe_file(str(wav)), str | list | tuple)


def test_base_domain_that_is_not_first_is_a_config_error(
    tiny_stream, tiny_whisper, tmp_path
) -> None:
    cfg = _config(
        tiny_stream, tiny_whisper, tmp_path, "whisper_ssvdo", **{"stream.base_domains": ["child"]}
    )
    with pytest.raises(ConfigError, match="stream.base_domains"):
        run_experiment(cfg, seed=0, offline=True, progress=False)


@pytest.mark.slow
def test_whisper_ctc_run_trains_the_head_once_then_reuses_it(
    tiny_stream, tiny_whisper, tmp_path, one_thread
) -> None:
    cfg = _config(
        tiny_stream,
        tiny_whisper,
        tmp_path,
        "whisper_ctc",
        **{"model.pretrain.max_steps": 2, "model.pretrain.batch_size": 2},
    )
    result = run_experiment(cfg, seed=0, offline=True, progress=False)
    heads = list((tmp_path / "work" / "base").glob("whisper-ctc-*/ctc_head.pt"))
    assert len(heads) == 1
    assert np.asarray(result.wer).shape == (4, 3)
    stamp = heads[0].stat().st_mtime_ns
    run_experiment(cfg, seed=1, offline=True, progress=False)
    assert heads[0].stat().st_mtime_ns == stamp  # reused, not retrained


def test_demo_model_option_runs_the_whisper_sweep(monkeypatch, capsys) -> None:
    """``cl-ssvdo demo --model NAME``: the whisper_demo sweep (SSVD-O vs LoRA) on NAME."""
    from experiments import demo
    from experiments.cli import main
    from experiments.sweep import expand_sweep

    seen = {}

    def fake_run_demo(cfg, **kwargs):
        seen.update(cfg=cfg, **kwargs)
        return "matrices"

    monkeypatch.setattr(demo, "run_demo", fake_run_demo)
    assert main(["--quiet", "demo", "--model", "whisper-tiny.en"]) == 0
    assert capsys.readouterr().out.strip() == "matrices"
    assert seen["source"].endswith("whisper_demo.yaml")
    children = expand_sweep(seen["cfg"], seen["overrides"], seen["source"])
    assert [c.config["strategy"]["adapter"]["method"] for c in children] == ["ssvdo", "lora"]
    assert {c.config["model"]["pretrained"] for c in children} == {"whisper-tiny.en"}
    assert {c.config["stream"]["base_domains"][0] for c in children} == {"adult"}
