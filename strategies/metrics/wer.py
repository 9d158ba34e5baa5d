"""WER/CER over decoded hypotheses: Avalanche metrics and the WER matrix.

Scoring is :mod:`cl_ssvdo.data.scoring` (jiwer), the one scorer evaluation and pretraining use.

Rates are percentages (corpus level: ``100 * (S + D + I) / N`` over all utterances of an
experience; can exceed 100). Hypotheses come from ``strategy.mb_hypotheses``
(:class:`strategies.template.CTCTemplate`: greedy CTC decoding unless a beam decoder was given).

- :class:`ErrorRatePluginMetric` (via :func:`wer_metrics`): ``WER_Exp/eval_phase/test_stream/Exp000``
  per evaluated experience and ``WER_Stream/eval_phase/test_stream`` per eval call (CER alike).
- :class:`WERMatrix`: a plugin filling ``R[i][j]`` = WER on eval experience ``j`` after
  training experience ``i`` (row 0 = the base model, evaluated before any training:
  call ``strategy.eval(test_stream)`` once before the first ``train``). Hypotheses are kept,
  with each utterance's word errors and reference word count (:func:`utterance_error_counts`),
  so a study can bootstrap over voices and utterances.

Imports avalanche and ``cl_ssvdo.data``; never mlflow or experiments.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from avalanche.core import SupervisedPlugin
from avalanche.evaluation.metric_definitions import PluginMetric
from avalanche.evaluation.metric_results import MetricValue
from avalanche.evaluation.metric_utils import get_metric_name, stream_type

from cl_ssvdo.data.scoring import cer, error_counts, error_rate, utterance_error_counts, wer

__all__ = ["ErrorRatePluginMetric", "MatrixCell", "WERMatrix", "wer_metrics"]


class ErrorRatePluginMetric(PluginMetric[float]):
    """WER or CER of the evaluated experience (``level="experience"``) or of the whole eval
    call (``level="stream"``), from ``strategy.mb_words`` and ``strategy.mb_hypotheses``.

    Arguments
    ---------
    unit : str
        ``"word"`` (WER) or ``"char"`` (CER).
    level : str
        ``"experience"`` or ``"stream"``.
    """

    def __init__(self, unit: str = "word", level: str = "experience") -> None:
        super().__init__()
        if unit not in ("word", "char"):
            raise ValueError(f"ErrorRatePluginMetric: unit must be 'word' or 'char', got {unit!r}")
        if level not in ("experience", "stream"):
            raise ValueError(
                f"ErrorRatePluginMetric: level must be 'experience' or 'stream', got {level!r}"
            )
        self.unit, self.level = unit, level
        self._refs: list[str] = []
        self._hyps: list[str] = []

    def __str__(self) -> str:
        return ("WER" if self.unit == "word" else "CER") + (
            "_Exp" if self.level == "experience" else "_Stream"
        )

    def reset(self) -> None:
        self._refs, self._hyps = [], []

    def result(self) -> float:
        return error_rate(*error_counts(self._refs, self._hyps, self.unit))

    def before_eval(self, strategy) -> None:
        if self.level == "stream":
            self.reset()

    def before_eval_exp(self, strategy) -> None:
        if self.level == "experience":
            self.reset()

    def after_eval_iteration(self, strategy) -> None:
        self._refs.extend(strategy.mb_words)
        self._hyps.extend(strategy.mb_hypotheses)

    def _emit(self, strategy) -> list[MetricValue]:
        name = get_metric_name(
            self, strategy, add_experience=self.level == "experience", add_task=False
        )
        return [MetricValue(self, name, self.result(), strategy.clock.train_iterations)]

    def after_eval_exp(self, strategy) -> list[MetricValue] | None:
        return self._emit(strategy) if self.level == "experience" else None

    def after_eval(self, strategy) -> list[MetricValue] | None:
        return self._emit(strategy) if self.level == "stream" else None


def wer_metrics(
    *, experience: bool = True, stream: bool = False, cer: bool = False
) -> list[ErrorRatePluginMetric]:
    """WER (and optionally CER) metrics for an ``EvaluationPlugin``."""
    units = ["word", "char"] if cer else ["word"]
    levels = [lvl for lvl, on in (("experience", experience), ("stream", stream)) if on]
    return [ErrorRatePluginMetric(u, lvl) for u in units for lvl in levels]


@dataclass
class MatrixCell:
    """One evaluation: model after ``row`` training experiences on eval experience ``col``."""

    row: int
    col: int
    domain: str
    wer: float
    cer: float
    ids: list[str] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)
    hyps: list[str] = field(default_factory=list)
    errors: list[int] = field(default_factory=list)  # word errors per utterance (S + D + I)
    words: list[int] = field(default_factory=list)  # reference words per utterance


class WERMatrix(SupervisedPlugin):
    """``R[i][j]``: WER (percent) on eval experience ``j`` after training experience ``i``.

    Row ``i`` is the number of training experiences completed when the evaluation ran: row 0
    is the base model (call ``strategy.eval(test_stream)`` before the first ``train``), row
    ``i`` is after the i-th ``train(experience)``. Columns follow the eval experiences'
    ``current_experience`` index (their ``.domain`` names, when the benchmark sets them, are in
    :attr:`domains`). Only evaluations on the stream named ``stream`` count. Evaluations that
    Avalanche triggers inside a training experience (``eval_every`` after epochs/iterations)
    are ignored; its evaluation before training (row = experiences trained so far) and the
    final one in ``after_training_exp`` (when ``eval_every=0``) are recorded. Re-evaluating a
    cell overwrites it; ``force_row`` pins the row of the next evaluations.

    Arguments
    ---------
    stream : str
        Which eval stream fills the matrix (``"test"``; ``"valid"`` for model selection).
    n_rows, n_cols : int, optional
        Fix the shape (else it grows with what was evaluated); missing cells are NaN.

    Example
    -------
    >>> m = WERMatrix()
    >>> _ = m.record(0, 0, ["a b"], ["a b"], ids=["u1"], domain="adult")
    >>> _ = m.record(1, 0, ["a b"], ["a"], ids=["u1"])
    >>> m.wer.tolist()
    [[0.0], [50.0]]
    """

    def __init__(self, stream: str = "test", n_rows: int | None = None, n_cols: int | None = None):
        super().__init__()
        self.stream = stream
        self.n_rows, self.n_cols = n_rows, n_cols
        self.cells: dict[tuple[int, int], MatrixCell] = {}
        self.trained_experiences = 0
        self.force_row: int | None = None
        self._in_training_exp = False
        self._current: dict[str, Any] | None = None

    # ------------------------------------------------------------------ filling
    def record(
        self,
        row: int,
        col: int,
        refs: Sequence[str],
        hyps: Sequence[str],
        ids: Sequence[str] | None = None,
        domain: str | None = None,
    ) -> MatrixCell:
        """Scores ``hyps`` against ``refs`` into cell (row, col) and returns it."""
        if row < 0 or col < 0:
            raise ValueError(f"WERMatrix.record: negative cell ({row}, {col})")
        errors, words = utterance_error_counts(refs, hyps)
        cell = MatrixCell(
            row=row,
            col=col,
            domain=domain if domain is not None else f"exp{col}",
            wer=wer(refs, hyps),
            cer=cer(refs, hyps),
            ids=list(ids) if ids is not None else [str(i) for i in range(len(refs))],
            refs=list(refs),
            hyps=list(hyps),
            errors=errors,
            words=words,
        )
        self.cells[(row, col)] = cell
        return cell

    def before_training_exp(self, strategy, *args, **kwargs) -> None:
        self._in_training_exp = True

    def after_training_exp(self, strategy, *args, **kwargs) -> None:
        self._in_training_exp = False
        self.trained_experiences += 1

    def before_eval_exp(self, strategy, *args, **kwargs) -> None:
        exp = strategy.experience
        if self._in_training_exp or stream_type(exp) != self.stream:
            self._current = None
            return
        row = self.force_row if self.force_row is not None else self.trained_experiences
        col = int(exp.current_experience)
        domain = getattr(exp, "domain", None)
        self._current = {
            "row": row,
            "col": col,
            "domain": domain,
            "ids": [],
            "refs": [],
            "hyps": [],
        }

    def after_eval_iteration(self, strategy, *args, **kwargs) -> None:
        if self._current is None:
            return
        self._current["ids"].extend(strategy.mb_ids)
        self._current["refs"].extend(strategy.mb_words)
        self._current["hyps"].extend(strategy.mb_hypotheses)

    def after_eval_exp(self, strategy, *args, **kwargs) -> None:
        if self._current is None:
            return
        cur, self._current = self._current, None
        self.record(cur["row"], cur["col"], cur["refs"], cur["hyps"], cur["ids"], cur["domain"])

    # ------------------------------------------------------------------ reading
    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns): fixed ones if given, else one past the largest filled indices."""
        rows = (
            self.n_rows
            if self.n_rows is not None
            else 1 + max((r for r, _ in self.cells), default=-1)
        )
        cols = (
            self.n_cols
            if self.n_cols is not None
            else 1 + max((c for _, c in self.cells), default=-1)
        )
        return rows, cols

    def _matrix(self, attr: str) -> np.ndarray:
        out = np.full(self.shape, np.nan)
        for (r, c), cell in self.cells.items():
            if r < out.shape[0] and c < out.shape[1]:
                out[r, c] = getattr(cell, attr)
        return out

    @property
    def wer(self) -> np.ndarray:
        """[rows, cols] WER in percent, NaN where not evaluated."""
        return self._matrix("wer")

    @property
    def cer(self) -> np.ndarray:
        """[rows, cols] CER in percent, NaN where not evaluated."""
        return self._matrix("cer")

    @property
    def domains(self) -> list[str]:
        """Column names (``experience.domain`` when known, else ``exp<j>``)."""
        names = {c: cell.domain for (_, c), cell in self.cells.items()}
        return [names.get(c, f"exp{c}") for c in range(self.shape[1])]

    def hypotheses(self, row: int, col: int) -> list[tuple[str, str, str]]:
        """``(utt_id, reference, hypothesis)`` of cell (row, col)."""
        if (row, col) not in self.cells:
            raise KeyError(f"WERMatrix: cell ({row}, {col}) was not evaluated")
        cell = self.cells[(row, col)]
        return list(zip(cell.ids, cell.refs, cell.hyps, strict=True))

    def to_dict(self, with_hypotheses: bool = False) -> dict[str, Any]:
        """JSON-ready: ``domains``, ``wer``, ``cer`` (lists, None for NaN), optionally cells."""

        def rows(a: np.ndarray) -> list[list[float | None]]:
            return [[None if np.isnan(v) else float(v) for v in r] for r in a]

        data: dict[str, Any] = {
            "domains": self.domains,
            "wer": rows(self.wer),
            "cer": rows(self.cer),
        }
        if with_hypotheses:
            data["cells"] = [
                {
                    "row": c.row,
                    "col": c.col,
                    "domain": c.domain,
                    "wer": c.wer,
                    "cer": c.cer,
                    "utterances": [
                        {"id": i, "ref": r, "hyp": h}
                        for i, r, h in zip(c.ids, c.refs, c.hyps, strict=True)
                    ],
                }
                for _, c in sorted(self.cells.items())
            ]
        return data
