"""Whisper experiences through the real Avalanche template and plugin callbacks (tiny random
Whisper saved locally; tiny synthetic stream): seq2seq and encoder-CTC train, adapters attach and
merge, the base domain of a pretrained model is evaluated but never trained."""

from __future__ import annotations

import copy

import pytest
import torch
from avalanche.core import SupervisedPlugin

from benchmarks.stream import make_benchmark, mark_base_domains
from cl_ssvdo.asr import CharTokenizer
from cl_ssvdo.asr.whisper.ctc_head import WhisperCTC
from cl_ssvdo.asr.whisper.model import WhisperBackbone, load_speechbrain_whisper
from cl_ssvdo.asr.whisper.seq2seq import WhisperSeq2Seq
from cl_ssvdo.asr.whisper.tiny import save_tiny_whisper
from cl_ssvdo.data import StreamError
from strategies.adapters.peft import BaselinePlugin
from strategies.adapters.ssvdo import SSVDOPlugin, SSVDPlugin
from strategies.metrics.wer import WERMatrix
from strategies.template import ASRModel, ASRTemplate

AUDIO_CTX = 250  # 5 s: every tiny-stream utterance fits


@pytest.fixture(scope="module")
def sb_whisper(tmp_path_factory):
    folder = save_tiny_whisper(tmp_path_factory.mktemp("whisper"), d_model=16, layers=1)
    return load_speechbrain_whisper(folder)


@pytest.fixture(scope="module")
def small_bench(tiny_stream):
    # 4 utterances per experience: one training batch, seen again at every step
    return make_benchmark(tiny_stream, splits=("train", "test"), max_utterances=4)


class Calls(SupervisedPlugin):
    """Counts callbacks and records training losses of the first minibatch's batch."""

    def __init__(self) -> None:
        super().__init__()
        self.losses: list[float] = []
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def before_forward(self, strategy, *a, **k) -> None:
        self._count("before_forward")

    def after_backward(self, strategy, *a, **k) -> None:
        self._count("after_backward")

    def after_update(self, strategy, *a, **k) -> None:
        self._count("after_update")

    def after_training_iteration(self, strategy, *a, **k) -> None:
        self.losses.append(float(strategy.loss))

    def after_eval_iteration(self, strategy, *a, **k) -> None:
        self._count("after_eval_iteration")


def _seq2seq_strategy(sb_whisper, plugins, lr: float, steps: int):
    torch.manual_seed(0)
    model = WhisperSeq2Seq(WhisperBackbone(copy.deepcopy(sb_whisper), audio_ctx=AUDIO_CTX))
    assert isinstance(model, ASRModel)
    strategy = ASRTemplate(
        model=model,
        tokenizer=CharTokenizer(),
        lr=lr,
        train_mb_size=4,
        train_epochs=100,
        eval_mb_size=4,
        max_steps_per_exp=steps,
        plugins=plugins,
        device="cpu",
        evaluator=None,
    )
    return model, strategy


@pytest.mark.slow
def test_seq2seq_whisper_experience_trains_through_the_template(
    sb_whisper, small_bench, one_thread
) -> None:
    """Teacher-forced CE through SupervisedTemplate: the loss on the training batch goes down,
    every callback runs, evaluation fills the WER matrix with decoded hypotheses."""
    calls, matrix = Calls(), WERMatrix()
    _, strategy = _seq2seq_strategy(sb_whisper, [calls, matrix], lr=1e-2, steps=20)
    strategy.train(small_bench.train_stream[1])
    assert len(calls.losses) == 20
    assert calls.calls["before_forward"] == calls.calls["after_update"] == 20
    assert sum(calls.losses[-3:]) / 3 < 0.8 * sum(calls.losses[:3]) / 3
    strategy.eval(small_bench.test_stream[:1])
    cell = matrix.cells[(1, 0)]
    assert len(cell.hyps) == 4 and all(isinstance(h, str) for h in cell.hyps)
    assert calls.calls["after_eval_iteration"] == 1


@pytest.mark.slow
def test_ssvdo_plugin_trains_whisper_ffns_and_merges(sb_whisper, small_bench, one_thread) -> None:
    """SSVD-O on encoder and decoder fc1/fc2 through the plugin: only adapter parameters train,
    the loss moves down, and the merged model has the plain parameter names again."""
    calls = Calls()
    plugin = SSVDOPlugin(
        schedule={"constant": {"inner_ratio": 0.5, "outer_rank": 4}}, targets=("*.fc1", "*.fc2")
    )
    model, strategy = _seq2seq_strategy(sb_whisper, [plugin, calls], lr=3e-2, steps=8)
    plain = {n: p.detach().clone() for n, p in model.named_parameters()}
    strategy.train(small_bench.train_stream[1])
    assert calls.losses[-1] < calls.losses[0]
    record = plugin.records[0]
    assert len(record.layers) == 4 and record.total_trainable > 0
    assert {n for n, _ in model.named_parameters()} == set(plain)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, plain[n])}
    assert changed and all(n.endswith(("fc1.weight", "fc2.weight")) for n in changed)


@pytest.mark.slow
@pytest.mark.parametrize(
    "plugin",
    [
        lambda: SSVDPlugin(schedule={"constant": {"inner_ratio": 0.5}}, targets=("*.fc1", "*.fc2")),
        lambda: BaselinePlugin("lora", targets=("*.fc1", "*.fc2"), rank=2),
        lambda: BaselinePlugin("dora", targets=("*.fc1", "*.fc2"), rank=2),
        lambda: BaselinePlugin("pissa", targets=("*.fc1", "*.fc2"), rank=2),
        lambda: BaselinePlugin("mica", targets=("*.fc1", "*.fc2"), rank=2),
        # the decoder's fc1/fc2 only run in the loss: the calibration pass runs it too
        lambda: BaselinePlugin("corda", targets=("*.fc1", "*.fc2"), rank=2, calibration_batches=1),
        lambda: BaselinePlugin("osf", targets=("*.fc1", "*.fc2"), rank=2),
        lambda: BaselinePlugin("full", targets=("*.fc1", "*.fc2")),
    ],
    ids=["ssvd", "lora", "dora", "pissa", "mica", "corda", "osf", "full"],
)
def test_every_adapter_method_trains_whisper_ffns_and_merges(
    plugin, sb_whisper, small_bench, one_thread
) -> None:
    """SSVD, LoRA, DoRA, PiSSA, MiCA, CorDA, OSF and full fine-tuning on the same fc1/fc2 globs:
    the loss moves down, and the merged model has the plain parameters, changed on the FFN
    weights only."""
    calls, adapter = Calls(), plugin()
    model, strategy = _seq2seq_strategy(sb_whisper, [adapter, calls], lr=3e-2, steps=6)
    plain = {n: p.detach().clone() for n, p in model.named_parameters()}
    strategy.train(small_bench.train_stream[1])
    assert calls.losses[-1] < calls.losses[0]
    merged = dict(strategy.model.named_parameters())
    assert set(merged) == set(plain)
    changed = {n for n, p in merged.items() if not torch.equal(p, plain[n])}
    assert changed and all(n.split(".")[-2] in ("fc1", "fc2") for n in changed)  # full: biases too


@pytest.mark.slow
def test_ctc_whisper_experience_trains_through_the_template(
    sb_whisper, small_bench, one_thread
) -> None:
    """Whisper encoder + CTC head: the CTC template path unchanged; loss goes down."""
    torch.manual_seed(0)
    tokenizer = CharTokenizer()
    backbone = WhisperBackbone(copy.deepcopy(sb_whisper), audio_ctx=AUDIO_CTX)
    model = WhisperCTC(backbone, tokenizer.vocab_size)
    assert not isinstance(model, ASRModel)  # a CTC model: (log_probs, out_lens)
    calls = Calls()
    strategy = ASRTemplate(
        model=model,
        tokenizer=tokenizer,
        lr=1e-2,
        train_mb_size=4,
        train_epochs=100,
        max_steps_per_exp=25,
        plugins=[calls],
        device="cpu",
        evaluator=None,
    )
    strategy.train(small_bench.train_stream[1])
    assert len(calls.losses) == 25
    assert sum(calls.losses[-3:]) / 3 < 0.8 * sum(calls.losses[:3]) / 3


def test_base_domains_are_marked_evaluate_only(tiny_stream) -> None:
    bench = make_benchmark(tiny_stream, splits=("train", "test"), max_utterances=2)
    mark_base_domains(bench, ["adult"])
    assert [e.evaluate_only for e in bench.train_stream] == [True, False, False]
    assert [e.domain for e in bench.test_stream] == ["adult", "child", "accent"]
    with pytest.raises(StreamError, match="must be the first domains"):
        mark_base_domains(bench, ["child"])
    with pytest.raises(StreamError, match="no domain is left"):
        mark_base_domains(bench, ["adult", "child", "accent"])
