"""v2: the Markdown sections of a study's results page (``experiments.study.page_v2``).

Each function returns the lines of one section, from the CSVs read back (``runs.csv``,
``plan.csv``, ``selection.csv``, ``summary.csv``, ``claims.csv``, ``wer_matrices.csv``) and
``meta.json``; in page order::

    verdicts_section      the claims' verdicts, how many test runs finished
    protocol_section      the study's settings against docs/protocol.md
    compute_section       runs finished of planned and their hours per phase, the bases
    selection_section     the learning-rate selection and the rates the test runs use
    results_section       per-configuration levels, final WER per domain, the figures
    references_section    the joint / single-task references (IM, FWT)
    claims_section        every claim's tests and reported differences
    (Where SSVD-O loses)  in experiments.study.losses_v2
    not_run_section       arms, planned runs and finished runs left out, and why
    DEFINITIONS           the figures' definitions
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from experiments.study.claims_v2 import NOT_RUN, NOT_TESTED
from experiments.study.levels_v2 import finite, num_text
from experiments.study.page_tables import hours, md_table
from experiments.study.plan_v2 import extension
from experiments.study.store_v2 import PHASES
from experiments.study.verdicts import RULE

__all__ = [
    "DEFINITIONS",
    "NAMES",
    "claims_section",
    "compute_section",
    "not_run_section",
    "protocol_section",
    "references_section",
    "results_section",
    "grid_edge_arms",
    "selection_section",
    "verdicts_section",
]

NAMES = {
    "awer": "AWER",
    "new_domain_wer": "new-domain WER",
    "bwt": "BWT",
    "forgetting": "forgetting",
    "learning": "learning",
    "im": "IM",
    "fwt": "FWT",
}


def _level(line: Mapping[str, Any], metric: str) -> str:
    mean, low, high = line[metric], line[f"{metric}_low"], line[f"{metric}_high"]
    if not finite(mean):
        return "-"
    if not finite(low):
        return f"{num_text(mean)} (1 run)"
    return f"{num_text(mean)} [{num_text(low)}, {num_text(high)}]"


def _lr_text(lr: Any) -> str:
    return f"{float(lr):g}" if finite(lr) else "pending"


def verdicts_section(claims: pd.DataFrame, plan: pd.DataFrame, n_tests: int) -> list[str]:
    """Each claim's verdict, then how many planned test runs finished (``n_tests``) or were
    withdrawn and, when some are neither, the warning that the study is partial."""
    verdicts = claims.drop_duplicates("claim")
    out = ["## Verdicts", ""]
    out += [f"{r['claim']}. *{r['statement']}* — **{r['verdict']}**"
            for r in verdicts.to_dict("records")]  # fmt: skip
    planned_tests = int((plan["phase"] == "test").sum())
    withdrawn = int(((plan["phase"] == "test") & (plan["status"] == "withdrawn")).sum())
    gone = (
        f"; {withdrawn} withdrawn: *Protocol* says why, *Not run* lists them" if withdrawn else ""
    )
    out += ["", f"({n_tests} of {planned_tests} planned test runs finished{gone}; rule and "
            "tests under *Claims*.)", ""]  # fmt: skip
    if n_tests + withdrawn < planned_tests:
        out += ["> **Partial study.** The claims are judged on the test runs that finished; a "
                "planned test with none of its runs counts as unclear, and a claim none of "
                f"whose tests has runs is *{NOT_RUN}* (*Not run* lists the rest).", ""]  # fmt: skip
    return out


def _withdrawn_line(entry: Mapping[str, Any]) -> str:
    """One withdrawal of the study config as a line of the protocol section.

    >>> _withdrawn_line({"horizon": "long", "date": "2026-11-30", "reason": "Store lost."})
    '- **Withdrawn** on 2026-11-30: the long-horizon runs not finished by then. Store lost.'
    """
    horizon = f"{entry['horizon']}-horizon " if entry.get("horizon") else ""
    what = f"`{entry['arm']}`'s {horizon}runs" if entry.get("arm") else f"the {horizon}runs"
    return f"- **Withdrawn** on {entry['date']}: {what} not finished by then. {entry['reason']}"


def protocol_section(study: Mapping[str, Any], meta: Mapping[str, Any], link: str) -> list[str]:
    s, sel, hz = study, study["lr_selection"], study["horizons"]
    domains = meta["domains"]
    arms = [f"`{a}` ({v['kind']}" + (f", rate of `{v['lr_from']}`" if v.get("lr_from") else "")
            + ")" for a, v in s["arms"].items() if v["kind"] != "not_run"]  # fmt: skip
    every_base = [a for a, v in s["arms"].items() if v.get("all_bases")]
    long = (f"; long: {hz['long']} steps for {', '.join(f'`{a}`' for a in hz['long_arms'])}"
            if hz.get("long") else "; no long horizon")  # fmt: skip
    out = [
        "## Protocol",
        "",
        f"Pre-registered in [docs/protocol.md]({link}); this study's config (`{s['name']}`"
        + (f", `{meta['source']}`" if meta.get("source") else "")
        + "):",
        "",
        f"- Stream: {domains[0]} (task 0: evaluated before and after every experience, never "
        f"trained) -> {' -> '.join(domains[1:])}.",
        f"- Arms: {', '.join(arms)}; references: "
        + (", ".join(f"`{k}`" for k, v in s["references"].items() if v) or "none")
        + ".",
        f"- Learning rates: grid {{{', '.join(f'{x:g}' for x in sel['grid'])}}} on the "
        f"`{sel['split']}` split, seed {sel['seed']}, main horizon; rule `{sel['rule']}`: the "
        "rate with the lowest valid AWER after the last experience (all domains, the base "
        f"domain included), rates within {sel['tie_points']:g} WER points of it go to the "
        "smallest.",
        f"- Training seeds: {', '.join(str(x) for x in s['seeds'])}; bases (pretraining "
        f"seeds): {', '.join(str(x) for x in s['pretrain_seeds'])}"
        + (
            f" (every base for {', '.join(f'`{a}`' for a in every_base)}; the first otherwise)"
            if every_base and len(s["pretrain_seeds"]) > 1
            else ""
        )
        + ".",  # fmt: skip
        f"- Horizons: main {hz['main']} optimiser steps per experience{long}.",
        *[_withdrawn_line(w) for w in s.get("withdrawn") or ()],
        f"- Budgets (trainable parameters per experience): "
        f"{', '.join(f'{b:,}' for b in s.get('budgets') or []) or '-'}; reference inner share "
        f"{s['reference_share']:g}.",
        f"- Uncertainty: differences between arms (claims) use the hierarchical paired "
        f"bootstrap (runs, then test voices, then utterances; {meta['n_boot']:,} draws); the "
        f"per-configuration levels below a percentile bootstrap over runs ({meta['n_boot']:,} "
        "draws), which leaves the test-set sampling out.",
    ]
    sizes = meta.get("test_sets") or {}
    if sizes:
        out.append("- Test sets (voices / utterances): "
                   + "; ".join(f"{d} {v} / {u}" for d, (v, u) in sizes.items()) + ".")  # fmt: skip
    if s.get("reduced"):
        out.append(f"- **Reduced protocol**: {s.get('reduced_reason') or ''}".rstrip())
    return out + [""]


def compute_section(plan: pd.DataFrame, runs: pd.DataFrame, meta: Mapping[str, Any]) -> list[str]:
    rows = []
    for phase in PHASES:
        part = plan[plan["phase"] == phase]
        done = int((part["status"] == "finished").sum())
        mine = runs.loc[runs["phase"] == phase, "duration_s"].astype(float)
        rows.append(
            [phase, f"{done} of {len(part)}", hours(float(mine.sum())) if len(mine) else "-"]
        )
    done = int((plan["status"] == "finished").sum())
    rows.append(["all", f"**{done} of {len(plan)}**",
                 hours(float(runs["duration_s"].astype(float).sum())) if len(runs) else "-"])  # fmt: skip
    wall = meta.get("wall_seconds")
    wall_text = hours(float(wall)) if finite(wall) else "not recorded"
    if meta.get("invocations"):
        wall_text += f" ({meta['invocations']} invocation(s))"
    superseded = int(runs["note"].str.startswith("superseded").sum())
    outside = int((runs["note"] == "not in the plan").sum())
    out = [
        "## Compute",
        "",
        md_table(["phase", "runs finished of planned", "sum of run durations"], rows),
        "",  # fmt: skip
        f"Study wall time: {wall_text}.",
    ]
    if superseded or outside:
        out.append(f"Finished runs left out: {superseded} superseded by a newer run of the same "
                   f"configuration, {outside} not in the plan (listed under *Not run*; "
                   "`runs.csv`, column `note`).")  # fmt: skip
    bases = []
    used = runs[runs["used"].astype(bool) & runs["phase"].isin(["test", "reference"])]
    for base, part in used.groupby("base", sort=True):
        shas = sorted({str(x)[:12] for x in part["base_weights_sha"].fillna("") if str(x)})
        bases.append([str(base), ", ".join(f"`{x}`" for x in shas) or "unrecorded",
                      num_text(part["base_wer"].mean()), str(len(part))])  # fmt: skip
    if bases:
        out += ["", "Bases (one per pretraining seed; weights fingerprint `base.weights_sha`, "
                "first 12 hex digits; WER of the untouched base on the base domain's test set; "
                "test and reference runs):", "",
                md_table(["pretrain seed", "weights", "base WER", "runs"], bases)]  # fmt: skip
        mixed = [b[0] for b in bases if b[1].count("`") > 2]
        if mixed:
            out.append(f"\n> **Warning: mixed bases.** Pretraining seed(s) {', '.join(mixed)} "
                       "gave more than one base weights fingerprint.")  # fmt: skip
    return out + [""]


def selection_section(sel: pd.DataFrame, study: Mapping[str, Any], meta: Mapping) -> list[str]:
    out = ["## Learning-rate selection", ""]
    selected = meta.get("selected") or {}
    if sel.empty:
        return out + ["No selection run is planned.", ""]
    rows = [[r["arm"], _lr_text(r["lr"]), num_text(r["valid_awer"], 2), r["status"],
             "**selected**" if str(r["selected"]) == "True" else ""]
            for r in sel.to_dict("records")]  # fmt: skip
    out += [md_table(["arm", "lr", "valid AWER", "run", ""], rows), ""]
    chosen = []
    for arm, spec in study["arms"].items():
        if spec["kind"] == "not_run":
            continue
        src = spec.get("lr_from") or arm
        rate = selected.get(src)
        how = "by the rule" if src == arm else f"`{src}`'s rate"
        chosen.append([arm, _lr_text(rate) if rate is not None else "pending (no finished "
                       "selection run)", how])  # fmt: skip
    out += ["Rates the test runs use:", "", md_table(["arm", "rate", "from"], chosen), ""]
    steps, factor = extension(study["lr_selection"])
    done = sel[sel["status"].astype(str).str.startswith("finished")]
    tried = {str(a): [float(x) for x in part["lr"]] for a, part in done.groupby("arm")}
    edge = grid_edge_arms(selected, tried)
    if steps:
        out += [f"Beyond the grid: while the rule picks an arm's largest (smallest) rate tried, "
                f"the next rate x {factor:g} (/ {factor:g}) is tried too, at most {steps} "
                "time(s) each way.", ""]  # fmt: skip
    if edge:
        limit = (f"the protocol tries at most {steps} rate(s) beyond each end of the grid"
                 if steps else "the protocol fixes the grid and does not widen it")  # fmt: skip
        out += [f"At the edge of the rates tried: {', '.join(edge)}. The rule picked the "
                "smallest or largest rate tried, so the best rate on valid may lie outside "
                f"them; {limit}.", ""]  # fmt: skip
    return out


def grid_edge_arms(
    selected: Mapping[str, float], tried: Mapping[str, Sequence[float]]
) -> list[str]:
    """``arm (rate, smallest|largest)`` for each selected rate at an end of the rates its arm
    tried (finished selection runs).

    >>> grid = [1e-4, 3e-4, 1e-3]
    >>> grid_edge_arms({"lora": 1e-3, "ssvd": 3e-4, "full": 1e-4, "dora": 1e-3},
    ...                {"lora": grid, "ssvd": grid, "full": grid, "dora": grid + [2e-3]})
    ['full (0.0001, smallest)', 'lora (0.001, largest)']
    """
    out = []
    for arm, rate in sorted(selected.items()):
        rates = tried.get(arm) or [rate]
        lo, hi = min(rates), max(rates)
        if math.isclose(rate, lo) or math.isclose(rate, hi):
            side = "smallest" if math.isclose(rate, lo) else "largest"
            out.append(f"{arm} ({rate:g}, {side})")
    return out


def results_section(summary: pd.DataFrame, domains: Sequence[str], figures: Mapping[str, str],
                     n_tests: int) -> list[str]:  # fmt: skip
    out = ["## Test results", ""]
    if n_tests == 0:
        out += ["**No test run of this study has finished yet:** every configuration below is "
                "*not run*; the claims are not judged on any data.", ""]  # fmt: skip
    out += ["Mean over the configuration's finished runs (seeds x bases) [95 % CI, bootstrap "
            "over those runs]; *(1 run)*: no interval. WER points; definitions at the end.", ""]  # fmt: skip
    head = ["configuration", "runs", "lr", *NAMES.values()]
    rows, wers, mismatch = [], [], []
    for r in summary.to_dict("records"):
        runs = f"{int(r['runs'])} of {int(r['planned'])}"
        if int(r["runs"]) == 0:
            rows.append([r["config"], runs, _lr_text(r["lr_planned"]), *["not run"] * len(NAMES)])
            wers.append([r["config"], runs, *["not run"] * len(domains)])
            continue
        lr = r["lr_used"] or "-"
        if finite(r["lr_planned"]) and lr != f"{float(r['lr_planned']):g}":
            mismatch.append(f"{r['config']} ran at {lr}, the selected rate is "
                            f"{float(r['lr_planned']):g}")  # fmt: skip
        rows.append([r["config"], runs, lr, *(_level(r, m) for m in NAMES)])
        wers.append([r["config"], runs, *(_level(r, f"final_wer/{d}") for d in domains)])
    out += ["### Summary per arm configuration", "", md_table(head, rows), ""]
    if mismatch:
        out += ["> **Warning: rate differs from the selected one.** " + "; ".join(mismatch) + ".",
                ""]  # fmt: skip
    out += ["### Final WER per domain (after the last experience)", "",
            md_table(["configuration", "runs", *domains], wers), ""]  # fmt: skip
    for key, alt in (("front", "Learning vs forgetting per configuration, 95 % CI bars"),
                     ("matrices", "Mean WER matrix per configuration"),
                     ("voices", "Final WER per test voice and configuration")):  # fmt: skip
        if key in figures:
            out += [f"![{alt}]({figures[key]})", ""]
    if not figures:
        out += ["No figures: no finished test run.", ""]
    return out


def references_section(matrices: pd.DataFrame, plan: pd.DataFrame,
                        domains: Sequence[str]) -> list[str]:  # fmt: skip
    refs = plan[plan["phase"] == "reference"]
    if refs.empty:
        return ["### References", "", "The study plans no joint / single-task reference: IM and "
                "FWT are not reported.", ""]  # fmt: skip
    rows = []
    for r in refs.to_dict("records"):
        part = matrices[matrices["run_id"] == r["run_id"]] if r["status"] == "finished" else None
        if part is None or part.empty:
            rows.append([r["arm"], str(r["base"]), *["not run"] * len(domains)])
            continue
        cells = {(int(x), d): w for x, d, w in zip(part["row"], part["domain"], part["wer"],
                                                   strict=True)}  # fmt: skip
        rows.append([r["arm"], str(r["base"]),
                     *(num_text(cells.get((k + 1, d))) for k, d in enumerate(domains))])  # fmt: skip
    return ["### References (IM, FWT)", "",
            "WER on each domain right after training on it (`R[c + 1][c]` of the reference run); "
            "IM and FWT of a test run use the references of its own base (none: `-`).", "",
            md_table(["reference", "base", *domains], rows), ""]  # fmt: skip


def claims_section(claims: pd.DataFrame, alpha: float) -> list[str]:
    out = ["## Claims", "",
           f"Decision rule (alpha = {alpha:g}; p-values Holm-corrected within a claim): {RULE}. "
           "A test the plan implies whose runs did not finish enters the correction with p = 1 "
           "(outcome *not run*), so its claim cannot be confirmed. Effects are *a - b* in WER "
           "points (negative: *a* lower), with the 95 % percentile CI and the two-sided "
           "bootstrap p.", ""]  # fmt: skip
    for number, part in claims.groupby("claim", sort=True):
        first = part.iloc[0]
        out += [f"### Claim {number}: {first['statement']} — **{first['verdict']}**", ""]
        if first["verdict"] == NOT_TESTED:
            out += [f"Not tested here: {first['reason'] or 'no test applies'}.", ""]
        elif first["reason"]:
            out += [f"Note: {first['reason']}.", ""]
        tests = part[part["kind"] == "test"]
        if not tests.empty:
            rows = [[t["name"], str(t["claimed"]), num_text(t["effect"], 2, True),
                     f"[{num_text(t['ci_low'], 2, True)}, {num_text(t['ci_high'], 2, True)}]"
                     if finite(t["ci_low"]) else "-",
                     num_text(t["p"], 4) if t["outcome"] != "not run" else "-",
                     num_text(t["p_holm"], 4), t["outcome"]] for t in tests.to_dict("records")]  # fmt: skip
            out += [md_table(["test (a - b)", "claimed sign", "effect", "95 % CI", "p",
                              "Holm p", "outcome"], rows), ""]  # fmt: skip
        rep = part[part["kind"] == "reported"]
        for horizon in ["main", *sorted(set(rep["horizon"]) - {"main"})]:
            rows = [[t["name"], num_text(t["effect"], 2, True),
                     f"[{num_text(t['ci_low'], 2, True)}, {num_text(t['ci_high'], 2, True)}]",
                     num_text(t["p"], 4)]
                    for t in rep[rep["horizon"] == horizon].to_dict("records")]  # fmt: skip
            if rows:
                where = "" if horizon == "main" else f" at the {horizon} horizon (*Protocol*)"
                out += [f"Reported{where}, not tested:", "",
                        md_table(["difference (a - b)", "effect", "95 % CI", "p"], rows), ""]  # fmt: skip
    return out


def not_run_section(plan: pd.DataFrame, runs: pd.DataFrame, study: Mapping[str, Any],
                     meta: Mapping[str, Any]) -> list[str]:  # fmt: skip
    out = ["## Not run", ""]
    arms = [(a, s.get("reason", "")) for a, s in study["arms"].items() if s["kind"] == "not_run"]
    out += [f"### Arms not run ({len(arms)})", ""]
    out += [f"- `{a}`: {why}" for a, why in arms] or ["None."]
    missing = plan[plan["status"] != "finished"]
    out += ["", f"### Planned runs not finished: {len(missing)} of {len(plan)}", ""]
    if not missing.empty:
        rows = []
        for (phase, config), part in missing.groupby(["phase", "config"], sort=False):
            reasons = part["reason"].value_counts()
            rows.append([phase, config, f"{len(part)} of {int(((plan['phase'] == phase) & (plan['config'] == config)).sum())}",
                         "; ".join(f"{why} ({n})" for why, n in reasons.items())])  # fmt: skip
        out += [md_table(["phase", "configuration", "not finished", "why"], rows), "",
                "<details><summary>Every planned run not finished "
                f"({len(missing)})</summary>", ""]  # fmt: skip
        out += [f"- {r['phase']}: {r['label']}: {r['reason']}" for r in missing.to_dict("records")]
        out += ["", "</details>", ""]
    reported = list(meta.get("runner_not_run") or [])
    out += [f"### Reported by the runner as not run ({len(reported)})", ""]
    out += [f"- {line}" for line in reported] or ["None."]
    bare = runs[runs["used"].astype(bool) & (runs["phase"] == "test")
                & ~runs["utterances"].astype(bool)]  # fmt: skip
    out += ["", f"### Finished test runs without complete per-utterance records ({len(bare)})", "",
            "Left out of the claims and the per-voice figure (their matrices count above).", ""]  # fmt: skip
    out += [f"- `{r['run_name']}` ({r['run_id']}; {r['config']}, base {r['base']}, seed "
            f"{r['seed']})" for r in bare.to_dict("records")] or ["None."]  # fmt: skip
    left = runs[runs["note"] != ""]
    out += ["", f"### Finished runs left out ({len(left)})", ""]
    out += [f"- `{r['run_name']}` ({r['run_id']}; {r['phase']}, {r['config']}, base {r['base']}, "
            f"seed {r['seed']}): {r['note']}" for r in left.to_dict("records")] or ["None."]  # fmt: skip
    return out + [""]


DEFINITIONS = """\
- `R[i][j]`: WER (%) on domain j after experience i (row 0: the untouched base; row 1: after
  the base domain, evaluated only, so equal to row 0).
- **AWER**: mean WER over all domains after the last experience (the base domain included);
  **new-domain WER**: mean over the trained experiences of the WER on the domain just trained,
  right after training on it (`R[k + 1][k]`; the claims pool it over words instead).
- **BWT**: mean over earlier domains of (WER right after learning it - final WER), negative =
  forgetting; **forgetting**: mean over earlier domains (the base domain included) of final WER
  minus the best WER it had before (`cl_ssvdo.metrics.forgetting_matrix`, last row).
- **learning**: mean over the trained experiences of the WER gained on the domain just trained
  (`R[k][k] - R[k + 1][k]`); **IM**: new-domain WER minus the joint reference's
  (`R[c + 1][c]` of the joint run, same base); **FWT**: single-task reference's WER minus the
  new-domain WER (positive = better than fine-tuning on that domain alone).
- A configuration is an arm at one budget, inner share and horizon; its runs are its training
  seeds x bases. The per-voice figure pools each configuration's runs' final-row errors.
- **weight change** (`runs.csv`: `weight_change`, `weight_change_total`; logged by the adapter
  plugin, `<method>/weight_change[_total]/exp<NNN>`): ||W_after - W_before|| / ||W_before|| of
  the adapted layers stacked, per experience and averaged over the run's trained experiences;
  *over the stream*: ||W_end - W_start|| / ||W_start|| after the last experience. Not logged
  for arms without an adapter plugin (e.g. naive fine-tuning of the whole model).
- **inner / outer angle** (`runs.csv`: `inner_angle`, `outer_angle`, radians; the page shows
  degrees): the mean over adapted layers and experiences of the logged `diag/inner_angle/<layer>`
  (rotation angle of SSVD-O's inner transform) and `diag/outer_angle_mean/<layer>` (mean
  principal angle between the top-l left singular subspaces before and after the experience).
"""
