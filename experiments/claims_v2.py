"""Claims of study v2 (docs/protocol.md) as stated tests on per-utterance records.

Input: one long table of per-utterance word errors, one line per (run, evaluation row, test
utterance), as the runner writes them (``utterances/after_exp_<row>.csv.gz``; gathered with
:func:`read_run_utterances`). Columns:

``arm, budget, inner_share, base, seed, horizon`` (the run) and
``row, domain, id, speaker, errors, words`` (the utterance after ``row`` experiences).

``domains`` is the stream order with the base domain first (task 0, evaluated, never trained):
experience ``i`` (1-based) is ``domains[i - 1]`` and row ``i`` is the model after it, so the
new-domain cell of domain ``k >= 1`` is ``(k + 1, domains[k])``.

Figures per pair of arms (``a - b``, WER points, negative = ``a`` better):

- **new-domain WER**: word errors pooled over the new-domain cells of every experience;
- **forgetting**: pooled over the earlier domains (adult included) of the final row, errors
  there minus errors right after that domain was learned (adult: minus the base row 0);

each with :func:`experiments.stats.bootstrap_wer_difference`: runs (``base x seed``) with
replacement (paired when both arms ran the same ones), then voices (``domain/speaker``), then
utterances within a drawn voice. AWER and BWT exist only per run: :func:`seed_figures` and a
per-seed bootstrap (:func:`experiments.stats.bootstrap_seed_difference`).

Claims (Holm within a claim, verdict by :func:`experiments.stats.judge`):

1. SSVD-O (reference share) minus each matched baseline, new-domain WER, at every budget and
   every base both ran (claimed negative); the gap to full fine-tuning is reported, not tested.
2. New-domain WER of the largest inner share minus the smallest, at every budget (negative).
3. Forgetting of the smallest share minus the largest (negative), and learning
   non-inferiority: new-domain WER of the smallest share minus the largest, minus the margin
   (1 point), claimed negative; at every budget.
4. Only between qualifying bases (:func:`claim4_qualifies`); else "not tested here" + reason.

Example
-------
>>> frame = synthetic_frame({"ssvdo": 0.10, "lora": 0.30}, seed=0)
>>> c = claim_new_domain(frame, DOMAINS, "ssvdo", ["lora"], n_boot=300)
>>> c.verdict
'confirmed'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cl_ssvdo.metrics import awer, bwt
from experiments.stats import (
    RULE,
    Bootstrap,
    ClaimJudgement,
    Test,
    bootstrap_seed_difference,
    bootstrap_wer_difference,
    judge,
)

__all__ = [
    "COLUMNS",
    "DOMAINS",
    "ClaimV2",
    "claim4_qualifies",
    "claim_new_domain",
    "claims_table",
    "evaluate_claims",
    "forgetting_difference",
    "new_domain_difference",
    "read_run_utterances",
    "run_matrices",
    "seed_figures",
    "synthetic_frame",
]

RUN_COLUMNS = ["arm", "budget", "inner_share", "base", "seed", "horizon"]
UTT_COLUMNS = ["row", "domain", "id", "speaker", "errors", "words"]
COLUMNS = RUN_COLUMNS + UTT_COLUMNS
DOMAINS = ["adult", "child", "accent_scottish"]
NON_INFERIORITY_POINTS = 1.0
NOT_TESTED = "not tested here"


@dataclass(frozen=True)
class ClaimV2:
    """A claim's verdict (``confirmed | refuted | inconclusive | not tested here``), its tests
    after Holm, what it reports without testing, and why it was not tested (if so)."""

    number: int
    statement: str
    verdict: str
    judgement: ClaimJudgement | None = None
    reported: tuple[tuple[str, Bootstrap], ...] = ()
    reason: str = ""
    rule: str = RULE

    @property
    def tests(self) -> tuple[Test, ...]:
        return self.judgement.tests if self.judgement else ()


# -- reading ------------------------------------------------------------------------------------
def read_run_utterances(run_dir: str | Path, **run: Any) -> pd.DataFrame:
    """Every ``artifacts/utterances/after_exp_<row>.csv.gz`` of a run folder, with the run's
    keys (``arm=..., budget=..., inner_share=..., base=..., seed=..., horizon=...``) added."""
    folder = Path(run_dir) / "artifacts" / "utterances"
    files = sorted(folder.glob("after_exp_*.csv.gz"))
    if not files:
        raise FileNotFoundError(f"{folder}: no after_exp_<row>.csv.gz (per-utterance errors)")
    frame = pd.concat(
        [pd.read_csv(f, dtype={"id": str, "speaker": str}, keep_default_na=False) for f in files],
        ignore_index=True,
    )
    for key in RUN_COLUMNS:
        frame[key] = run.get(key, "main" if key == "horizon" else np.nan)
    return frame[COLUMNS]


def _check(frame: pd.DataFrame) -> None:
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"per-utterance table: missing columns {missing} (need {COLUMNS})")


# -- selection and per-utterance arrays ---------------------------------------------------------
def _select(
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


def _cells_new(domains: Sequence[str]) -> list[tuple[int, str]]:
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


def _pair(a: tuple, b: tuple, n_boot: int, seed: int, shift_points: float = 0.0) -> Bootstrap:
    """Bootstrap ``a - b - shift_points`` over runs, voices and utterances (same test set)."""
    ea, wa, va, ra, ka = a
    eb, wb, _, rb, kb = b
    if ka != kb:
        raise ValueError("the two arms were not scored on the same test utterances")
    eb = eb + shift_points / 100.0 * wb  # adds exactly shift_points to every draw's difference
    paired = ra == rb
    return bootstrap_wer_difference(ea, eb, wa, va, n_boot=n_boot, paired_seeds=paired, seed=seed)


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
    cells = _cells_new(domains)
    return _pair(
        _matrix_errors(_select(frame, **a), cells),
        _matrix_errors(_select(frame, **b), cells),
        n_boot,
        seed,
        shift_points,
    )


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
        _forgetting_errors(_select(frame, **a), domains),
        _forgetting_errors(_select(frame, **b), domains),
        n_boot,
        seed,
    )


# -- per-run figures ----------------------------------------------------------------------------
def run_matrices(frame: pd.DataFrame, domains: Sequence[str]) -> dict[tuple, np.ndarray]:
    """``{(arm, budget, inner_share, base, seed, horizon): R}``, ``R[row, domain]`` in percent."""
    _check(frame)
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


def seed_figures(frame: pd.DataFrame, domains: Sequence[str]) -> pd.DataFrame:
    """One line per run: final AWER and BWT (from the run's matrix), for per-seed bootstraps."""
    lines = []
    for key, R in run_matrices(frame, domains).items():
        final_bwt = bwt(R)[-1] if R.shape[0] > 2 else np.nan
        lines.append({**dict(zip(RUN_COLUMNS, key, strict=True)), "awer": float(awer(R)[-1]),
                      "bwt": float(final_bwt)})  # fmt: skip
    return pd.DataFrame(lines)


def seed_difference(
    figures: pd.DataFrame, metric: str, a: Mapping[str, Any], b: Mapping[str, Any], **kw: Any
) -> Bootstrap:
    """``metric`` (``awer``/``bwt``) of selection ``a`` minus ``b``, bootstrap over runs."""

    def pick(sel: Mapping[str, Any]) -> np.ndarray:
        mask = (figures["arm"] == sel["arm"]) & (figures["horizon"] == sel.get("horizon", "main"))
        if sel.get("budget") is not None:
            mask &= figures["budget"] == sel["budget"]
        if sel.get("share") is not None:
            mask &= np.isclose(figures["inner_share"].astype(float), sel["share"])
        return figures.loc[mask, metric].to_numpy(float)

    return bootstrap_seed_difference(pick(a), pick(b), **kw)


# -- claims -------------------------------------------------------------------------------------
def _bases(frame: pd.DataFrame, *sels: Mapping[str, Any]) -> list[Any]:
    common = None
    for sel in sels:
        found = set(_select(frame, **sel)["base"].unique())
        common = found if common is None else common & found
    return sorted(common or [])


def claim_new_domain(
    frame: pd.DataFrame,
    domains: Sequence[str],
    ssvdo_arm: str,
    baselines: Sequence[str],
    *,
    budgets: Sequence[Any] = (None,),
    share: float | None = None,
    full: Sequence[str] = (),
    n_boot: int = 2000,
    alpha: float = 0.05,
) -> ClaimV2:
    """Claim 1: SSVD-O minus each baseline, new-domain WER, per budget and shared base."""
    tests, reported = [], []
    for budget in budgets:
        ours = {"arm": ssvdo_arm, "budget": budget, "share": share}
        for other in baselines:
            theirs = {"arm": other, "budget": budget}
            for base in _bases(frame, ours, theirs):
                r = new_domain_difference(frame, domains, {**ours, "base": base},
                                          {**theirs, "base": base}, n_boot=n_boot)  # fmt: skip
                tests.append(Test(f"{ssvdo_arm} - {other} (budget {budget}, base {base})", r,
                                  "negative"))  # fmt: skip
        for ref in full:
            for arm_sel in [ours] + [{"arm": o, "budget": budget} for o in baselines]:
                for base in _bases(frame, arm_sel, {"arm": ref}):
                    r = new_domain_difference(frame, domains, {**arm_sel, "base": base},
                                              {"arm": ref, "base": base}, n_boot=n_boot)  # fmt: skip
                    reported.append((f"gap {arm_sel['arm']} - {ref} (budget {budget}, base "
                                     f"{base})", r))  # fmt: skip
    j = judge(tests, alpha)
    statement = ("SSVD-O beats LoRA/DoRA/PiSSA/SSVD at matched budgets and narrows the gap to "
                 "full fine-tuning")  # fmt: skip
    why = (
        "" if tests else f"no baseline of {list(baselines)} ran at a budget and base of {ssvdo_arm}"
    )
    return ClaimV2(1, statement, j.verdict, j, tuple(reported), reason=why)


def claim_inner_share(
    frame: pd.DataFrame,
    domains: Sequence[str],
    arm: str,
    shares: Sequence[float],
    budgets: Sequence[Any],
    *,
    n_boot: int = 2000,
    alpha: float = 0.05,
) -> ClaimV2:
    """Claim 2: new-domain WER of the largest share minus the smallest, at every budget."""
    lo, hi = min(shares), max(shares)
    tests = []
    for budget in budgets:
        for base in _bases(frame, {"arm": arm, "budget": budget, "share": lo},
                           {"arm": arm, "budget": budget, "share": hi}):  # fmt: skip
            r = new_domain_difference(
                frame, domains, {"arm": arm, "budget": budget, "share": hi, "base": base},
                {"arm": arm, "budget": budget, "share": lo, "base": base}, n_boot=n_boot,
            )  # fmt: skip
            tests.append(Test(f"share {hi:g} - {lo:g} (budget {budget}, base {base})", r,
                              "negative"))  # fmt: skip
    j = judge(tests, alpha)
    return ClaimV2(2, "Under tight budgets the inner transform is more parameter-efficient",
                   j.verdict, j)  # fmt: skip


def claim_tradeoff(
    frame: pd.DataFrame,
    domains: Sequence[str],
    arm: str,
    shares: Sequence[float],
    budgets: Sequence[Any],
    *,
    margin: float = NON_INFERIORITY_POINTS,
    n_boot: int = 2000,
    alpha: float = 0.05,
) -> ClaimV2:
    """Claim 3: less forgetting at the smallest share, learning not worse by ``margin``."""
    lo, hi = min(shares), max(shares)
    tests = []
    for budget in budgets:
        small = {"arm": arm, "budget": budget, "share": lo}
        large = {"arm": arm, "budget": budget, "share": hi}
        for base in _bases(frame, small, large):
            s, g = {**small, "base": base}, {**large, "base": base}
            f = forgetting_difference(frame, domains, s, g, n_boot=n_boot)
            tests.append(Test(f"forgetting share {lo:g} - {hi:g} (budget {budget}, base {base})",
                              f, "negative"))  # fmt: skip
            n = new_domain_difference(frame, domains, s, g, n_boot=n_boot, shift_points=margin)
            tests.append(Test(f"learning share {lo:g} - {hi:g} - {margin:g} (non-inferiority, "
                              f"budget {budget}, base {base})", n, "negative"))  # fmt: skip
    j = judge(tests, alpha)
    statement = ("A smaller inner share with a larger outer rank gives a better "
                 "learning/forgetting trade-off")  # fmt: skip
    return ClaimV2(3, statement, j.verdict, j)


def claim4_qualifies(bases: Sequence[Mapping[str, Any]]) -> tuple[bool, str]:
    """Claim 4 needs >= 3 sizes of one family with adult WER within 5 points and the budget
    the same fraction of the adapted weights (within 10 % of each other).

    ``bases``: ``{family, size, adult_wer, budget_fraction}`` per base.

    >>> claim4_qualifies([{"family": "conformer", "size": 2.0e6, "adult_wer": 29.6,
    ...                    "budget_fraction": 0.0176}])[0]
    False
    """
    by_family: dict[str, list[Mapping[str, Any]]] = {}
    for b in bases:
        by_family.setdefault(str(b["family"]), []).append(b)
    reasons = []
    for family, members in by_family.items():
        sizes = {b["size"] for b in members}
        if len(sizes) < 3:
            reasons.append(f"{family}: {len(sizes)} size(s), 3 needed")
            continue
        wers = [float(b["adult_wer"]) for b in members]
        if max(wers) - min(wers) > 5.0:
            reasons.append(
                f"{family}: adult WER {min(wers):.1f}-{max(wers):.1f}, not within 5 points"
            )
            continue
        fr = [float(b["budget_fraction"]) for b in members]
        if max(fr) > 1.1 * min(fr):
            reasons.append(f"{family}: budget fractions {min(fr):.4f}-{max(fr):.4f} differ")
            continue
        return True, f"{family}: {len(sizes)} comparable sizes"
    return False, "; ".join(reasons) or "no bases described"


def claim_scale(
    frame: pd.DataFrame,
    domains: Sequence[str],
    bases: Sequence[Mapping[str, Any]],
    *,
    ssvdo_arm: str = "ssvdo",
    inner_arm: str = "ssvd",
    n_boot: int = 2000,
    alpha: float = 0.05,
) -> ClaimV2:
    """Claim 4: the outer transform's value (per-run new-domain WER of ``inner_arm`` minus
    ``ssvdo_arm``) grows from each size to the next (claimed positive), per-seed bootstrap.
    Not tested unless :func:`claim4_qualifies`; ``frame['base']`` names the size there."""
    statement = "The outer transform gains value as the model grows"
    ok, why = claim4_qualifies(bases)
    if not ok:
        return ClaimV2(4, statement, NOT_TESTED, reason=why)
    figures = _new_domain_per_run(frame, domains)
    sizes = sorted({b["size"] for b in bases})
    by_size = {b["size"]: b.get("base", b["size"]) for b in bases}
    values = {}
    for size in sizes:
        ours = figures[(figures["arm"] == ssvdo_arm) & (figures["base"] == by_size[size])]
        theirs = figures[(figures["arm"] == inner_arm) & (figures["base"] == by_size[size])]
        merged = ours.merge(theirs, on="seed", suffixes=("_o", "_i"))
        values[size] = (merged["wer_i"] - merged["wer_o"]).to_numpy()
    tests = [
        Test(f"outer value size {b:g} - size {a:g}",
             bootstrap_seed_difference(values[b], values[a], n_boot=n_boot), "positive")
        for a, b in zip(sizes, sizes[1:], strict=False)
    ]  # fmt: skip
    j = judge(tests, alpha)
    return ClaimV2(4, statement, j.verdict, j, reason=why)


def _new_domain_per_run(frame: pd.DataFrame, domains: Sequence[str]) -> pd.DataFrame:
    cells = pd.DataFrame(_cells_new(domains), columns=["row", "domain"])
    part = frame.merge(cells, on=["row", "domain"])
    g = part.groupby(["arm", "base", "seed"])[["errors", "words"]].sum().reset_index()
    return g.assign(wer=100.0 * g["errors"] / g["words"])


def evaluate_claims(
    frame: pd.DataFrame,
    domains: Sequence[str],
    *,
    ssvdo_arm: str = "ssvdo",
    shares: Sequence[float] = (0.25, 0.5, 0.75),
    reference_share: float = 0.25,
    budgets: Sequence[Any] = (None,),
    baselines: Sequence[str] = ("lora", "dora", "pissa", "ssvd"),
    full: Sequence[str] = ("full_adapted", "naive"),
    bases: Sequence[Mapping[str, Any]] = (),
    n_boot: int = 2000,
    alpha: float = 0.05,
) -> list[ClaimV2]:
    """The four claims over the arms present in ``frame`` (absent baselines are skipped)."""
    _check(frame)
    present = set(frame["arm"].unique())
    base_list = [b for b in baselines if b in present]
    full_list = [f for f in full if f in present]
    got = sorted({float(s) for s in frame.loc[frame["arm"] == ssvdo_arm, "inner_share"].dropna()})
    use = [s for s in shares if any(np.isclose(s, g) for g in got)]
    out = [claim_new_domain(frame, domains, ssvdo_arm, base_list, budgets=budgets,
                            share=reference_share, full=full_list, n_boot=n_boot, alpha=alpha)]  # fmt: skip
    if len(use) >= 2:
        out.append(claim_inner_share(frame, domains, ssvdo_arm, use, budgets, n_boot=n_boot,
                                     alpha=alpha))  # fmt: skip
        out.append(claim_tradeoff(frame, domains, ssvdo_arm, use, budgets, n_boot=n_boot,
                                  alpha=alpha))  # fmt: skip
    else:
        why = f"{ssvdo_arm} ran {len(use)} inner share(s); 2 needed"
        out.append(ClaimV2(2, "Under tight budgets the inner transform is more parameter-"
                           "efficient", NOT_TESTED, reason=why))  # fmt: skip
        out.append(ClaimV2(3, "A smaller inner share with a larger outer rank gives a better "
                           "learning/forgetting trade-off", NOT_TESTED, reason=why))  # fmt: skip
    out.append(claim_scale(frame, domains, bases, ssvdo_arm=ssvdo_arm, n_boot=n_boot, alpha=alpha))
    return out


def claims_table(claims: Iterable[ClaimV2]) -> pd.DataFrame:
    """One line per test and per reported figure: claim, verdict, kind, name, effect, CI,
    p, Holm p, outcome (the CSV behind the page's claims section)."""
    lines = []
    for c in claims:
        base = {"claim": c.number, "verdict": c.verdict, "reason": c.reason}
        for t in c.tests:
            r = t.result
            lines.append({**base, "kind": "test", "name": t.name, "claimed": t.claimed,
                          "effect": r.effect, "ci_low": r.ci_low, "ci_high": r.ci_high,
                          "p": r.p_value, "p_holm": t.p_adjusted, "outcome": t.outcome})  # fmt: skip
        for name, r in c.reported:
            lines.append({**base, "kind": "reported", "name": name, "effect": r.effect,
                          "ci_low": r.ci_low, "ci_high": r.ci_high, "p": r.p_value})  # fmt: skip
        if not c.tests and not c.reported:
            lines.append({**base, "kind": "none", "name": ""})
    return pd.DataFrame(lines)


# -- synthetic tables (tests and doc examples) --------------------------------------------------
def synthetic_frame(
    rates: Mapping[str, float],
    *,
    domains: Sequence[str] = tuple(DOMAINS),
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    voices: int = 4,
    utterances: int = 10,
    words: int = 10,
    forget: Mapping[str, float] | None = None,
    shares: Mapping[str, float] | None = None,
    budget: int = 100,
    seed: int = 0,
) -> pd.DataFrame:
    """Per-utterance records with known answers: arm ``a`` has word-error probability
    ``rates[a]`` on a domain right after learning it and ``rates[a] + forget[a]`` on earlier
    domains at the end; ``0.5`` before learning. ``shares`` maps an arm name to its
    ``(arm, inner_share)`` label: ``{"p25": ...}`` becomes arm ``ssvdo`` at that share."""
    rng = np.random.default_rng(seed)
    forget = dict(forget or {})
    lines: list[dict[str, Any]] = []
    n = len(domains)
    for name, p in rates.items():
        arm, share = name, np.nan
        if shares and name in shares:
            arm, share = "ssvdo", shares[name]
        for s in seeds:
            for row in range(n + 1):
                for k, domain in enumerate(domains):
                    learned_at = 0 if k == 0 else k + 1
                    if row < learned_at:
                        q = 0.5
                    elif row == n and k < n - 1:
                        q = p + forget.get(name, 0.0)
                    else:
                        q = p
                    q = float(np.clip(q, 0.0, 1.0))
                    errs = rng.binomial(words, q, size=voices * utterances)
                    for u in range(voices * utterances):
                        lines.append({"arm": arm, "budget": budget, "inner_share": share,
                                      "base": 0, "seed": s, "horizon": "main", "row": row,
                                      "domain": domain, "id": f"{domain}-{u}",
                                      "speaker": f"v{u // utterances}", "errors": int(errs[u]),
                                      "words": words})  # fmt: skip
    return pd.DataFrame(lines, columns=COLUMNS)


__all__ += ["claim_inner_share", "claim_scale", "claim_tradeoff", "seed_difference"]
