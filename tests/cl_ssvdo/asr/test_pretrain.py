"""Base pretraining: schedule, resume after interruption (including a killed process), early
stopping."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from cl_ssvdo.asr import CharTokenizer, build_asr, pretrain
from cl_ssvdo.asr.train_state import warmup_cosine

ROOT = Path(__file__).resolve().parents[3]
NO_DROPOUT = {"base": "ci", "dropout": 0.0}
# A few steps on 16 utterances (4 batches per epoch), checkpointed only when told to.
RESUMABLE = dict(
    batch_size=4,
    lr=3e-3,
    warmup_steps=3,
    schedule_steps=10,
    max_epochs=50,
    ckpt_every_minutes=None,
    export=False,
    restore_best=False,
    progress=False,
)


@given(st.integers(1, 50), st.integers(0, 200), st.floats(0.0, 0.5))
@settings(max_examples=100, deadline=None)
def test_warmup_cosine_shape(warmup: int, extra: int, floor: float) -> None:
    total = warmup + extra
    f = warmup_cosine(warmup, total, floor)
    values = [f(s) for s in range(total + 5)]
    assert all(0.0 < v <= 1.0 + 1e-12 for v in values[:warmup])
    assert all(floor - 1e-12 <= v <= 1.0 + 1e-12 for v in values[warmup:])
    assert values[:warmup] == sorted(values[:warmup])
    assert values[warmup - 1] == pytest.approx(1.0)
    assert all(a >= b - 1e-12 for a, b in zip(values[warmup:], values[warmup + 1 :], strict=False))
    assert values[-1] == pytest.approx(floor)


@pytest.fixture(scope="module")
def adult_items(tiny_stream) -> list:
    """The first 16 adult training utterances as an in-memory item list."""
    from cl_ssvdo.data import ManifestDataset

    ds = ManifestDataset(
        tiny_stream.manifest(tiny_stream.domains[0], "train"), root=tiny_stream.root
    )
    return [ds[i] for i in range(16)]


def _fresh(seed: int):
    torch.manual_seed(seed)
    return build_asr(NO_DROPOUT, CharTokenizer().vocab_size)


def test_resume_continues_exactly_like_an_uninterrupted_run(
    adult_items, tmp_path, one_thread
) -> None:
    tok = CharTokenizer()
    kw = RESUMABLE
    # interrupted at step 6: in the middle of the second epoch (4 batches per epoch)
    first = pretrain(_fresh(0), tok, adult_items, None, out_dir=tmp_path / "a", max_steps=6, **kw)
    assert (first.steps, first.epochs_completed, first.stopped_by) == (6, 1, "max_steps")
    # resumed into a model initialised differently: weights must come from the checkpoint
    resumed_model = _fresh(1)
    resumed = pretrain(
        resumed_model, tok, adult_items, None, out_dir=tmp_path / "a", max_steps=10, **kw
    )
    assert (resumed.resumed_from_step, resumed.steps) == (6, 10)
    assert [h["step"] for h in resumed.history] == [4, 6, 8, 10]

    straight_model = _fresh(0)
    straight = pretrain(
        straight_model, tok, adult_items, None, out_dir=tmp_path / "b", max_steps=10, **kw
    )
    assert straight.resumed_from_step == 0 and straight.steps == 10
    for (name, a), (_, b) in zip(
        resumed_model.state_dict().items(), straight_model.state_dict().items(), strict=True
    ):
        assert torch.allclose(a, b, atol=1e-5), name
    assert resumed.history[-1]["train_loss"] == pytest.approx(
        straight.history[-1]["train_loss"], rel=1e-4
    )


@pytest.mark.parametrize("interrupted", ["after_meta", "in_state"])
def test_a_save_interrupted_by_a_kill_is_skipped_on_resume(
    adult_items, tmp_path, one_thread, interrupted: str
) -> None:
    """A newest checkpoint folder left half-written by a kill is deleted, not loaded."""
    tok = CharTokenizer()
    kw = {**RESUMABLE, "ckpt_every_steps": 2, "out_dir": tmp_path}
    first = pretrain(_fresh(0), tok, adult_items, None, max_steps=6, **kw)
    assert first.steps == 6
    (complete,) = (tmp_path / "checkpoints").glob("CKPT*")
    # what SpeechBrain leaves when killed mid-save: a newer folder, meta first
    broken = complete.with_name(complete.name + "-later")
    shutil.copytree(complete, broken)
    meta = yaml.safe_load((broken / "CKPT.yaml").read_text())
    meta.update(unixtime=meta["unixtime"] + 60, step=8)
    (broken / "CKPT.yaml").write_text(yaml.safe_dump(meta))
    if interrupted == "after_meta":
        for name in ("optimizer", "scheduler", "state"):
            (broken / f"{name}.ckpt").unlink()
        (broken / "model.ckpt").write_bytes((complete / "model.ckpt").read_bytes()[:100])
    else:
        (broken / "state.ckpt").write_text((complete / "state.ckpt").read_text()[:50])

    resumed = pretrain(_fresh(1), tok, adult_items, None, max_steps=8, **kw)
    assert (resumed.resumed_from_step, resumed.steps) == (6, 8)
    assert not broken.exists()


def test_killed_run_resumes_from_its_last_checkpoint(tiny_stream, tmp_path, one_thread) -> None:
    """SIGKILL a command-line pretraining, then resume it in-process from its checkpoint."""
    train = tiny_stream.manifest("adult", "train")
    valid = tiny_stream.manifest("adult", "valid")
    out = tmp_path / "run"
    args = [
        "--train",
        str(train),
        "--valid",
        str(valid),
        "--out-dir",
        str(out),
        "--preset",
        "ci",
        "--max-steps",
        "10000",
        "--batch-size",
        "4",
        "--ckpt-every-steps",
        "2",
        "--ckpt-every-minutes",
        "1000",
        "--threads",
        "1",
        "--no-progress",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cl_ssvdo.asr.pretrain", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def saved_steps() -> list[int]:
        steps = []
        for state in (out / "checkpoints").glob("CKPT*/state.ckpt"):
            try:
                steps.append(json.loads(state.read_text())["step"])
            except (OSError, ValueError):
                pass  # being written
        return steps

    try:
        deadline = time.monotonic() + 240
        while max(saved_steps(), default=0) < 4:
            assert proc.poll() is None, "the training process exited early"
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    last = max(saved_steps())
    assert last >= 4

    tok = CharTokenizer()
    torch.manual_seed(123)
    from cl_ssvdo.data import ManifestDataset

    result = pretrain(
        build_asr("ci", tok.vocab_size),
        tok,
        ManifestDataset(train),
        ManifestDataset(valid),
        out_dir=out,
        max_steps=last + 2,
        schedule_steps=10000,
        batch_size=4,
        ckpt_every_minutes=None,
        progress=False,
        export=False,
    )
    assert result.resumed_from_step == last
    assert result.steps == last + 2 and result.stopped_by == "max_steps"


def test_early_stopping_and_finished_runs_stay_finished(adult_items, tmp_path, one_thread) -> None:
    tok = CharTokenizer()
    kw = dict(
        batch_size=4,
        lr=1e-9,
        warmup_steps=1,
        max_epochs=20,
        early_stopping_patience=1,
        ckpt_every_minutes=None,
        export=False,
        progress=False,
        out_dir=tmp_path,
    )
    train, valid = adult_items[:8], adult_items[8:10]
    first = pretrain(_fresh(0), tok, train, valid, **kw)
    # lr ~ 0: the WER never improves after epoch 1, so patience 1 stops after epoch 2
    assert (first.stopped_by, first.epochs_completed, first.steps) == ("early_stopping", 2, 4)
    again = pretrain(_fresh(0), tok, train, valid, **kw)
    assert (again.stopped_by, again.steps, again.resumed_from_step) == ("finished", 4, 4)


def test_accepts_ready_batches(adult_items, tmp_path, one_thread) -> None:
    """A DataLoader yielding (wavs, wav_lens, words, ids) works for training and validation."""
    from torch.utils.data import DataLoader

    from cl_ssvdo.data import collate_speech

    loader = DataLoader(adult_items[:4], batch_size=2, collate_fn=collate_speech)
    result = pretrain(
        _fresh(0),
        CharTokenizer(),
        loader,
        loader,
        out_dir=tmp_path,
        max_epochs=2,
        ckpt_every_minutes=None,
        progress=False,
        export=False,
    )
    assert result.steps == 4 and result.epochs_completed == 2
    assert [h["step"] for h in result.history] == [2, 4]
    assert all(h["valid_wer"] is not None for h in result.history)


def test_command_line_on_a_stream_folder(tiny_stream, tmp_path, one_thread) -> None:
    from cl_ssvdo.asr.pretrain import main

    out = tmp_path / "base"
    summary = main(
        [
            "--stream",
            str(tiny_stream.root),
            "--preset",
            "ci",
            "--out-dir",
            str(out),
            "--max-steps",
            "2",
            "--batch-size",
            "8",
            "--no-progress",
        ]
    )
    assert summary["steps"] == 2 and set(summary["test_wer"]) == {"adult", "child", "accent"}
    assert (out / "pretrained" / "hyperparams.yaml").is_file()
    assert json.loads((out / "summary.json").read_text())["test_wer"] == summary["test_wer"]
    with pytest.raises(SystemExit):
        main(["--out-dir", str(out)])


def test_bad_arguments(tmp_path) -> None:
    tok = CharTokenizer()
    model = build_asr("ci", tok.vocab_size)
    with pytest.raises(ValueError, match="max_epochs"):
        pretrain(model, tok, [], None, out_dir=tmp_path, max_epochs=0)
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        pretrain(model, tok, [(torch.zeros(1600), "a", "u")], None, out_dir=tmp_path)


def test_pretraining_progress_in_a_log_file_is_plain_lines(
    adult_items, tmp_path, one_thread, capsys
) -> None:
    """Output that is not a terminal (here pytest's capture; ``nohup`` or CI in real life) gets
    plain progress lines, not tqdm's carriage returns (a 330 KB `make run` log before)."""
    from cl_ssvdo.progress import is_terminal

    assert not is_terminal()
    pretrain(_fresh(0), CharTokenizer(), adult_items, None, out_dir=tmp_path / "p",
             batch_size=4, lr=3e-3, warmup_steps=1, schedule_steps=3, max_steps=3,
             ckpt_every_minutes=None, export=False, restore_best=False, progress=True)  # fmt: skip
    err = capsys.readouterr().err
    assert "\r" not in err
    assert any(line.startswith("[epoch 1/") and "batch" in line for line in err.splitlines())
