"""The v2 results page (experiments.study.page_v2) from a real SQLite MLflow store holding
synthetic runs with known answers: a planted effect (SSVD-O vs LoRA and SSVD), a null one
(inner share 0.75 vs 0.25), planted losses of SSVD-O (full fine-tuning learns more; share 0.25
forgets more than 0.75), the weight change and angles the adapter plugins log, runs missing,
failed, superseded and outside the plan."""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from experiments.study.collect import ARM_TAG_V2, DOMAINS, PHASE_TAG, STUDY_TAG
from experiments.study.config import load_study_v2
from experiments.study.differences import run_matrices
from experiments.study.page_v2 import page_paths, regenerate_v2, render_v2, rerender_v2, run_ci
from experiments.study.plan_v2 import select_lr
from experiments.study.synthetic import synthetic_frame
from experiments.study.verdicts import RULE

N_BOOT = 300
BUDGET = 61440
RATES = {"p25": 0.10, "p75": 0.10, "lora": 0.30, "ssvd": 0.30, "full_adapted": 0.02}
FORGET = {"p25": 0.06}  # share 0.25 forgets more than 0.75: claim 3's forgetting test against
LOSSES = {  # claims.csv names of the planted losses of SSVD-O
    "forgetting share 0.25 - 0.75 (budget 61440, base 0)",  # a test against claim 3
    "gap ssvdo - full_adapted (budget 61440, base 0)",  # new-domain WER, reported with claim 1
    "AWER ssvdo - full_adapted (budget 61440, base 0)",  # AWER, reported with claim 1
}
# what the adapter plugins log (strategies/adapters/base.py): per experience
# <method>/weight_change[_total]/exp<NNN>, per layer diag/<figure>/<layer> at step = row
METHOD = {"ssvdo": "ssvdo", "lora": "lora", "ssvd": "ssvd", "full_adapted": "full"}
CHANGE = {"ssvdo": 0.008, "lora": 0.02, "ssvd": 0.012, "full_adapted": 0.03}
LAYERS = ("encoder.layers.0.fc1", "encoder.layers.0.fc2")
SELECTION = {  # arm -> {lr: valid AWER}; full_adapted at 1e-3 is missing
    "ssvdo": {1e-4: 30.0, 3e-4: 25.0, 1e-3: 25.1},
    "ssvd": {1e-4: 31.0, 3e-4: 30.0, 1e-3: 28.0},
    "lora": {1e-4: 28.0, 3e-4: 29.0, 1e-3: 40.0},
    "full_adapted": {1e-4: 35.0, 3e-4: 33.0},
}
SELECTED = {"ssvdo": 3e-4, "ssvd": 1e-3, "lora": 1e-4, "full_adapted": 3e-4}


def _study(name: str, experiment: str) -> dict:
    study, _ = load_study_v2("study_whisper_cpu", [
        "arms.ssvdo.inner_shares=[0.25, 0.75]", f"name={name}", f"experiment={experiment}",
        "references.joint=joint.yaml", "references.single_task=single_task.yaml",
    ])  # fmt: skip
    return study


def _change(arm: str, seed: int) -> float:
    """The run's weight change in experience 1 (experience 2: twice that; over the stream,
    after experience 2: 2.5 times)."""
    return CHANGE[arm] * (1.0 + 0.1 * seed)


def _angle(figure: str, seed: int, share: float, layer: int, row: int) -> float:
    """SSVD-O's logged angle (radians) of one layer after one experience (row 2 or 3)."""
    return (0.01 if figure == "inner_angle" else 0.03) * (1 + layer) * (row - 1) * (
        1.0 + 0.2 * seed) * (1.0 + share)  # fmt: skip


def _moved(arm: str, seed: int, share: float | None) -> list[Metric]:
    if arm not in METHOD:
        return []
    m, c = METHOD[arm], _change(arm, seed)
    out = [Metric(f"{m}/weight_change/exp001", c, 0, 20),
           Metric(f"{m}/weight_change/exp002", 2.0 * c, 0, 40),
           Metric(f"{m}/weight_change_total/exp001", c, 0, 20),
           Metric(f"{m}/weight_change_total/exp002", 2.5 * c, 0, 40)]  # fmt: skip
    if arm == "ssvdo":
        for i, layer in enumerate(LAYERS):
            for row in (2, 3):
                out += [Metric(f"diag/{f}/{layer}", _angle(f, seed, share, i, row), 0, row)
                        for f in ("inner_angle", "outer_angle_mean")]  # fmt: skip
                out.append(Metric(f"diag/weight_change/{layer}", 9.0, 0, row))  # not a run's
    return out


def _adapter_params(arm: str, share: float | None) -> dict[str, str]:
    if arm == "ssvdo":
        pre = "config.strategy.adapter.schedule.constant"
    elif arm in ("lora", "ssvd"):
        pre, share = "config.strategy.adapter.match.constant", 0.25
    else:
        return {}
    return {f"{pre}.budget": str(BUDGET), f"{pre}.inner_share": str(share)}


class Store:
    def __init__(self, uri: str, exp_id: str, study: dict) -> None:
        self.client, self.exp_id, self.study = MlflowClient(uri), exp_id, study

    def run(self, phase: str, arm: str, seed: int, lr: float | None, matrix: np.ndarray,
            share: float | None = None, utterances: pd.DataFrame | None = None,
            status: str = "FINISHED", awer: float | None = None) -> str:  # fmt: skip
        tags = {STUDY_TAG: self.study["name"], PHASE_TAG: phase, ARM_TAG_V2: arm,
                "study.horizon": "main", "study.split": "valid" if phase == "lr-selection"
                else "test"}  # fmt: skip
        run = self.client.create_run(self.exp_id, tags=tags, run_name=f"{arm}-{phase}-s{seed}")
        rid = run.info.run_id
        params = {"seed": str(seed), "config.model.pretrain.seed": "0",
                  "config.model.kind": "whisper", "config.model.pretrained": "whisper-tiny.en",
                  **_adapter_params(arm, share)}  # fmt: skip
        if lr is not None:
            params["config.train.optimizer.lr"] = str(lr)
        metrics = [Metric(f"wer/{d}", float(matrix[i, j]), 0, i)
                   for i in range(matrix.shape[0]) for j, d in enumerate(DOMAINS)]  # fmt: skip
        metrics.append(Metric("awer", float(matrix[-1].mean() if awer is None else awer), 0, 3))
        metrics += _moved(arm, seed, share)
        self.client.log_batch(rid, metrics=metrics,
                              params=[Param(k, v) for k, v in params.items()])  # fmt: skip
        if utterances is not None:
            with tempfile.TemporaryDirectory() as tmp:
                for row, part in utterances.groupby("row"):
                    part[["row", "domain", "id", "speaker", "errors", "words"]].to_csv(
                        Path(tmp) / f"after_exp_{row}.csv.gz", index=False)  # fmt: skip
                self.client.log_artifacts(rid, tmp, "utterances")
        self.client.set_terminated(rid, status)
        return rid


@pytest.fixture(scope="module")
def written(store_uri: str, tmp_path_factory: pytest.TempPathFactory):
    """The store with the study's runs, and the files regenerate_v2 wrote from it."""
    tmp = tmp_path_factory.mktemp("page_v2")
    client = MlflowClient(store_uri)
    exp_id = client.create_experiment(f"v2-page-{tmp.name}", artifact_location=str(tmp / "art"))
    study = _study("study_pagetest", client.get_experiment(exp_id).name)
    store = Store(store_uri, exp_id, study)
    for arm, grid in SELECTION.items():
        for lr, awer in grid.items():
            store.run("lr-selection", arm, 100, lr, np.full((4, 3), awer),
                      share=0.25, awer=awer)  # fmt: skip
    frame = synthetic_frame(RATES, shares={"p25": 0.25, "p75": 0.75}, seeds=(0, 1, 2),
                            forget=FORGET, budget=BUDGET, seed=0)  # fmt: skip
    matrices = run_matrices(frame, DOMAINS)
    ids = {}
    keyed = frame.assign(inner_share=frame["inner_share"].fillna(-1.0))
    for (arm, share, seed), part in keyed.groupby(["arm", "inner_share", "seed"]):
        if arm == "full_adapted" and seed == 2:
            continue  # not run: a FAILED run of it below
        share = None if share < 0 else share
        R = next(m for k, m in matrices.items() if k[0] == arm and k[4] == seed
                 and (share is None or np.isclose(k[2], share)))  # fmt: skip
        if arm == "lora" and seed == 0:  # an older run of the same configuration: superseded
            store.run("test", arm, seed, SELECTED[arm], R + 50.0, share, part)
        records = None if (arm, seed) == ("ssvd", 2) else part  # its matrix only
        ids[(arm, share, seed)] = store.run("test", arm, seed, SELECTED[arm], R, share, records)
    R = matrices[next(iter(matrices))]
    store.run("test", "full_adapted", 2, SELECTED["full_adapted"], R, status="FAILED")
    store.run("test", "lora", 7, SELECTED["lora"], R, 0.25, None)  # seed 7: not in the plan
    joint = np.full((4, 3), 20.0)
    joint[[1, 2, 3], [0, 1, 2]] = 5.0  # the joint reference's diagonal: 5 % everywhere
    store.run("reference", "joint", 0, None, joint)  # single_task: not run
    record = client.create_run(exp_id, tags={"cl_ssvdo.kind": "study",
                                             STUDY_TAG: study["name"]})  # fmt: skip
    client.log_metric(record.info.run_id, "study_wall_seconds", 3600.0)
    client.set_terminated(record.info.run_id, "FINISHED")
    out = tmp / "docs"
    files = regenerate_v2(study, store_uri, out, command="cl-ssvdo study --config x",
                          not_run=["ssvdo-p0.5: share not planned here (test)"],
                          n_boot=N_BOOT)  # fmt: skip
    return {"study": study, "files": files, "out": out, "frame": frame, "ids": ids,
            "record": record.info.run_id, "client": client, "uri": store_uri}  # fmt: skip


def _row(page: str, first_cell: str) -> list[str]:
    """The cells of the first Markdown table row starting with ``first_cell``."""
    for line in page.splitlines():
        if line.startswith(f"| {first_cell} |"):
            return [c.strip() for c in line.strip("|").split("|")]
    raise AssertionError(f"no row {first_cell!r}")


def test_page_states_the_planted_claim_confirmed_and_the_null_inconclusive(written) -> None:
    page_file, tables = page_paths(written["study"], written["out"])
    assert written["files"][0] == page_file and page_file.name == "results_pagetest.md"
    page = page_file.read_text()
    assert "[docs/protocol.md](" in page and RULE in page
    # full_adapted's 1e-3 run is missing: 3e-4 is the largest rate it tried
    assert (
        "At the edge of the rates tried: full_adapted (0.0003, largest), lora (0.0001, smallest), "
        "ssvd (0.001, largest)." in page
    )
    assert "Beyond the grid" not in page  # the study does not extend its grid
    assert "1. *SSVD-O beats LoRA/DoRA/PiSSA/SSVD at matched budgets" in page
    assert re.search(r"### Claim 1: .* — \*\*confirmed\*\*", page)
    assert re.search(r"### Claim 2: .* — \*\*inconclusive\*\*", page)
    assert re.search(r"### Claim 4: .* — \*\*not tested here\*\*", page)
    claims = pd.read_csv(tables / "claims.csv")
    one = claims[(claims["claim"] == 1) & (claims["kind"] == "test")]
    assert set(one["outcome"]) == {"for"} and len(one) == 2  # vs lora and ssvd; no dora/pissa
    assert (one["effect"] < -15).all() and (one["ci_high"] < 0).all()
    (null,) = claims[(claims["claim"] == 2) & (claims["kind"] == "test")].to_dict("records")
    assert null["ci_low"] < 0 < null["ci_high"] and null["outcome"] == "unclear"
    gap = claims[(claims["kind"] == "reported") & claims["name"].str.startswith("gap ")]
    assert len(gap) == 3  # ssvdo, ssvd and lora against full FT (reported, not tested)
    awer = claims[(claims["kind"] == "reported") & claims["name"].str.startswith("AWER ")]
    assert set(awer["name"]) == {f"AWER ssvdo - {o} (budget {BUDGET}, base 0)"
                                 for o in ("lora", "ssvd", "full_adapted")}  # fmt: skip
    assert (awer["claim"] == 1).all() and set(awer["b_arm"]) == {"lora", "ssvd", "full_adapted"}
    for t in one.to_dict("records"):  # the page prints the CSV's numbers
        cells = _row(page, t["name"])
        assert cells[2] == f"{t['effect']:+.2f}" and cells[5] == f"{t['p_holm']:.4f}"


def test_csvs_hold_every_full_matrix_and_the_figures_are_drawn(written) -> None:
    _, tables = page_paths(written["study"], written["out"])
    runs = pd.read_csv(tables / "runs.csv", dtype={"run_id": str})
    mats = pd.read_csv(tables / "wer_matrices.csv", dtype={"run_id": str})
    assert len(runs) == 11 + 14 + 1 + 1 + 1  # selection, test, superseded, not planned, joint
    assert len(mats) == len(runs) * 4 * 3  # every finished run's whole matrix
    matrices = run_matrices(written["frame"], DOMAINS)
    for (arm, share, seed), rid in written["ids"].items():
        back = mats[mats["run_id"] == rid].pivot(index="row", columns="domain", values="wer")
        R = next(m for k, m in matrices.items() if k[0] == arm and k[4] == seed
                 and (share is None or np.isclose(k[2], share)))  # fmt: skip
        np.testing.assert_allclose(back[DOMAINS].to_numpy(), R)
        line = runs[runs["run_id"] == rid].iloc[0]
        assert line["awer"] == pytest.approx(R[-1].mean())
        assert line["im"] == pytest.approx(np.mean([R[2, 1], R[3, 2]]) - 5.0)
        assert np.isnan(line["fwt"])  # no single-task reference
    for png in ("front.png", "wer_matrices.png", "voices.png"):
        assert (tables / png).stat().st_size > 5000
    voices = pd.read_csv(tables / "voices.csv")
    assert set(voices["voice"]) == {f"{d}/v{i}" for d in DOMAINS for i in range(4)}
    selection = pd.read_csv(tables / "selection.csv")
    assert len(selection) == 12 and (selection["status"] == "finished").sum() == 11
    done = selection[selection["status"] == "finished"]
    assert select_lr(zip(done["arm"], done["lr"], done["valid_awer"], strict=True)) == SELECTED
    chosen = done[done["selected"]]
    assert set(zip(chosen["arm"], chosen["lr"], strict=True)) == set(SELECTED.items())


def test_missing_failed_superseded_and_unplanned_runs_are_listed(written) -> None:
    page_file, tables = page_paths(written["study"], written["out"])
    page = page_file.read_text()
    plan = pd.read_csv(tables / "plan.csv")
    missing = plan[plan["status"] != "finished"]
    assert len(plan) == 12 + 15 + 2 and len(missing) == 3
    assert f"### Planned runs not finished: 3 of {len(plan)}" in page
    assert "- test: full_adapted-s2-base0-main (lr=0.0003): its run is FAILED" in page
    assert "- lr-selection: full_adapted-s100-base0-main (lr=0.001): not in the store" in page
    assert "- reference: single_task-s0-base0-main (lr of its config): not in the store" in page
    assert "- ssvdo-p0.5: share not planned here (test)" in page  # the runner's own list
    assert "superseded by the newer run" in page and "): not in the plan" in page
    assert "### Finished test runs without complete per-utterance records (1)" in page
    assert "No data: no test run of this study has finished" not in page
    assert "- `ssvd-test-s2` (" in page and "> **Partial study.**" in page
    summary = page.split("### Summary per arm configuration")[1]
    assert _row(summary, "full_adapted")[1:3] == ["2 of 3", "0.0003"]  # 2 finished of 3
    assert "| test | 15 of 15 |" not in page and "| test | 14 of 15 |" in page
    assert "Study wall time: 1.00 h (1 invocation(s))." in page
    logged = {a.path for a in written["client"].list_artifacts(written["record"], "results")}
    assert "results/results_pagetest.md" in logged and "results/results_pagetest" in logged


def test_page_numbers_recompute_from_the_csvs(written) -> None:
    page_file, tables = page_paths(written["study"], written["out"])
    page = page_file.read_text()
    assert render_v2(tables, page_file) == page  # the page is a function of its CSVs
    runs = pd.read_csv(tables / "runs.csv", dtype={"run_id": str})
    used = runs[runs["used"] & (runs["phase"] == "test")]
    summary = pd.read_csv(tables / "summary.csv")
    for config, part in used.groupby("config"):
        cells = _row(page.split("### Summary per arm configuration")[1], config)
        for col, metric in ((3, "awer"), (5, "bwt"), (8, "im")):
            mean, low, high, n = run_ci(part[metric].to_numpy(), N_BOOT)
            assert mean == pytest.approx(part[metric].mean())
            assert cells[col] == f"{mean:.1f} [{low:.1f}, {high:.1f}]", (config, metric)
            line = summary[summary["config"] == config].iloc[0]
            assert line[metric] == pytest.approx(mean) and line[f"{metric}_n"] == n
        wer = _row(page.split("### Final WER per domain")[1], config)
        mean, low, high, _ = run_ci(part["final_wer/child"].to_numpy(), N_BOOT)
        assert wer[3] == f"{mean:.1f} [{low:.1f}, {high:.1f}]"


def test_a_study_without_runs_still_gets_its_page(written, tmp_path) -> None:
    study = _study("study_pagetest_empty", written["study"]["experiment"])
    files = regenerate_v2(study, written["uri"], tmp_path, command="c", n_boot=N_BOOT)
    page = files[0].read_text()
    assert "**No test run of this study has finished yet:**" in page
    assert "### Planned runs not finished: 29 of 29" in page
    assert _row(page, "lora b61440 s=0.25")[1:4] == ["0 of 3", "pending", "not run"]
    assert re.search(r"### Claim 1: .* — \*\*not run yet\*\*", page)  # no data, no finding
    assert re.search(r"^1\. \*.*\* — \*\*not run yet\*\*$", page, re.M)
    assert "2 of 2 planned tests have no finished runs" in page
    assert "## Where SSVD-O loses\n\nNo data: no test run of this study has finished" in page
    absent = f"sqlite:///{(tmp_path / 'absent' / 'mlflow.db').as_posix()}"
    regenerate_v2(study, absent, tmp_path / "other", command="c", n_boot=N_BOOT)
    assert not (tmp_path / "absent").exists()  # reading never creates a store


def test_another_studys_page_or_results_are_not_replaced(written, tmp_path) -> None:
    study = _study("study_pagetest", written["study"]["experiment"])
    absent = f"sqlite:///{(tmp_path / 'absent.db').as_posix()}"
    with pytest.raises(FileExistsError, match="the store has none"):
        regenerate_v2(study, absent, written["out"], command="c", n_boot=N_BOOT)
    other = _study("pagetest", written["study"]["experiment"])  # same page name
    with pytest.raises(FileExistsError, match="holds results of study 'study_pagetest'"):
        regenerate_v2(other, absent, written["out"], command="c", n_boot=N_BOOT)
    foreign = tmp_path / "results_pagetest.md"
    foreign.write_text("# hand-written\n")
    with pytest.raises(FileExistsError, match="was not written by"):
        regenerate_v2(other, absent, tmp_path, command="c", n_boot=N_BOOT)


def _section(page: str) -> str:
    return page.split("## Where SSVD-O loses\n")[1].split("\n## ")[0]


def _bullets(section: str) -> dict[str, list[str]]:
    """Bullet name -> its lines (the bold name in backquotes, then the indented lines)."""
    out: dict[str, list[str]] = {}
    for line in section.splitlines():
        if line.startswith("- **`"):
            name = line[len("- **`") :].split("`**")[0]
            out[name] = [line]
        elif line.startswith("  ") and out:
            out[name].append(line)
    return out


def _level(values: np.ndarray, scale: float, digits: int, unit: str = "") -> str:
    mean, low, high, _ = run_ci(values, N_BOOT)
    return (f"{mean * scale:.{digits}f}{unit} [{low * scale:.{digits}f}, "
            f"{high * scale:.{digits}f}]")  # fmt: skip


def test_runs_csv_holds_the_logged_weight_change_and_angles(written) -> None:
    _, tables = page_paths(written["study"], written["out"])
    runs = pd.read_csv(tables / "runs.csv", dtype={"run_id": str})
    for (arm, share, seed), rid in written["ids"].items():
        line = runs[runs["run_id"] == rid].iloc[0]
        c = _change(arm, seed)
        assert line["weight_change"] == pytest.approx(1.5 * c)  # mean of experiences 1 and 2
        assert line["weight_change_total"] == pytest.approx(2.5 * c)  # after the last one
        for col, figure in (("inner_angle", "inner_angle"), ("outer_angle", "outer_angle_mean")):
            if arm != "ssvdo":
                assert np.isnan(line[col]), (arm, col)
                continue
            want = np.mean([_angle(figure, seed, share, i, row)
                            for i in range(len(LAYERS)) for row in (2, 3)])  # fmt: skip
            assert line[col] == pytest.approx(want)
    selection = runs[(runs["phase"] == "lr-selection") & (runs["arm"] == "ssvdo")]
    assert selection["weight_change"].notna().all() and selection["inner_angle"].isna().all()
    joint = runs[runs["arm"] == "joint"].iloc[0]  # no adapter plugin: nothing logged
    assert np.isnan(joint["weight_change"]) and np.isnan(joint["outer_angle"])
    summary = pd.read_csv(tables / "summary.csv")
    used = runs[runs["used"] & (runs["phase"] == "test")]
    for config, part in used.groupby("config"):
        line = summary[summary["config"] == config].iloc[0]
        for col in ("weight_change", "weight_change_total", "inner_angle", "outer_angle"):
            mean, low, high, n = run_ci(part[col].to_numpy(float), N_BOOT)
            assert line[f"{col}_n"] == n and (n == 0 or line[col] == pytest.approx(mean))


def test_where_ssvdo_loses_names_each_planted_loss_with_its_numbers(written) -> None:
    page_file, tables = page_paths(written["study"], written["out"])
    section = _section(page_file.read_text())
    claims = pd.read_csv(tables / "claims.csv")
    runs = pd.read_csv(tables / "runs.csv", dtype={"run_id": str})
    used = runs[runs["used"] & (runs["phase"] == "test")]
    bullets = _bullets(section)
    assert set(bullets) == LOSSES  # no bullet for the null (share 0.75 - 0.25) nor a win
    against = claims[(claims["kind"] == "test") & (claims["outcome"] == "against")]
    assert set(against["name"]) == {n for n in LOSSES if n.startswith("forgetting")}
    for name, lines in bullets.items():
        t = claims[claims["name"] == name].iloc[0]
        assert t["effect"] > 0 and t["ci_low"] > 0
        assert (f"a - b = {t['effect']:+.2f} WER points [{t['ci_low']:+.2f}, "
                f"{t['ci_high']:+.2f}], p = {t['p']:.4f}") in lines[0]  # fmt: skip
        assert ("Holm p = " in lines[0]) == (t["kind"] == "test")
        sides = []
        for arm, share in ((t["a_arm"], t["a_share"]), (t["b_arm"], t["b_share"])):
            part = used[used["arm"] == arm]
            if not math.isnan(share):
                part = part[np.isclose(part["inner_share"], share)]
            sides.append(part)
        a, b = sides
        assert f"a = `{a['config'].iloc[0]}`, b = `{b['config'].iloc[0]}`" in lines[1]
        for label, col, scale, digits, unit in (
            ("learning", "learning", 1.0, 1, ""), ("forgetting", "forgetting", 1.0, 1, ""),
            ("weight change per experience", "weight_change", 100.0, 2, " %"),
            ("weight change over the stream", "weight_change_total", 100.0, 2, " %"),
        ):  # fmt: skip
            want = (f"{label} {_level(a[col].to_numpy(), scale, digits, unit)} vs "
                    f"{_level(b[col].to_numpy(), scale, digits, unit)}")  # fmt: skip
            assert want in lines[1], (name, want)
        degrees = 180.0 / math.pi
        inner = _level(a["inner_angle"].to_numpy(), degrees, 2, "°")
        b_inner = _level(b["inner_angle"].to_numpy(), degrees, 2, "°") if b["arm"].iloc[0] == \
            "ssvdo" else "-"  # fmt: skip
        assert f"inner angle {inner} vs {b_inner}" in lines[1]
        assert "outer angle " in lines[1]
    # the words restate the numbers: full fine-tuning learned more, changed its weights more
    gap = " ".join(bullets["gap ssvdo - full_adapted (budget 61440, base 0)"])
    assert "`ssvdo b61440 s=0.25` learned less (" in gap and "forgot more (" in gap
    assert "changed its adapted weights less per experience (1.3" in gap  # 1.5 x 0.88 %
    assert "because" not in section and "reason" not in section


def test_where_ssvdo_loses_renders_from_the_csvs_alone(written, tmp_path) -> None:
    page_file, tables = page_paths(written["study"], written["out"])
    copy = tmp_path / tables.name
    shutil.copytree(tables, copy)
    runs = pd.read_csv(copy / "runs.csv", dtype={"run_id": str})
    runs.loc[runs["arm"] == "full_adapted", "weight_change"] *= 10.0  # an edit of the CSV
    runs.to_csv(copy / "runs.csv", index=False)
    page = render_v2(copy, tmp_path / page_file.name)
    claims = pd.read_csv(copy / "claims.csv")
    claims.drop(columns=["horizon"]).to_csv(copy / "claims.csv", index=False)  # an older CSV
    assert render_v2(copy, tmp_path / page_file.name) == page  # its lines are main-horizon
    claims.to_csv(copy / "claims.csv", index=False)
    bullet = " ".join(_bullets(_section(page))["gap ssvdo - full_adapted (budget 61440, base 0)"])
    used = runs[runs["used"] & (runs["phase"] == "test") & (runs["arm"] == "full_adapted")]
    assert f"vs {_level(used['weight_change'].to_numpy(), 100.0, 2, ' %')}" in bullet
    claims = pd.read_csv(copy / "claims.csv")
    claims[~claims["name"].isin(LOSSES)].to_csv(copy / "claims.csv", index=False)
    section = _section(render_v2(copy, tmp_path / page_file.name))
    assert section.strip().startswith("SSVD-O loses nowhere here: no test of a claim went")
    assert not _bullets(section)


def test_where_ssvdo_loses_quotes_only_the_runs_on_the_differences_base(written, tmp_path) -> None:
    page_file, tables = page_paths(written["study"], written["out"])
    copy = tmp_path / tables.name
    shutil.copytree(tables, copy)
    runs = pd.read_csv(copy / "runs.csv", dtype={"run_id": str})
    plan = pd.read_csv(copy / "plan.csv", dtype={"run_id": str})
    name = "gap ssvdo - full_adapted (budget 61440, base 0)"
    before = _bullets(_section(render_v2(copy, tmp_path / page_file.name)))[name]
    # full fine-tuning on a second base, ten times the weight change and 30 points of learning
    other = runs[runs["used"] & (runs["phase"] == "test") & (runs["arm"] == "full_adapted")].copy()
    other["base"], other["run_id"] = 1, [f"b1-{i}" for i in range(len(other))]
    other["weight_change"] *= 10.0
    other["learning"] += 30.0
    planned = plan[(plan["phase"] == "test") & (plan["arm"] == "full_adapted")].copy()
    planned["base"] = 1
    pd.concat([runs, other]).to_csv(copy / "runs.csv", index=False)
    pd.concat([plan, planned]).to_csv(copy / "plan.csv", index=False)
    page = render_v2(copy, tmp_path / page_file.name)
    assert _bullets(_section(page))[name] == before  # base 0's difference: base 0's runs only
    # the summary over all bases does see them (so the edit took)
    summary_line = next(line for line in page.splitlines()
                        if line.startswith("| full_adapted |") and " of " in line)  # fmt: skip
    assert f"| {2 * len(other)} of {2 * len(planned)} |" in summary_line


def test_a_store_whose_artifacts_are_gone_does_not_replace_the_page(written, tmp_path) -> None:
    page_file, tables = page_paths(written["study"], written["out"])
    out = tmp_path / "docs"
    shutil.copytree(written["out"], out)
    copy, _ = page_paths(written["study"], out)
    before = copy.read_text()
    # a run the page used and a newer run of its configuration superseded since: not a loss
    _, copy_tables = page_paths(written["study"], out)
    runs = pd.read_csv(copy_tables / "runs.csv", dtype={"run_id": str})
    superseded = (runs["phase"] == "test") & ~runs["used"].astype(bool)
    assert superseded.sum() >= 1
    runs.loc[superseded, "utterances"] = True
    runs.to_csv(copy_tables / "runs.csv", index=False)
    regenerate_v2(written["study"], written["uri"], out, command="c", n_boot=N_BOOT)
    before = copy.read_text()
    art = written["out"].parent / "art"
    moved = art.rename(tmp_path / "art-moved")  # the artifact root not mounted, say
    try:
        with pytest.raises(FileExistsError, match=r"no per-utterance errors for 13 run\(s\)"):
            regenerate_v2(written["study"], written["uri"], out, command="c", n_boot=N_BOOT)
        assert copy.read_text() == before  # nothing replaced
        files = regenerate_v2(written["study"], written["uri"], out, command="c",
                              n_boot=N_BOOT, force=True)  # fmt: skip
        assert "### Finished test runs without complete per-utterance records (14)" in (
            files[0].read_text())  # fmt: skip
    finally:
        shutil.rmtree(art, ignore_errors=True)  # what the forced page logged to the record
        moved.rename(art)
    assert regenerate_v2(written["study"], written["uri"], out, command="c", n_boot=N_BOOT)


def test_a_void_run_is_listed_with_its_reason_and_never_used(store_uri, tmp_path) -> None:
    """A finished run tagged ``study.void`` (found wrong after it finished) is kept and listed
    with the reason, but neither used for its planned run (a valid older run is) nor read by
    the learning-rate selection; a planned run whose only finished run is void is not run."""
    from experiments.study.collect import VOID_TAG, read_selection
    from experiments.study.store_v2 import read_store

    client = MlflowClient(store_uri)
    exp_id = client.create_experiment(f"v2-void-{tmp_path.name}")
    study = _study("study_voidtest", client.get_experiment(exp_id).name)
    store = Store(store_uri, exp_id, study)
    for arm, grid in SELECTION.items():
        for lr, awer in grid.items():
            store.run("lr-selection", arm, 100, lr, np.full((4, 3), awer), 0.25, awer=awer)
    wrong = store.run("lr-selection", "lora", 100, 1e-3, np.full((4, 3), 1.0), 0.25, awer=1.0)
    R = np.full((4, 3), 30.0)
    kept = store.run("test", "lora", 0, SELECTED["lora"], R, 0.25)
    newer = store.run("test", "lora", 0, SELECTED["lora"], R + 50.0, 0.25)
    alone = store.run("test", "lora", 1, SELECTED["lora"], R, 0.25)
    reason = "trained 2 epochs, not the horizon's steps"
    for rid in (wrong, newer, alone):
        client.set_tag(rid, VOID_TAG, reason)

    got = read_store(study, store_uri)
    assert got.selected == SELECTED  # lora's void 1e-3 run (valid AWER 1.0) is not selected
    rows = read_selection(store_uri, study)  # the runner's reading: the same rows, one reader
    assert select_lr(rows, 0.2) == SELECTED and len(rows) == sum(map(len, SELECTION.values()))
    runs = got.runs.set_index("run_id")
    assert runs.at[kept, "used"] and not runs.at[newer, "used"] and not runs.at[alone, "used"]
    assert runs.at[newer, "note"] == f"void: {reason}" == runs.at[alone, "note"]
    plan = got.plan[got.plan["phase"] == "test"].set_index("label")
    lora = plan[plan["arm"] == "lora"]
    assert lora.loc[lora["seed"] == 0, "run_id"].tolist() == [kept]
    (why,) = lora.loc[lora["seed"] == 1, "reason"]
    assert why == f"its finished run is void ({reason})"


LOST = "the store and the run folders were lost with the machine"


def test_withdrawn_runs_are_listed_and_the_page_renders_again_from_its_csvs(
    written, tmp_path
) -> None:
    """A withdrawal in the config: read from the store, the planned runs it selects that did
    not finish are ``withdrawn`` with the reason; with the store gone, ``rerender_v2`` applies
    it to the CSVs alone (no store read) and the page counts the study as complete, every
    figure unchanged; lifting the withdrawal makes the study partial again."""
    from experiments.study.store_v2 import read_store

    withdrawn = _study("study_pagetest", written["study"]["experiment"])
    withdrawn["withdrawn"] = [{"arm": "full_adapted", "date": "2026-11-30", "reason": LOST}]
    why = "withdrawn on 2026-11-30 (the reason: *Protocol*)"
    plan = read_store(withdrawn, written["uri"]).plan.set_index("label")
    full = plan[plan["arm"] == "full_adapted"]
    assert (full.loc[full["status"] != "finished", "status"] == "withdrawn").all()
    assert list(full.loc[full["status"] == "withdrawn", "reason"]) == [why, why]  # test + selection
    assert (full["status"] == "finished").sum() == 2 + 2  # seeds 0, 1 and two selection rates
    assert plan.loc["single_task-s0-base0-main (lr of its config)", "status"] == "not run"

    out = tmp_path / "docs"
    shutil.copytree(written["out"], out)
    page_file, tables = page_paths(withdrawn, out)
    before = page_file.read_text()
    files = rerender_v2(withdrawn, out, command="cl-ssvdo study --config x --from-csv")
    assert files[0] == page_file
    page = page_file.read_text()
    assert "> **Partial study.**" in before and "> **Partial study.**" not in page
    assert "(14 of 15 planned test runs finished; 1 withdrawn: *Protocol* says why" in page
    assert f"- test: full_adapted-s2-base0-main (lr=0.0003): {why}" in page
    assert f"- lr-selection: full_adapted-s100-base0-main (lr=0.001): {why}" in page
    assert "- reference: single_task-s0-base0-main (lr of its config): not in the store" in page
    assert (
        f"- **Withdrawn** on 2026-11-30: `full_adapted`'s runs not finished by then. {LOST}" in page
    )
    assert "Re-rendered from these CSVs alone by `cl-ssvdo study --config x --from-csv`" in page
    for section in ("## Test results", "## Claims", "## Where SSVD-O loses"):
        assert (
            page.split(section)[1].split("\n## ")[0] == before.split(section)[1].split("\n## ")[0]
        )
    assert render_v2(tables, page_file) == page  # still a function of its CSVs

    lifted = _study("study_pagetest", written["study"]["experiment"])
    rerender_v2(lifted, out, command="c")
    plan = pd.read_csv(tables / "plan.csv")
    assert set(plan.loc[plan["arm"] == "full_adapted", "status"]) == {"finished", "not run"}
    assert "> **Partial study.**" in page_file.read_text()
    with pytest.raises(FileNotFoundError, match="no results of study 'study_pagetest'"):
        rerender_v2(lifted, tmp_path / "empty", command="c")


def test_from_csv_renders_the_shipped_study_page_again_without_a_store(tmp_path, capsys) -> None:
    """``cl-ssvdo study --config study_v2 --from-csv`` (no store anywhere) writes the committed
    page from the committed CSVs; with no results there it exits 1 naming the study; a v1
    config refuses the option."""
    from experiments.study.cli import main as study_main
    from experiments.study.page_v2 import PROTOCOL

    docs = Path(__file__).resolve().parents[3] / "docs"
    shutil.copytree(docs / "results_v2", tmp_path / "results_v2")
    rc = study_main(["--config", "study_v2", "--set", f"output_dir={tmp_path}", "--from-csv"])
    assert rc == 0

    def lines(page: Path, link: str) -> list[str]:
        text = page.read_text().replace(f"]({link})", "](protocol.md)")
        return [x for x in text.splitlines() if not x.startswith("> Re-rendered from")]

    link = Path(os.path.relpath(PROTOCOL, tmp_path)).as_posix()
    assert lines(tmp_path / "results_v2.md", link) == lines(docs / "results_v2.md", "protocol.md")
    assert "--from-csv`, after the store was last read" in (tmp_path / "results_v2.md").read_text()
    empty = ["--config", "study_v2", "--set", f"output_dir={tmp_path / 'none'}", "--from-csv"]
    assert study_main(empty) == 1
    assert "no results of study 'study_v2' to render again" in capsys.readouterr().err
    assert study_main(["--quick", "--from-csv"]) == 2
