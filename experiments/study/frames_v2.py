"""v2: what a study's results page computes from the store (``experiments.study.page_v2``).

Each function turns the store's runs (``experiments.study.store_v2.StoreRuns``) into the frame
of one CSV of the page::

    claims_frame       claims.csv: the claims of ``experiments.study.claims_v2`` on the used
                       test runs' per-utterance records, judged over the tests the *plan*
                       implies (a planned test whose runs did not finish counts as unclear),
                       with what claim 1 reports besides (:func:`awer_sides`, and
                       :func:`long_horizon_sides` when the study has a long horizon)
    selection_frame    selection.csv: every grid rate of every arm, finished or not
    matrices_frame     wer_matrices.csv: every finished run's full WER matrix, long
    voices_frame       voices.csv: final WER per test voice and configuration
    scored_set_sizes   meta.json's test-set sizes (voices / utterances per domain)

:func:`ssvdo_arm` (the arm the claims are about) serves the claims here and the page's *Where
SSVD-O loses* (``experiments.study.losses_v2``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from experiments.study.claims_v2 import (
    BASELINES,
    FULL,
    NOT_RUN,
    NOT_TESTED,
    SIDE_COLUMNS,
    ClaimV2,
    claims_table,
    evaluate_claims,
)
from experiments.study.collect import COLUMNS
from experiments.study.differences import (
    final_awer_difference,
    new_domain_difference,
    shared_bases,
)
from experiments.study.levels_v2 import finite
from experiments.study.store_v2 import StoreRuns, config_label, study_domains
from experiments.study.verdicts import Bootstrap, Test, judge

__all__ = [
    "awer_sides",
    "claims_frame",
    "long_horizon_sides",
    "matrices_frame",
    "scored_set_sizes",
    "selection_frame",
    "ssvdo_arm",
    "voices_frame",
]


# -- claims ----------------------------------------------------------------------------------------
def _planned_frame(plan: pd.DataFrame, domains: Sequence[str]) -> pd.DataFrame:
    """Placeholder per-utterance records of every planned test run (two voices, no errors):
    what the claims would test if every run had finished."""
    lines = []
    for r in plan[plan["phase"] == "test"].to_dict("records"):
        for row in range(len(domains) + 1):
            for d in domains:
                for v in ("v0", "v1"):
                    lines.append((r["arm"], r["budget"], r["inner_share"], int(r["base"]),
                                  int(r["seed"]), r["horizon"], row, d, f"{d}-{v}", v, 0, 1))  # fmt: skip
    frame = pd.DataFrame(lines, columns=COLUMNS)
    for col in ("budget", "inner_share"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    return frame


def _bases(runs: pd.DataFrame, study: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Claim 4's description of the bases: one per model size among the used test runs."""
    used = runs[runs["used"].astype(bool) & (runs["phase"] == "test")]
    out = []
    for (family, model), part in used.groupby(["model_family", "model"], sort=True):
        out.append({"family": family, "size": model, "adult_wer": float(part["base_wer"].mean()),
                    "budget_fraction": math.nan})  # fmt: skip
    if not out:
        family = "whisper" if "whisper" in str(study.get("base", "")) else "conformer"
        out.append({"family": family, "size": study.get("base", ""), "adult_wer": math.nan,
                    "budget_fraction": math.nan})  # fmt: skip
    return out


def ssvdo_arm(study: Mapping[str, Any]) -> str | None:
    """The study's SSVD-O arm (the one the claims are about), if any."""
    arms = study["arms"]
    if arms.get("ssvdo", {}).get("kind") == "ssvdo":
        return "ssvdo"
    return next((a for a, s in arms.items() if s["kind"] == "ssvdo" and not s.get("lr_from")),
                None)  # fmt: skip


def _claim_settings(study: Mapping[str, Any], runs: pd.DataFrame) -> dict[str, Any] | None:
    arms = study["arms"]
    ssvdo = ssvdo_arm(study)
    if ssvdo is None:
        return None
    # the baselines and full fine-tuning arms are claims_v2's (those of the protocol), not
    # every matched arm of the study: peft's other methods are compared on the page only
    return {
        "ssvdo_arm": ssvdo,
        "shares": tuple(arms[ssvdo]["inner_shares"]),
        "reference_share": study["reference_share"],
        "budgets": list(study.get("budgets") or [None]),
        "bases": _bases(runs, study),
    }


def _rejudge(real: ClaimV2, planned: ClaimV2, alpha: float) -> tuple[ClaimV2, list[str]]:
    """``real`` judged over the planned family of tests: each planned test without its runs
    enters the Holm correction with p = 1 (so it is unclear and the claim cannot be
    confirmed); a claim none of whose planned tests has runs is ``NOT_RUN``. Returns the claim
    and the names of those tests."""
    if planned.verdict == NOT_TESTED:
        return replace(real, verdict=NOT_TESTED, reason=real.reason or planned.reason), []
    got = {t.name for t in real.tests}
    missing = [t for t in planned.tests if t.name not in got]
    if not missing and real.verdict != NOT_TESTED:
        return real, []
    nan = math.nan
    filler = [Test(t.name, Bootstrap(nan, nan, nan, 1.0, 0), t.claimed) for t in missing]
    j = judge([*real.tests, *filler], alpha)
    why = (f"{len(missing)} of {len(planned.tests)} planned tests have no finished runs "
           "(counted as unclear)")  # fmt: skip
    # with no data at all the rule's "inconclusive" would read as a finding: say it did not run
    verdict = NOT_RUN if planned.tests and len(missing) == len(planned.tests) else j.verdict
    return ClaimV2(real.number, planned.statement, verdict, j, real.reported, reason=why,
                   sides=real.sides), [t.name for t in missing]  # fmt: skip


_DIFFERENCES = {"new_domain_wer": new_domain_difference, "awer": final_awer_difference}
Side = tuple[str, str, dict[str, Any], dict[str, Any]]  # (name, figure, a, b)


def _compared_with(frame: pd.DataFrame, horizon: str = "main") -> list[tuple[str, bool]]:
    """Claim 1's other arms present at ``horizon``: ``(arm, matched)``, the matched baselines
    (compared at a budget) first, then full fine-tuning (unbudgeted)."""
    present = set(frame.loc[frame["horizon"] == horizon, "arm"].unique()) if len(frame) else set()
    return [(o, True) for o in BASELINES if o in present] + [(o, False) for o in FULL
                                                             if o in present]  # fmt: skip


def _pairs(frame: pd.DataFrame, ours: dict[str, Any], other: str, matched: bool,
           budget: Any) -> list[tuple[Any, dict[str, Any], dict[str, Any]]]:  # fmt: skip
    """``(base, a, b)`` per base ``ours`` and ``other`` both ran (at ``ours``' horizon)."""
    theirs = {"arm": other, "budget": budget} if matched else {"arm": other}
    if "horizon" in ours:
        theirs["horizon"] = ours["horizon"]
    return [(base, {**ours, "base": base}, {**theirs, "base": base})
            for base in shared_bases(frame, ours, theirs)]  # fmt: skip


def awer_sides(frame: pd.DataFrame, ssvdo_arm: str, reference_share: float,
               budgets: Sequence[Any]) -> list[Side]:  # fmt: skip
    """Claim 1's final-AWER differences: SSVD-O at the reference share minus each arm it is
    compared with (its matched baselines, full fine-tuning), per budget and shared base."""
    out = []
    for budget in budgets:
        ours = {"arm": ssvdo_arm, "budget": budget, "share": reference_share}
        for other, matched in _compared_with(frame):
            for base, a, b in _pairs(frame, ours, other, matched, budget):
                out.append((f"AWER {ssvdo_arm} - {other} (budget {budget}, base {base})", "awer",
                            a, b))  # fmt: skip
    return out


def long_horizon_sides(frame: pd.DataFrame, ssvdo_arm: str, reference_share: float,
                       budget: Any) -> list[Side]:  # fmt: skip
    """Claim 1's differences at the long horizon (docs/protocol.md, *Horizon*): SSVD-O at the
    reference share and the tight ``budget`` minus each other arm that ran the long horizon,
    in new-domain WER and in final AWER, per shared base; named ``long: ...``.

    >>> from experiments.study.collect import DOMAINS
    >>> from experiments.study.synthetic import synthetic_frame
    >>> frame = synthetic_frame({"ssvdo": 0.1, "lora": 0.3}, seeds=(0,), voices=2, utterances=2)
    >>> frame = pd.concat([frame, frame.assign(horizon="long")])
    >>> [name for name, *_ in long_horizon_sides(frame, "ssvdo", None, 100)]
    ['long: ssvdo - lora (budget 100, base 0)', 'long: AWER ssvdo - lora (budget 100, base 0)']
    """
    ours = {"arm": ssvdo_arm, "budget": budget, "share": reference_share, "horizon": "long"}
    out = []
    for other, matched in _compared_with(frame, "long"):
        gap = "" if matched else "gap "
        for base, a, b in _pairs(frame, ours, other, matched, budget):
            where = f"{ssvdo_arm} - {other} (budget {budget}, base {base})"
            out += [(f"long: {gap}{where}", "new_domain_wer", a, b),
                    (f"long: AWER {where}", "awer", a, b)]  # fmt: skip
    return out


def _with_reported(claim: ClaimV2, frame: pd.DataFrame, domains: Sequence[str],
                   sides: Sequence[Side], n_boot: int) -> ClaimV2:  # fmt: skip
    """``claim`` with each of ``sides`` added to what it reports, not tests, with the same
    hierarchical bootstrap (runs, voices, utterances) as every other difference
    (``experiments.study.differences``)."""
    reported = [*claim.reported, *((name, _DIFFERENCES[figure](frame, domains, a, b,
                                                                n_boot=n_boot))
                                   for name, figure, a, b in sides)]  # fmt: skip
    return replace(claim, reported=tuple(reported), sides=(*claim.sides, *sides))


def claims_frame(
    study: Mapping[str, Any], store: StoreRuns, *, n_boot: int = 2000, alpha: float = 0.05
) -> pd.DataFrame:
    """Every claim of ``experiments.study.claims_v2`` on the used test runs' per-utterance
    records, judged over the tests the *plan* implies (:func:`_rejudge`): one line per test
    (outcome ``not run`` for a planned test without its runs) and per reported difference."""
    domains = study_domains(study)
    settings = _claim_settings(study, store.runs)
    columns = ["claim", "statement", "verdict", "reason", "kind", "name", "claimed", "effect",
               "ci_low", "ci_high", "p", "p_holm", "outcome", *SIDE_COLUMNS]  # fmt: skip
    if settings is None:
        return pd.DataFrame([{"claim": 0, "statement": "no SSVD-O arm in the study",
                              "verdict": NOT_TESTED, "kind": "none", "name": ""}],
                            columns=columns)  # fmt: skip
    real = evaluate_claims(store.utterances, domains, n_boot=n_boot, alpha=alpha, **settings)
    args = (store.utterances, settings["ssvdo_arm"], settings["reference_share"])
    extra = awer_sides(*args, settings["budgets"])
    if study["horizons"].get("long"):
        extra += long_horizon_sides(*args, settings["budgets"][0])
    real = [_with_reported(c, store.utterances, domains, extra, n_boot) if c.number == 1 else c
            for c in real]  # fmt: skip
    planned = evaluate_claims(_planned_frame(store.plan, domains), domains, n_boot=2,
                              alpha=alpha, **settings)  # fmt: skip
    claims, missing = [], {}
    for r, p in zip(real, planned, strict=True):
        c, names = _rejudge(r, p, alpha)
        claims.append(c)
        missing[c.number] = set(names)
    table = claims_table(claims)
    statements = {c.number: c.statement for c in claims}
    table["statement"] = table["claim"].map(statements)
    not_run = [n in missing.get(c, set()) and k == "test"
               for c, n, k in zip(table["claim"], table["name"], table["kind"], strict=True)]  # fmt: skip
    table.loc[np.asarray(not_run, dtype=bool), "outcome"] = "not run"
    return table.reindex(columns=columns)


# -- the other tables -------------------------------------------------------------------------------
def matrices_frame(store: StoreRuns, domains: Sequence[str]) -> pd.DataFrame:
    """``wer_matrices.csv``: one line per cell of every finished run's WER matrix (run, row,
    domain, wer), with the run's phase, configuration, base, seed and whether it is used."""
    lines = []
    for r in store.runs.to_dict("records"):
        R = store.matrices.get(r["run_id"])
        if R is None:
            continue
        for i in range(R.shape[0]):
            for j, d in enumerate(domains):
                lines.append({"run_id": r["run_id"], "run_name": r["run_name"],
                              "phase": r["phase"], "config": r["config"], "base": r["base"],
                              "seed": r["seed"], "used": r["used"], "row": i, "domain": d,
                              "wer": float(R[i, j])})  # fmt: skip
    columns = ["run_id", "run_name", "phase", "config", "base", "seed", "used", "row", "domain",
               "wer"]  # fmt: skip
    return pd.DataFrame(lines, columns=columns)


def voices_frame(utterances: pd.DataFrame, domains: Sequence[str]) -> pd.DataFrame:
    """``voices.csv``: per configuration and test voice, the final-row word errors and words
    pooled over the configuration's runs, their WER (percent) and the number of runs."""
    columns = ["config", "domain", "speaker", "voice", "errors", "words", "wer", "runs"]
    final = utterances[utterances["row"] == len(domains)]
    if final.empty:
        return pd.DataFrame(columns=columns)
    final = final.assign(
        config=[config_label(a, b, s, h) for a, b, s, h in
                zip(final["arm"], final["budget"], final["inner_share"], final["horizon"],
                    strict=True)],
        run=list(zip(final["base"], final["seed"], strict=True)),
    )  # fmt: skip
    g = final.groupby(["config", "domain", "speaker"], sort=False).agg(
        errors=("errors", "sum"), words=("words", "sum"), runs=("run", "nunique")
    ).reset_index()  # fmt: skip
    g["voice"] = g["domain"] + "/" + g["speaker"].astype(str)
    g["wer"] = 100.0 * g["errors"] / g["words"]
    return g[columns]


def selection_frame(store: StoreRuns) -> pd.DataFrame:
    """Every planned selection run (finished or not) and every other finished selection run."""
    runs = store.runs[store.runs["phase"] == "lr-selection"]
    by_id = {r["run_id"]: r for r in runs.to_dict("records")}
    lines = []
    for p in store.plan[store.plan["phase"] == "lr-selection"].to_dict("records"):
        r = by_id.pop(p["run_id"], None) if p["status"] == "finished" else None
        lines.append({"arm": p["arm"], "lr": p["lr"],
                      "valid_awer": r["awer_logged"] if r else math.nan,
                      "status": "finished" if r else f"not run ({p['reason']})",
                      "run_id": p["run_id"] if r else ""})  # fmt: skip
    for r in by_id.values():
        lines.append({"arm": r["arm"], "lr": r["lr"], "valid_awer": r["awer_logged"],
                      "status": f"finished, {r['note']}", "run_id": r["run_id"]})  # fmt: skip
    out = pd.DataFrame(lines, columns=["arm", "lr", "valid_awer", "status", "run_id"])
    chosen = [store.selected.get(a) is not None and finite(lr) and
              math.isclose(store.selected[a], float(lr)) and s.startswith("finished")
              for a, lr, s in zip(out["arm"], out["lr"], out["status"], strict=True)]  # fmt: skip
    return out.assign(selected=chosen)


def scored_set_sizes(utterances: pd.DataFrame, domains: Sequence[str]) -> dict[str, list[int]]:
    """``domain -> [test voices, test utterances]`` seen in the per-utterance records (their
    last row, which scores every domain; every test run scores the same test set).

    >>> u = pd.DataFrame({"row": [0, 1, 1, 1], "domain": ["a", "a", "a", "a"],
    ...                   "speaker": ["v1", "v1", "v1", "v2"], "id": ["u1", "u1", "u2", "u3"]})
    >>> scored_set_sizes(u, ["a", "b"])
    {'a': [2, 3]}
    """
    if utterances.empty:
        return {}
    base = utterances[utterances["row"] == utterances["row"].max()]
    out = {}
    for d in domains:
        part = base[base["domain"] == d]
        if len(part):
            out[str(d)] = [int(part["speaker"].nunique()), int(part["id"].nunique())]
    return out
