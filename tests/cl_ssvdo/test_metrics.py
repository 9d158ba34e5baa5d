"""Continual-learning metrics: hand-worked matrices, sign conventions and invariants."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cl_ssvdo import metrics

# Three domains. Row 0: base; row i: after experience i (trained on column i - 1).
R3 = [
    [40.0, 60.0, 80.0],
    [20.0, 55.0, 70.0],
    [26.0, 30.0, 65.0],
    [24.0, 33.0, 10.0],
]


def test_hand_worked_three_domains() -> None:
    np.testing.assert_allclose(metrics.awer(R3), [20.0, 28.0, 67.0 / 3])
    # BWT_2 = R[1,0] - R[2,0] = -6; BWT_3 = mean(20 - 24, 30 - 33) = -3.5
    np.testing.assert_allclose(metrics.bwt(R3), [math.nan, -6.0, -3.5])
    np.testing.assert_allclose(metrics.learning(R3), [20.0, 25.0, 55.0])
    F = metrics.forgetting_matrix(R3)
    assert F.shape == (4, 3)
    # F[2,0] = 26 - min(40, 20); F[3,0] = 24 - min(40, 20, 26); F[3,1] = 33 - min(60, 55, 30)
    assert F[2, 0] == 6.0 and F[3, 0] == 4.0 and F[3, 1] == 3.0
    defined = ~np.isnan(F)
    assert defined.sum() == 3 and defined[2, 0] and defined[3, 0] and defined[3, 1]
    np.testing.assert_allclose(metrics.intransigence(R3, joint=[18.0, 28.0, 12.0]), [2, 2, -2])
    np.testing.assert_allclose(metrics.fwt(R3, single=[22.0, 29.0, 11.0]), [2, -1, 1])


def test_summarize_reports_final_row_and_optional_parts() -> None:
    s = metrics.summarize(R3, joint=[18.0, 28.0, 12.0], single=[22.0, 29.0, 11.0])
    assert s["awer"] == pytest.approx(67.0 / 3)
    assert s["bwt"] == pytest.approx(-3.5)
    assert s["forgetting_mean"] == pytest.approx(3.5) and s["forgetting_max"] == 4.0
    assert s["learning"] == [20.0, 25.0, 55.0] and s["learning_mean"] == pytest.approx(100 / 3)
    assert s["im"] == [2.0, 2.0, -2.0] and s["im_mean"] == pytest.approx(2 / 3)
    assert s["fwt"] == [2.0, -1.0, 1.0] and s["fwt_mean"] == pytest.approx(2 / 3)
    assert "im" not in metrics.summarize(R3) and "fwt" not in metrics.summarize(R3)


def test_partial_matrix_mid_stream_and_single_experience() -> None:
    s = metrics.summarize(R3[:3])  # after experience 2 of 3
    assert s["awer"] == pytest.approx(28.0) and s["bwt"] == pytest.approx(-6.0)
    one = metrics.summarize([[5.0, 7.0], [3.0, 9.0]])
    assert one["awer"] == 3.0 and one["learning"] == [2.0]
    assert math.isnan(one["bwt"]) and math.isnan(one["forgetting_mean"])


def test_trailing_untrained_rows_are_ignored() -> None:
    padded = np.vstack([np.asarray(R3[:3]), np.full((1, 3), np.nan)])
    np.testing.assert_equal(metrics.summarize(padded), metrics.summarize(R3[:3]))


def test_docstring_example() -> None:
    s = metrics.summarize([[30.0, 50.0], [20.0, 40.0], [25.0, 15.0]])
    assert (s["awer"], s["bwt"], s["forgetting_max"], s["learning"]) == (20.0, -5.0, 5.0, [10, 25])


@pytest.mark.parametrize(
    ("R", "needle"),
    [
        ([1.0, 2.0], "2-D"),
        ([[1.0, 2.0]], "shape"),
        ([[1.0], [1.0], [1.0]], "shape"),
        ([[1.0, 2.0], [1.0]], "rectangular"),
        ([[1.0, -0.1], [1.0, 2.0]], "R[0][1]"),
        ([[1.0, 2.0], [math.nan, 2.0]], "R[1][0]"),
    ],
)
def test_bad_matrix_is_named(R, needle) -> None:
    with pytest.raises(ValueError, match=r"R") as err:
        metrics.summarize(R)
    assert needle in str(err.value)


def test_bad_reference_vectors_are_named() -> None:
    with pytest.raises(ValueError, match="joint"):
        metrics.intransigence(R3, joint=[1.0, 2.0])
    with pytest.raises(ValueError, match="single"):
        metrics.fwt(R3, single=[1.0, 2.0, -3.0])


@st.composite
def wer_matrices(draw, monotone: bool = False):
    T = draw(st.integers(1, 6))
    E = draw(st.integers(1, T))
    R = draw(arrays(np.float64, (E + 1, T), elements=st.floats(0, 100, allow_subnormal=False)))
    if monotone:
        # Each column improves until its domain is trained, then never improves again:
        # the best WER on domain c before experience i is at the diagonal row c + 1.
        for c in range(T):
            col = R[:, c]
            head = np.sort(col[: c + 2])[::-1]
            tail = np.sort(col[c + 2 :])
            R[:, c] = np.concatenate([head, np.maximum(tail, head[-1])])
    return R


@settings(max_examples=60, deadline=None)
@given(wer_matrices(monotone=True))
def test_bwt_is_minus_mean_forgetting_for_monotone_columns(R) -> None:
    F = metrics.forgetting_matrix(R)
    b = metrics.bwt(R)
    for i in range(2, R.shape[0]):
        assert b[i - 1] == pytest.approx(-np.mean(F[i, : i - 1]), abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(wer_matrices())
def test_forgetting_bounds_and_bwt_relation(R) -> None:
    F = metrics.forgetting_matrix(R)
    b = metrics.bwt(R)
    for i in range(2, R.shape[0]):
        # The best earlier WER is at most the diagonal one: BWT_i >= -mean forgetting.
        assert b[i - 1] >= -np.mean(F[i, : i - 1]) - 1e-9
        # Forgetting is >= 0 exactly when the domain got worse than its best earlier WER.
        for c in range(i - 1):
            assert (F[i, c] > 0) == (R[i, c] > R[:i, c].min())
    s = metrics.summarize(R)
    assert s["awer"] == pytest.approx(R[-1, : R.shape[0] - 1].mean())


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.data())
def test_constant_columns_mean_no_forgetting(T, E, data) -> None:
    E = min(E, T)
    col = data.draw(arrays(np.float64, (T,), elements=st.floats(0, 100)))
    R = np.tile(col, (E + 1, 1))
    s = metrics.summarize(R, joint=col, single=col)
    assert s["learning"] == [0.0] * E and s["im"] == [0.0] * E and s["fwt"] == [0.0] * E
    if E >= 2:
        assert s["bwt"] == 0.0 and s["forgetting_max"] == 0.0
    F = metrics.forgetting_matrix(R)
    assert np.all(np.nan_to_num(F) == 0.0)


@settings(max_examples=40, deadline=None)
@given(wer_matrices(), st.floats(0.5, 20))
def test_worse_final_row_means_more_forgetting_and_lower_bwt(R, delta) -> None:
    if R.shape[0] < 3:
        return
    worse = R.copy()
    worse[-1, : R.shape[0] - 2] += delta  # earlier domains get worse after the last experience
    assert metrics.bwt(worse)[-1] == pytest.approx(metrics.bwt(R)[-1] - delta)
    before = metrics.summarize(R)["forgetting_mean"]
    assert metrics.summarize(worse)["forgetting_mean"] > before
