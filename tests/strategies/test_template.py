"""CTCTemplate: training on a tiny-stream experience, optimizer lifecycle, minibatch handling."""

from __future__ import annotations

import pytest
import torch
from avalanche.core import SupervisedPlugin

from cl_ssvdo.data import collate_speech
from strategies.template import CTCTemplate, default_ctc_evaluator


class Recorder(SupervisedPlugin):
    """Records losses and what the strategy exposes at a few callbacks."""

    def __init__(self) -> None:
        super().__init__()
        self.losses: list[float] = []
        self.seen: dict[str, object] = {}
        self.iterations_per_exp: list[int] = []

    def before_training_exp(self, strategy, *a, **k) -> None:
        self.iterations_per_exp.append(0)

    def before_forward(self, strategy, *a, **k) -> None:
        self.seen.update(
            words=strategy.mb_words,
            ids=strategy.mb_ids,
            wavs=strategy.mb_wavs,
            lens=strategy.mb_wav_lens,
            task=strategy.mb_task_id,
            loader=strategy.dataloader,
        )

    def after_training_iteration(self, strategy, *a, **k) -> None:
        self.losses.append(strategy.loss.item())
        self.iterations_per_exp[-1] += 1


def _wer(results: dict, stream: str, exp: int) -> float:
    return results[f"WER_Exp/eval_phase/{stream}_stream/Exp{exp:03d}"]


def test_trains_one_experience_and_wer_goes_down(
    pretrained_ci_model, tiny_benchmark, one_thread
) -> None:
    """From the adult-pretrained model, 60 steps on the child experience lower child WER."""
    torch.manual_seed(0)
    model, tokenizer = pretrained_ci_model
    rec = Recorder()
    strategy = CTCTemplate(
        model=model,
        tokenizer=tokenizer,
        lr=1e-3,
        train_mb_size=8,
        train_epochs=100,
        eval_mb_size=16,
        max_steps_per_exp=60,
        plugins=[rec],
        device="cpu",
    )
    child_train = tiny_benchmark.train_stream[1]
    before = _wer(strategy.eval([child_train]), "train", 1)
    strategy.train(child_train)
    after = _wer(strategy.eval([child_train]), "train", 1)
    assert strategy.exp_steps == 60 and len(rec.losses) == 60
    assert sum(rec.losses[-10:]) < 0.8 * sum(rec.losses[:10])
    assert after < before - 15, (before, after)


def test_optimizer_is_rebuilt_after_plugins_change_the_trainable_set(
    ci_model, char_tokenizer, tiny_benchmark, one_thread
) -> None:
    class HeadOnly(SupervisedPlugin):
        """Freezes everything but the CTC head in before_training_exp (as adapters do)."""

        def before_training_exp(self, strategy, *a, **k) -> None:
            # Avalanche 0.6.0 already built the optimizer (over every parameter) by now
            self.params_in_optimizer = sum(
                len(g["params"]) for g in strategy.optimizer.param_groups
            )
            for name, p in strategy.model.named_parameters():
                p.requires_grad_(name.startswith("ctc_head"))

    plugin = HeadOnly()
    strategy = CTCTemplate(
        model=ci_model,
        tokenizer=char_tokenizer,
        train_mb_size=4,
        max_steps_per_exp=2,
        plugins=[plugin],
        evaluator=default_ctc_evaluator(),
        device="cpu",
    )
    frozen_before = {n: p.detach().clone() for n, p in ci_model.named_parameters()}
    strategy.train(tiny_benchmark.train_stream[0])
    assert plugin.params_in_optimizer == len(list(ci_model.parameters()))
    head = {id(p) for p in ci_model.ctc_head.parameters()}
    assert {id(p) for g in strategy.optimizer.param_groups for p in g["params"]} == head
    for name, p in ci_model.named_parameters():
        changed = not torch.equal(p, frozen_before[name])
        assert changed == name.startswith("ctc_head"), name
    # the public hook, for plugins that change the set at other times
    for p in ci_model.parameters():
        p.requires_grad_(True)
    assert strategy.optimizer_is_stale()
    strategy.reset_optimizer()
    assert not strategy.optimizer_is_stale()
    assert not strategy.optimizer.state  # fresh: no moments carried over


def test_minibatches_keep_strings_and_use_the_speech_collate(
    ci_model, char_tokenizer, tiny_benchmark, one_thread
) -> None:
    rec = Recorder()
    strategy = CTCTemplate(
        model=ci_model,
        tokenizer=char_tokenizer,
        train_mb_size=3,
        train_epochs=5,
        max_steps_per_exp=2,
        plugins=[rec],
        device="cpu",
    )
    strategy.train(tiny_benchmark.train_stream[0])
    strategy.train(tiny_benchmark.train_stream[1])
    # the step budget holds per experience, also after the first one stopped training early
    assert rec.iterations_per_exp == [2, 2]
    seen = rec.seen
    assert seen["loader"].collate_fn is collate_speech  # not Avalanche's default (issue 1531)
    assert isinstance(seen["words"], list) and all(isinstance(w, str) for w in seen["words"])
    assert all(i.startswith("child-train") for i in seen["ids"])
    assert seen["wavs"].shape[0] == 3 and seen["lens"].max() == 1.0 and seen["task"] == 0


def test_default_evaluator_reports_loss_wer_cer_but_no_accuracy(
    ci_model, char_tokenizer, tiny_benchmark, one_thread
) -> None:
    strategy = CTCTemplate(model=ci_model, tokenizer=char_tokenizer, eval_mb_size=32, device="cpu")
    results = strategy.eval(tiny_benchmark.valid_stream[:1])
    names = set(results)
    for prefix in ("Loss_Exp", "WER_Exp", "CER_Exp", "Loss_Stream", "WER_Stream", "CER_Stream"):
        assert any(n.startswith(prefix) for n in names), (prefix, names)
    assert not any("Acc" in n for n in names)
    assert results["WER_Exp/eval_phase/valid_stream/Exp000"] >= 0.0


def test_empty_transcripts_give_a_finite_loss(ci_model, char_tokenizer) -> None:
    strategy = CTCTemplate(model=ci_model, tokenizer=char_tokenizer, device="cpu")
    strategy.mbatch = collate_speech([(torch.randn(8000), "", "a"), (torch.randn(6000), "hi", "b")])
    strategy._unpack_minibatch()
    strategy.mb_output = strategy.forward()
    loss = strategy.criterion()
    assert torch.isfinite(loss)
    assert len(strategy.mb_hypotheses) == 2 and strategy.mb_hypotheses is strategy.mb_hypotheses


def test_arguments_are_checked(ci_model, char_tokenizer) -> None:
    assert (
        CTCTemplate(model=ci_model, tokenizer=char_tokenizer, amp=True, device="cpu").amp is False
    )
    with pytest.raises(ValueError, match="lr"):
        CTCTemplate(model=ci_model, tokenizer=char_tokenizer, lr=0)
    with pytest.raises(ValueError, match="max_steps_per_exp"):
        CTCTemplate(model=ci_model, tokenizer=char_tokenizer, max_steps_per_exp=0)
    strategy = CTCTemplate(model=ci_model, tokenizer=char_tokenizer, device="cpu")
    strategy.mbatch = (torch.zeros(1, 10),)
    with pytest.raises(ValueError, match="collate_fn"):
        strategy._unpack_minibatch()
