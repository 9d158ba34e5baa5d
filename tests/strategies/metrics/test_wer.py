"""WER/CER metrics and the WER matrix, checked against independent jiwer computations."""

from __future__ import annotations

import jiwer
import numpy as np
import pytest
import torch
from avalanche.core import SupervisedPlugin

from cl_ssvdo.asr.evaluate import transcribe
from cl_ssvdo.data.scoring import cer, error_counts, wer
from strategies.metrics.wer import ErrorRatePluginMetric, WERMatrix, wer_metrics
from strategies.template import CTCTemplate


def test_matrix_shape_and_values_equal_jiwer(
    pretrained_ci_model, tiny_benchmark, one_thread
) -> None:
    torch.manual_seed(0)
    model, tokenizer = pretrained_ci_model
    matrix = WERMatrix()
    strategy = CTCTemplate(
        model=model,
        tokenizer=tokenizer,
        train_mb_size=8,
        eval_mb_size=16,
        max_steps_per_exp=3,
        plugins=[matrix],
        device="cpu",
    )
    test = tiny_benchmark.test_stream
    strategy.eval(test)  # row 0: the base model
    for exp in tiny_benchmark.train_stream[:2]:
        strategy.train(exp)
        results = strategy.eval(test)
    assert matrix.wer.shape == matrix.cer.shape == (3, 3)
    assert matrix.domains == ["adult", "child", "accent"]
    assert not np.isnan(matrix.wer).any()
    for (row, col), cell in matrix.cells.items():
        refs, hyps = cell.refs, cell.hyps
        assert len(refs) == len(test[col].dataset)
        assert matrix.wer[row, col] == pytest.approx(100 * jiwer.wer(refs, hyps))
        assert matrix.cer[row, col] == pytest.approx(100 * jiwer.cer(refs, hyps))
    # the logged per-experience metric of the last eval is the last row
    for col in range(3):
        assert results[f"WER_Exp/eval_phase/test_stream/Exp{col:03d}"] == pytest.approx(
            matrix.wer[2, col]
        )
        assert results[f"CER_Exp/eval_phase/test_stream/Exp{col:03d}"] == pytest.approx(
            matrix.cer[2, col]
        )
    all_refs = [r for c in range(3) for _, r, _ in matrix.hypotheses(2, c)]
    all_hyps = [h for c in range(3) for _, _, h in matrix.hypotheses(2, c)]
    assert results["WER_Stream/eval_phase/test_stream"] == pytest.approx(
        100 * jiwer.wer(all_refs, all_hyps)
    )
    # the kept hypotheses are the model's: decode the child test set independently
    independent = {i: h for i, _, h in transcribe(model, tokenizer, test[1].dataset, batch_size=5)}
    assert {i: h for i, _, h in matrix.hypotheses(2, 1)} == independent
    # adapting to child changed the adult row (forgetting shows up in the matrix)
    assert matrix.wer[2, 0] != matrix.wer[1, 0]
    assert matrix.to_dict()["wer"][0] == pytest.approx(list(matrix.wer[0]))


def test_periodic_and_other_stream_evaluations_are_not_recorded(
    ci_model, char_tokenizer, tiny_benchmark, one_thread
) -> None:
    class CountTestEvals(SupervisedPlugin):
        calls = 0

        def before_eval_exp(self, strategy, *a, **k) -> None:
            self.calls += strategy.experience.origin_stream.name == "test"

    matrix, counter = WERMatrix(), CountTestEvals()
    strategy = CTCTemplate(
        model=ci_model,
        tokenizer=char_tokenizer,
        train_mb_size=16,
        train_epochs=2,
        eval_mb_size=32,
        plugins=[matrix, counter],
        eval_every=1,
        device="cpu",
    )
    strategy.train(tiny_benchmark.train_stream[0], eval_streams=[tiny_benchmark.test_stream[:1]])
    # Avalanche evaluated before training (the base model: row 0) and after each epoch (inside
    # the experience: not a matrix row)
    assert counter.calls == 3
    assert list(matrix.cells) == [(0, 0)] and matrix.trained_experiences == 1
    strategy.eval(tiny_benchmark.valid_stream[:1])
    assert list(matrix.cells) == [(0, 0)]
    strategy.eval(tiny_benchmark.test_stream[1:2])
    assert list(matrix.cells) == [(0, 0), (1, 1)] and matrix.shape == (2, 2)
    assert np.isnan(matrix.wer[0, 1]) and matrix.domains == ["adult", "child"]

    # eval_every=0: Avalanche evaluates before training and after the experience: rows 0 and 1
    matrix = WERMatrix()
    strategy = CTCTemplate(
        model=ci_model,
        tokenizer=char_tokenizer,
        train_mb_size=16,
        eval_mb_size=32,
        max_steps_per_exp=1,
        plugins=[matrix],
        eval_every=0,
        device="cpu",
    )
    strategy.train(tiny_benchmark.train_stream[0], eval_streams=[tiny_benchmark.test_stream[:1]])
    assert sorted(matrix.cells) == [(0, 0), (1, 0)]


def test_matrix_bookkeeping() -> None:
    m = WERMatrix(n_rows=3, n_cols=2)
    m.record(0, 1, ["a b c", "d"], ["a x c", ""], ids=["u1", "u2"], domain="child")
    assert m.shape == (3, 2)
    assert m.wer[0, 1] == pytest.approx(50.0) and np.isnan(m.wer[1, 1])
    assert m.hypotheses(0, 1) == [("u1", "a b c", "a x c"), ("u2", "d", "")]
    with pytest.raises(KeyError, match=r"\(1, 1\)"):
        m.hypotheses(1, 1)
    data = m.to_dict(with_hypotheses=True)
    assert data["wer"][1] == [None, None] and data["cells"][0]["utterances"][1]["hyp"] == ""
    m.force_row = 2
    assert m.force_row == 2
    with pytest.raises(ValueError, match="negative"):
        m.record(-1, 0, [], [])


def test_error_rates() -> None:
    assert error_counts([], []) == (0, 0)
    assert wer(["a  b"], [" a b "]) == 0.0  # whitespace-normalised
    assert wer([""], ["x y"]) == 200.0  # insertions against an empty reference
    assert cer(["ab"], ["b"]) == 50.0
    with pytest.raises(ValueError, match="2 references but 1"):
        error_counts(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="unit"):
        error_counts(["a"], ["a"], unit="phone")


def test_metric_names_and_arguments() -> None:
    names = [str(m) for m in wer_metrics(experience=True, stream=True, cer=True)]
    assert names == ["WER_Exp", "WER_Stream", "CER_Exp", "CER_Stream"]
    with pytest.raises(ValueError, match="level"):
        ErrorRatePluginMetric(level="epoch")
