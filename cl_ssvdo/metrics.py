"""Continual-learning metrics computed from a WER matrix (pure functions, numpy only).

This module knows nothing of Avalanche or MLflow: it takes numbers and returns numbers.

Indexing
--------
``R`` has shape ``(E + 1, T)`` for a stream of ``T`` domains of which ``E`` (``1 <= E <= T``)
experiences have been trained so far (``E == T`` at the end of a run):

- row ``0`` is the base model before any adaptation; row ``i`` (``1 <= i <= E``) is the model
  after training on experience ``i``;
- column ``c`` (``0 <= c < T``) is the ``c``-th domain of the stream, in stream order;
- experience ``i`` trains on the domain in column ``i - 1``.

So, in array terms, ``R[i, i - 1]`` is the WER on the domain just trained, and ``R[i, c]`` with
``c < i - 1`` is the WER on an earlier domain. The design note (``ssvdo-method.md``, "Continual
learning") numbers domains from 1: its ``R[i][j]`` is ``R[i, j - 1]`` here. With that
translation every definition below is the design note's:

- ``AWER_i = mean_{c < i} R[i, c]``
- ``BWT_i = mean_{c < i - 1} (R[c + 1, c] - R[i, c])``  (negative = forgetting, WER units)
- ``F[i, c] = R[i, c] - min_{t < i} R[t, c]`` for ``c < i - 1``  (>= 0: worse than the best
  WER seen on that domain before experience ``i``; ``t`` includes the base row 0)
- ``learning_i = R[i - 1, i - 1] - R[i, i - 1]``  (WER gained on the domain just trained)
- ``IM_i = R[i, i - 1] - joint[i - 1]``, ``joint[c]`` = WER on domain ``c`` of a model trained
  jointly on domains ``0..c`` (positive = the continual model learned less than joint training)
- ``FWT_i = single[i - 1] - R[i, i - 1]``, ``single[c]`` = WER on domain ``c`` after single-task
  fine-tuning from the base on domain ``c`` (positive = better than single-task fine-tuning)

Values are in whatever unit ``R`` uses (fractions or percent). Quantities that are undefined
(BWT and forgetting before a second experience) are ``nan``. Per-experience vectors have
length ``E`` and entry ``i - 1`` belongs to experience ``i``.

Example
-------
>>> R = [[30.0, 50.0], [20.0, 40.0], [25.0, 15.0]]
>>> s = summarize(R)
>>> s["awer"], s["bwt"], s["forgetting_max"], s["learning"]
(20.0, -5.0, 5.0, [10.0, 25.0])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "as_wer_matrix",
    "awer",
    "bwt",
    "forgetting_matrix",
    "learning",
    "intransigence",
    "fwt",
    "summarize",
]

ArrayLike = Sequence[Sequence[float]] | np.ndarray


def as_wer_matrix(R: ArrayLike) -> np.ndarray:
    """Validate ``R`` and return it as a float64 array of shape ``(E + 1, T)``, ``1 <= E <= T``.

    Trailing rows that are entirely NaN (experiences not trained yet, as in a matrix allocated
    at full size) are dropped. Raises ``ValueError`` naming ``R`` for ragged input, a wrong
    shape, or any other entry that is negative or not finite.
    """
    try:
        arr = np.asarray(R, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"R: WER matrix must be a rectangular array of numbers ({exc})") from exc
    if arr.ndim != 2:
        raise ValueError(f"R: WER matrix must be 2-D (rows = experiences), got shape {arr.shape}")
    while arr.shape[0] > 1 and np.isnan(arr[-1]).all():
        arr = arr[:-1]
    rows, domains = arr.shape
    if domains < 1 or not 2 <= rows <= domains + 1:
        raise ValueError(
            f"R: WER matrix must have shape (E + 1, T) with 1 <= E <= T (row 0 = base model), "
            f"got {arr.shape}"
        )
    bad = np.argwhere(~np.isfinite(arr) | (arr < 0))
    if bad.size:
        i, c = (int(v) for v in bad[0])
        raise ValueError(f"R[{i}][{c}] = {arr[i, c]!r}: WERs must be finite and >= 0")
    return arr


def _per_domain(values: Sequence[float] | np.ndarray, name: str, length: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (length,):
        raise ValueError(f"{name}: expected one WER per domain, shape ({length},), got {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{name}: WERs must be finite and >= 0, got {arr.tolist()}")
    return arr


def awer(R: ArrayLike) -> np.ndarray:
    """Average WER over the domains seen so far, per experience: shape ``(E,)``."""
    arr = as_wer_matrix(R)
    return np.array([arr[i, :i].mean() for i in range(1, arr.shape[0])])


def bwt(R: ArrayLike) -> np.ndarray:
    """Backward transfer per experience, shape ``(E,)``; ``nan`` for experience 1."""
    arr = as_wer_matrix(R)
    out = np.full(arr.shape[0] - 1, np.nan)
    for i in range(2, arr.shape[0]):
        cols = np.arange(i - 1)
        out[i - 1] = np.mean(arr[cols + 1, cols] - arr[i, cols])
    return out


def forgetting_matrix(R: ArrayLike) -> np.ndarray:
    """Forgetting ``F`` with the shape of ``R``; ``F[i, c]`` is defined (else ``nan``) for ``c < i - 1``."""
    arr = as_wer_matrix(R)
    out = np.full(arr.shape, np.nan)
    for i in range(2, arr.shape[0]):
        for c in range(i - 1):
            out[i, c] = arr[i, c] - arr[:i, c].min()
    return out


def learning(R: ArrayLike) -> np.ndarray:
    """WER gained on the domain just trained, per experience: shape ``(E,)``."""
    arr = as_wer_matrix(R)
    idx = np.arange(1, arr.shape[0])
    return arr[idx - 1, idx - 1] - arr[idx, idx - 1]


def intransigence(R: ArrayLike, joint: Sequence[float] | np.ndarray) -> np.ndarray:
    """``IM_i = R[i, i-1] - joint[i-1]``, shape ``(E,)``; ``joint`` has one WER per domain ``(T,)``."""
    arr = as_wer_matrix(R)
    j = _per_domain(joint, "joint", arr.shape[1])
    idx = np.arange(1, arr.shape[0])
    return arr[idx, idx - 1] - j[idx - 1]


def fwt(R: ArrayLike, single: Sequence[float] | np.ndarray) -> np.ndarray:
    """``FWT_i = single[i-1] - R[i, i-1]``, shape ``(E,)``; ``single`` has one WER per domain ``(T,)``."""
    arr = as_wer_matrix(R)
    s = _per_domain(single, "single", arr.shape[1])
    idx = np.arange(1, arr.shape[0])
    return s[idx - 1] - arr[idx, idx - 1]


def _scalar(x: float) -> float:
    return float(x) if math.isfinite(x) else math.nan


def summarize(
    R: ArrayLike,
    joint: Sequence[float] | np.ndarray | None = None,
    single: Sequence[float] | np.ndarray | None = None,
) -> dict[str, float | list[float]]:
    """All metrics after the last trained experience ``E`` (the last row of ``R``).

    Returns plain Python floats and lists (JSON-ready):
    ``awer``, ``bwt``, ``forgetting_mean``, ``forgetting_max`` (``nan`` while ``E < 2``),
    ``learning_mean``, and per-experience lists ``awer_per_exp``, ``bwt_per_exp``, ``learning``;
    with ``joint``: ``im`` (list) and ``im_mean``; with ``single``: ``fwt`` (list) and ``fwt_mean``.
    """
    arr = as_wer_matrix(R)
    last = arr.shape[0] - 1
    aw, bw, le = awer(arr), bwt(arr), learning(arr)
    final_forgetting = forgetting_matrix(arr)[last, : max(last - 1, 0)]
    out: dict[str, float | list[float]] = {
        "awer": _scalar(aw[-1]),
        "bwt": _scalar(bw[-1]),
        "forgetting_mean": _scalar(final_forgetting.mean()) if final_forgetting.size else math.nan,
        "forgetting_max": _scalar(final_forgetting.max()) if final_forgetting.size else math.nan,
        "learning_mean": _scalar(le.mean()),
        "awer_per_exp": aw.tolist(),
        "bwt_per_exp": bw.tolist(),
        "learning": le.tolist(),
    }
    if joint is not None:
        im = intransigence(arr, joint)
        out["im"] = im.tolist()
        out["im_mean"] = _scalar(im.mean())
    if single is not None:
        fw = fwt(arr, single)
        out["fwt"] = fw.tolist()
        out["fwt_mean"] = _scalar(fw.mean())
    return out
