"""v2: differences between two arms on per-utterance records, with bootstrap uncertainty.

Input: one long table of per-utterance word errors, one line per (run, evaluation row, test
utterance), as the runner writes them (``utterances/after_exp_<row>.csv.gz``; gathered with
``experiments.study.collect.read_run_utterances``). Columns:

``arm, budget, inner_share, base, seed, horizon`` (the run) and
``row, domain, id, speaker, errors, words`` (the utterance after ``row`` experiences).

``domains`` is the stream order with the base domain first (task 0, evaluated, never trained):
experience ``i`` (1-based) is ``domains[i - 1]`` and row ``i`` is the model after it, so the
new-domain cell of domain ``k >= 1`` is ``(k + 1, domains[k])``.

Figures per pair of arms (``a - b``, WER points, negative = ``a`` better):

- **new-domain WER**: word errors pooled over the new-domain cells of every experience;
- **forgetting**: pooled over the earlier domains (adult included) of the final row, errors
  there minus errors right after that domain was learned (adult: minus the base row 0);

- **final AWER**: the mean over every domain (the base domain included) of its WER after the
  last experience, as ``cl_ssvdo.metrics.awer`` reads it off a run's matrix;

each with ``experiments.study.verdicts.bootstrap_wer_difference``: runs (``base x seed``) with
replacement (paired when both arms ran the same ones), then voices (``domain/speaker``), then
utterances within a drawn voice (AWER: voices drawn within each domain).

>>> from experiments.study.collect import DOMAINS
>>> from experiments.study.synthetic import synthetic_frame
>>> frame = synthetic_frame({"ssvdo": 0.10, "lora": 0.30}, seed=0)
>>> r = new_domain_difference(frame, DOMAINS, {"arm": "ssvdo"}, {"arm": "lora"}, n_boot=300)
>>> round(r.effect) in range(-25, -15), r.ci_high < 0
(True, True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from experiments.study.collect import COLUMNS, RUN_COLUMNS
from experiments.study.verdicts import Bootstrap, bootstrap_wer_difference

__all__ = [
    "check_columns",
    "final_awer_difference",
    "forgetting_difference",
    "new_domain_difference",
    "outer_value_growth",
    "run_matrices",
    "select_runs",
    "shared_bases",
]


def check_columns(frame: pd.DataFrame) -> None:
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"per-utterance table: missing columns {missing} (need {COLUMNS})")


def select_runs(
    frame: pd.DataFrame,
    arm: str,
    budget: int | None = None,
    share: float | None = None,
    base: int | None = None,
    horizon: str = "main",
) -> pd.DataFrame:
    mask = (frame["arm"] == arm) & (frame["horizon"] == horizon)
    if budget is not None:
        mask &= frame["budget"] == budget
    if share is not None:
        mask &= np.isclose(frame["inner_share"].astype(float), share)
    if base is not None:
        mask &= frame["base"] == base
    out = frame[mask]
    if out.empty:
        raise ValueError(
            f"no per-utterance records for arm={arm!r} budget={budget} share={share} "
            f"base={base} horizon={horizon!r}"
        )
    return out


def new_domain_cells(domains: Sequence[str]) -> list[tuple[int, str]]:
    return [(k + 1, domains[k]) for k in range(1, len(domains))]


def _matrix_errors(
    runs: pd.DataFrame, cells: Sequence[tuple[int, str]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[int, int]], list[str]]:
    """``errors [R, N]`` (runs = base x seed), ``words [N]``, ``voices [N]``, run keys and
    utterance keys over the concatenated ``cells``."""
    parts = []
    for row, domain in cells:
        part = runs[(runs["row"] == row) & (runs["domain"] == domain)]
        if part.empty:
            raise ValueError(f"no per-utterance records for row {row}, domain {domain!r}")
        parts.append(part.assign(cell=f"{row}:{domain}"))
    data = pd.concat(parts, ignore_index=True)
    data = data.assign(run=list(zip(data["base"], data["seed"], strict=True)))
    table = data.pivot_table(index="run", columns=["cell", "domain", "id"], values="errors",
                             aggfunc="sum")  # fmt: skip
    if table.isna().any().any():
        raise ValueError("runs of one arm were scored on different test utterances")
    meta = data.drop_duplicates(["cell", "domain", "id"]).set_index(["cell", "domain", "id"])
    meta = meta.loc[table.columns]
    voices = (meta.index.get_level_values("domain") + "/" + meta["speaker"].astype(str)).to_numpy()
    keys = ["|".join(map(str, k)) for k in table.columns]
    return (table.to_numpy(float), meta["words"].to_numpy(float), voices, list(table.index), keys)


def _pair(a: tuple, b: tuple, n_boot: int, seed: int, shift_points: float = 0.0,
          per_domain: bool = False) -> Bootstrap:  # fmt: skip
    """Bootstrap ``a - b - shift_points`` over runs, voices and utterances (same test set);
    ``per_domain``: the mean of the per-domain WERs instead of the pooled WER."""
    ea, wa, va, ra, ka = a
    eb, wb, _, rb, kb = b
    if ka != kb:
        raise ValueError("the two arms were not scored on the same test utterances")
    eb = eb + shift_points / 100.0 * wb  # adds exactly shift_points to every draw's difference
    paired = ra == rb
    strata = [k.split("|")[1] for k in ka] if per_domain else None
    return bootstrap_wer_difference(ea, eb, wa, va, n_boot=n_boot, paired_seeds=paired, seed=seed,
                                    strata=strata)  # fmt: skip


def _cells_difference(
    frame: pd.DataFrame,
    cells: Sequence[tuple[int, str]],
    a: Mapping[str, Any],
    b: Mapping[str, Any],
    n_boot: int,
    seed: int,
    *,
    shift_points: float = 0.0,
    per_domain: bool = False,
) -> Bootstrap:
    """:func:`_pair` of selections ``a`` and ``b`` over the utterances of ``cells``."""
    return _pair(
        _matrix_errors(select_runs(frame, **a), cells),
        _matrix_errors(select_runs(frame, **b), cells),
        n_boot,
        seed,
        shift_points,
        per_domain,
    )


def new_domain_difference(
    frame: pd.DataFrame,
    domains: Sequence[str],
    a: Mapping[str, Any],
    b: Mapping[str, Any],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    shift_points: float = 0.0,
) -> Bootstrap:
    """New-domain WER of selection ``a`` minus ``b`` (``{arm, budget, share, base, horizon}``)."""
    return _cells_difference(frame, new_domain_cells(domains), a, b, n_boot, seed,
                             shift_points=shift_points)  # fmt: skip


def final_awer_difference(
    frame: pd.DataFrame,
    domains: Sequence[str],
    a: Mapping[str, Any],
    b: Mapping[str, Any],
    *,
    n_boot: int = 2000,
    seed: int = 0,
) -> Bootstrap:
    """Final AWER (mean over ``domains`` of the last row's per-domain WER) of ``a`` minus ``b``.

    >>> from experiments.study.collect import DOMAINS
    >>> from experiments.study.synthetic import synthetic_frame
    >>> frame = synthetic_frame({"ssvdo": 0.10, "lora": 0.10}, seed=0)
    >>> r = final_awer_difference(frame, DOMAINS, {"arm": "ssvdo"}, {"arm": "lora"}, n_boot=300)
    >>> r.ci_low < 0 < r.ci_high
    True
    """
    cells = [(len(domains), d) for d in domains]
    return _cells_difference(frame, cells, a, b, n_boot, seed, per_domain=True)


def outer_value_growth(
    frame: pd.DataFrame,
    domains: Sequence[str],
    ssvdo: str,
    inner: str,
    base_a: Any,
    base_b: Any,
    *,
    n_boot: int = 2000,
    seed: int = 0,
) -> Bootstrap:
    """How much the outer transform's value grows from base ``base_a`` to ``base_b``: the
    new-domain WER of ``inner`` minus ``ssvdo`` on ``base_b``, minus the same on ``base_a``
    (positive: worth more on ``base_b``). All four sides are scored on the same test set, so
    it is one difference, (inner_b + ssvdo_a) - (ssvdo_b + inner_a), bootstrapped over the
    seeds all four ran (drawn jointly), voices and utterances.

    >>> from experiments.study.collect import DOMAINS
    >>> from experiments.study.synthetic import synthetic_frame
    >>> small = synthetic_frame({"ssvdo": 0.2, "ssvd": 0.2}, seed=1).assign(base=0)
    >>> big = synthetic_frame({"ssvdo": 0.2, "ssvd": 0.3}, seed=2).assign(base=1)
    >>> r = outer_value_growth(pd.concat([small, big]), DOMAINS, "ssvdo", "ssvd", 0, 1, n_boot=300)
    >>> 5 < r.effect < 15 and r.ci_low > 0
    True
    """
    cells = new_domain_cells(domains)
    sides = {(arm, base): _matrix_errors(select_runs(frame, arm, base=base), cells)
             for arm in (ssvdo, inner) for base in (base_a, base_b)}  # fmt: skip
    if len({tuple(side[4]) for side in sides.values()}) != 1:
        raise ValueError("outer value growth: the sides were not scored on the same utterances")
    seeds = sorted(set.intersection(*({run[1] for run in side[3]} for side in sides.values())))
    if not seeds:
        raise ValueError(f"outer value growth: no seed ran on both bases {base_a} and {base_b}")

    def rows(arm: str, base: Any) -> np.ndarray:
        errors, _, _, runs, _ = sides[(arm, base)]
        return errors[[[run[1] for run in runs].index(s) for s in seeds]]

    _, words, voices, _, _ = sides[(ssvdo, base_a)]
    return bootstrap_wer_difference(
        rows(inner, base_b) + rows(ssvdo, base_a),
        rows(ssvdo, base_b) + rows(inner, base_a),
        words, voices, n_boot=n_boot, paired_seeds=True, seed=seed,
    )  # fmt: skip


def _forgetting_errors(runs: pd.DataFrame, domains: Sequence[str]) -> tuple:
    final = len(domains)
    earlier = list(range(len(domains) - 1))
    after = _matrix_errors(runs, [(final, domains[k]) for k in earlier])
    learned = _matrix_errors(runs, [(0 if k == 0 else k + 1, domains[k]) for k in earlier])
    if after[3] != learned[3]:
        raise ValueError("forgetting: the runs' rows do not line up")
    keys = [k.split("|", 1)[1] for k in after[4]]
    return (after[0] - learned[0], after[1], after[2], after[3], keys)


def forgetting_difference(
    frame: pd.DataFrame,
    domains: Sequence[str],
    a: Mapping[str, Any],
    b: Mapping[str, Any],
    *,
    n_boot: int = 2000,
    seed: int = 0,
) -> Bootstrap:
    """Forgetting (WER points lost on earlier domains, adult included) of ``a`` minus ``b``."""
    return _pair(
        _forgetting_errors(select_runs(frame, **a), domains),
        _forgetting_errors(select_runs(frame, **b), domains),
        n_boot,
        seed,
    )


# -- per-run figures ----------------------------------------------------------------------------
def run_matrices(frame: pd.DataFrame, domains: Sequence[str]) -> dict[tuple, np.ndarray]:
    """``{(arm, budget, inner_share, base, seed, horizon): R}``, ``R[row, domain]`` in percent."""
    check_columns(frame)
    out = {}
    keyed = frame.assign(inner_share=frame["inner_share"].astype(float).fillna(-1.0),
                         budget=frame["budget"].fillna(-1))  # fmt: skip
    for key, runs in keyed.groupby(RUN_COLUMNS, sort=True):
        sums = runs.groupby(["row", "domain"])[["errors", "words"]].sum()
        rows = sorted(runs["row"].unique())
        R = np.full((len(rows), len(domains)), np.nan)
        for (row, domain), v in sums.iterrows():
            if domain in domains:
                R[rows.index(row), list(domains).index(domain)] = 100.0 * v["errors"] / v["words"]
        out[key] = R
    return out


def shared_bases(frame: pd.DataFrame, *sels: Mapping[str, Any]) -> list[Any]:
    """The bases every selection ran; none when a selection has no records (a study whose runs
    are not all finished: the claim has that test fewer, which the results page counts)."""
    common = None
    for sel in sels:
        try:
            found = set(select_runs(frame, **sel)["base"].unique())
        except ValueError:
            return []
        common = found if common is None else common & found
    return sorted(common or [])
