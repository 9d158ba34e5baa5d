"""Running a v2 study (experiments.study.run_v2): a micro study on the real tiny stream and the
pretrained ci model, into a real SQLite store: selection on valid first, then the test runs at
the rate the rule chose, seed-major, resumable without recomputing."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from experiments.config import ConfigError
from experiments.run_dir import RunDir
from experiments.study import collect
from experiments.study.cli import main as study_main
from experiments.study.collect import ARM_TAG_V2 as ARM_TAG
from experiments.study.collect import PHASE_TAG, STUDY_TAG, read_selection
from experiments.study.config import load_study_v2
from experiments.study.plan_v2 import plan_v2, rate_key, select_lr
from experiments.study.run import study_folder
from experiments.study.run_v2 import (
    _missing_rates,
    run_slug,
    run_study_v2,
    seed_major_order,
    to_run,
)
from tests.experiments.conftest import TINY_OVERRIDES

ROOT = Path(__file__).resolve().parents[3]


def _micro_v2(tmp_path: Path, tiny_stream, pretrained_ci, experiment: str) -> Path:
    train = {k.split(".", 1)[1]: v for k, v in TINY_OVERRIDES.items() if k.startswith("train.")}
    study = {
        "version": 2,
        "name": "micro_v2",
        "experiment": experiment,
        "output_dir": str(tmp_path / "docs"),
        "device": "cpu",
        "reduced": True,
        "reduced_reason": "a test: two arms, two seeds, two experiences",
        "estimate_hours": 0.1,
        "overrides": {
            "workdir": str(tmp_path / "work"),
            "stream": {"root": str(tiny_stream.root), "max_utterances": 8},
            "model": {"preset": "ci", "pretrained": str(pretrained_ci)},
            "train": train,
        },
        "stream": {"base_domain": "adult", "experiences": ["child", "accent"]},
        "lr_selection": {
            "grid": [1e-3, 5e-3, 2e-2],
            "seed": 100,
            "split": "valid",
            "rule": "lowest_valid_awer",
            "tie_points": 0.2,
            "extend_at_edge": 1,
        },  # fmt: skip
        "seeds": [0, 1],
        "pretrain_seeds": [0],
        "horizons": {"main": 2},
        "budgets": [6000],
        "reference_share": 0.25,
        "arms": {
            "ssvdo": {"kind": "ssvdo", "config": "ssvdo.yaml", "inner_shares": [0.25]},
            "lora": {"kind": "matched", "config": "lora.yaml"},
            "schedule_inner_then_outer": {
                "kind": "schedule",
                "config": "ssvdo.yaml",
                "schedule": "inner_then_outer",
                "lr_from": "ssvdo",
            },  # fmt: skip
            "osf": {"kind": "not_run", "reason": "a test"},
        },
        "references": {"joint": None, "single_task": None},
    }
    path = tmp_path / "micro_v2.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


@pytest.mark.slow
def test_micro_v2_study_selects_on_valid_then_tests_seed_major_and_resumes(
    tiny_stream, pretrained_ci, store_uri, tmp_path, monkeypatch
) -> None:
    path = _micro_v2(tmp_path, tiny_stream, pretrained_ci, f"study-v2-{tmp_path.name}")
    study, _ = load_study_v2(path)
    rc = study_main(["--config", str(path), "--tracking-uri", store_uri, "--quiet"])
    assert rc == 0

    client = MlflowClient(store_uri)
    exp = client.get_experiment_by_name(study["experiment"])
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    mine = [r for r in runs if r.data.tags.get(STUDY_TAG) == "micro_v2"]
    record = [r for r in mine if r.data.tags.get("cl_ssvdo.kind") == "study"]
    assert len(record) == 1 and record[0].info.status == "FINISHED"
    assert record[0].data.metrics["study_wall_seconds"] > 0
    done = [r for r in mine if r.data.tags.get(PHASE_TAG)]
    assert all(r.info.status == "FINISHED" for r in done)
    selection = [r for r in done if r.data.tags[PHASE_TAG] == "lr-selection"]
    tests = [r for r in done if r.data.tags[PHASE_TAG] == "test"]
    # beyond the grid: an arm whose grid choice is an end of the grid ran one rate further out
    grid = {rate_key(x) for x in study["lr_selection"]["grid"]}
    rows = read_selection(store_uri, study)
    on_grid = select_lr([row for row in rows if rate_key(row[1]) in grid], 0.2)
    expected = {(arm, rate_key(lr * 2 if lr == max(grid) else lr / 2))
                for arm, lr in on_grid.items() if lr in (max(grid), min(grid))}  # fmt: skip
    assert {(arm, rate_key(lr)) for arm, lr, _ in rows if rate_key(lr) not in grid} == expected
    n_extra = len(expected)
    assert n_extra >= 1  # on this stream the largest grid rate wins: the walk is exercised
    assert len(selection) == 6 + n_extra and len(tests) == 6  # 2 arms x 3 rates; 3 arms x 2 seeds
    assert {r.data.tags["study.split"] for r in selection} == {"valid"}
    assert {r.data.params["config.stream.eval_split"] for r in selection} == {"valid"}
    assert {r.data.tags["study.split"] for r in tests} == {"test"}

    # the test runs use the rate the rule picks from the selection runs' valid AWER
    chosen = select_lr(read_selection(store_uri, study), 0.2)
    assert set(chosen) == {"ssvdo", "lora"}
    for r in tests:
        arm = r.data.tags[ARM_TAG]
        source = "ssvdo" if arm.startswith("schedule") else arm
        assert float(r.data.params["config.train.optimizer.lr"]) == chosen[source]

    # seed-major: every arm had seed 0 before any arm started seed 1
    by_seed = {s: [r.info.start_time for r in tests if r.data.params["seed"] == str(s)]
               for s in (0, 1)}  # fmt: skip
    assert max(by_seed[0]) < min(by_seed[1])

    # the page, from what the runner logged: every planned run finished, each arm's rate
    page = (tmp_path / "docs" / "results_micro_v2.md").read_text()
    assert f"Planned runs not finished: 0 of {12 + n_extra}" in page
    assert "Partial study" not in page and "Beyond the grid: while the rule picks" in page
    assert re.search(r"Test sets \(voices / utterances\): adult \d+ / \d+; child", page)
    assert "- osf: a test" in page or "osf" in page.split("## Not run", 1)[1]
    tables = tmp_path / "docs" / "results_micro_v2"
    runs_csv = pd.read_csv(tables / "runs.csv")
    assert len(runs_csv) == 12 + n_extra and (tables / "front.png").stat().st_size > 5000
    # what moved, from the names the adapter plugins log (weight change; SSVD-O's angles)
    used = runs_csv[runs_csv["used"] & (runs_csv["phase"] == "test")]
    assert (used["weight_change"] > 0).all() and (used["weight_change_total"] > 0).all()
    ssvdo = used[used["arm"] == "ssvdo"]
    assert len(ssvdo) == 2 and ssvdo[["inner_angle", "outer_angle"]].notna().all().all()
    assert used.loc[used["arm"] == "lora", ["inner_angle", "outer_angle"]].isna().all().all()
    assert "\n## Where SSVD-O loses\n" in page
    matrices = pd.read_csv(tables / "wer_matrices.csv")
    # whole matrices: base row + a row per domain, 3 domains
    assert len(matrices) == (12 + n_extra) * 4 * 3

    # again: finished runs are reused, not recomputed, and the wall time adds up
    wall = RunDir(study_folder(study, tmp_path / "work").path).state()["wall_seconds"]
    again = run_study_v2(study, path, command="test", tracking_uri=store_uri, progress=False)
    runs_after = client.search_runs([exp.experiment_id], max_results=1000)
    assert len([r for r in runs_after if r.data.tags.get(PHASE_TAG)]) == len(done)
    assert again.selected == chosen and again.wall_seconds > wall

    # a store that lost an arm's selection runs (injected): the study stops, naming the arm
    lora_only = [row for row in read_selection(store_uri, study) if row[0] == "lora"]
    monkeypatch.setattr(collect, "read_selection", lambda uri, s: lora_only)
    with pytest.raises(ConfigError, match=r"lr_selection.*\['ssvdo'\]|\['ssvdo'\].*lr_selection"):
        run_study_v2(study, path, command="test", tracking_uri=store_uri, progress=False)
    state = RunDir(study_folder(study, tmp_path / "work").path).state()
    assert state["status"] == "FAILED"
    # the page's wall time is the newest total, also after an invocation that stopped early
    # (its run count, the old metric step, was below the finished invocation's)
    record = collect.study_record(store_uri, study["experiment"], study["name"])
    assert record["invocations"] == 3 == state["invocations"]
    assert record["wall_seconds"] == pytest.approx(state["wall_seconds"], abs=0.5)
    assert record["wall_seconds"] > again.wall_seconds

    # killed outright (SIGKILL: no handler runs) two runs into the test phase: the time up to
    # its last finished run is on disk, not only the time up to the last phase's end
    done = subprocess.run(
        [sys.executable, "-c", _KILLED_INVOCATION, str(path), store_uri],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert "[micro_v2 test + reference] 2 of 6 runs finished (read back)" in done.stdout
    killed = RunDir(study_folder(study, tmp_path / "work").path).state()
    assert killed["invocations"] == 4
    assert killed["wall_seconds"] >= state["wall_seconds"] + 2 * _PAUSE_S


_PAUSE_S = 5.0
# A fourth invocation of the finished micro study whose test-phase jobs take _PAUSE_S each (read
# back, then a pause) and which kills itself inside the third.
_KILLED_INVOCATION = f"""
import os, signal, sys, time
from experiments.executors import local
from experiments.study.config import load_study_v2
from experiments.study.run_v2 import run_study_v2

real, seen = local.run_job, []
def paused(job, progress=False):
    result = real(job, progress=progress)
    if "-s100-" not in job.run_name:  # not a selection run (seed 100)
        seen.append(job.run_name)
        if len(seen) == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep({_PAUSE_S})
    return result
local.run_job = paused
study, _ = load_study_v2(sys.argv[1])
run_study_v2(study, sys.argv[1], command="test", tracking_uri=sys.argv[2])
"""


def test_planned_runs_have_distinct_folder_names_without_spaces() -> None:
    study, _ = load_study_v2("study_v2")
    plan = plan_v2(study, {a: 1e-3 for a in study["arms"]})
    slugs = [run_slug(r) for r in plan]
    assert len(set(slugs)) == len(slugs)
    assert not any(c in s for s in slugs for c in " ()=")


def test_seed_major_order_puts_every_arm_at_seed_k_before_seed_k_plus_1() -> None:
    study, _ = load_study_v2("study_v2")
    order = seed_major_order(plan_v2(study, {a: 1e-3 for a in study["arms"]}), study)
    main = [r for r in order if r.horizon == "main"]
    assert order[: len(main)] == main  # the long horizon comes last
    position = [study["seeds"].index(r.seed) if r.seed in study["seeds"] else 99 for r in main]
    assert position == sorted(position)
    assert {r.arm for r in main if r.seed == study["seeds"][0]} >= {"ssvdo", "lora", "naive"}


def test_an_arm_without_a_selected_rate_is_named() -> None:
    study, _ = load_study_v2("study_whisper_cpu")
    assert _missing_rates(study, {"ssvdo": 1e-3, "lora": 1e-3}) == ["full_adapted", "ssvd"]
    assert (
        _missing_rates(study, dict.fromkeys(["ssvdo", "lora", "ssvd", "full_adapted"], 1.0)) == []
    )


def test_runs_beyond_the_grid_are_planned_after_it_and_keep_the_study_folder() -> None:
    study, _ = load_study_v2("study_v2")
    assert study["lr_selection"]["extend_at_edge"] == 2
    grid = sorted(study["lr_selection"]["grid"])
    plan = plan_v2(study, extensions={"ssvdo": [0.02, 0.04]})
    ssvdo = [r.lr for r in plan if r.phase == "lr-selection" and r.arm == "ssvdo"]
    assert ssvdo == [*grid, 0.02, 0.04]
    lora = [r.lr for r in plan if r.phase == "lr-selection" and r.arm == "lora"]
    assert lora == grid
    # the extension settings add selection runs but change none: the same study folder
    sel = study["lr_selection"]
    same = {**study, "lr_selection": {**sel, "extend_at_edge": 0, "extend_factor": 3.0}}
    other = {**study, "lr_selection": {**sel, "tie_points": 0.5}}
    assert study_folder(same, "w").path == study_folder(study, "w").path
    assert study_folder(other, "w").path != study_folder(study, "w").path


LOST = "the store and the run folders were lost with the machine"


def test_withdrawn_runs_are_not_run_and_keep_the_study_folder() -> None:
    """A withdrawal (dated, with its reason) takes the planned runs it selects out of what the
    runner runs, by horizon or by arm (selection runs included), and changes no other run's
    folder: the study's folder is the same."""
    plain, _ = load_study_v2("study_v2", ["withdrawn=[]"])
    long, _ = load_study_v2("study_v2", [
        f"withdrawn=[{{horizon: long, date: '2026-11-30', reason: '{LOST}'}}]"])  # fmt: skip
    lora, _ = load_study_v2("study_v2", [
        f"withdrawn=[{{arm: lora, date: '2026-11-30', reason: '{LOST}'}}]"])  # fmt: skip
    planned = plan_v2(plain)
    assert len([r for r in planned if r.horizon == "long"]) == 50
    assert to_run(plain, planned) == planned
    assert to_run(long, planned) == [r for r in planned if r.horizon != "long"]
    without_lora = to_run(lora, planned)
    assert {r.phase for r in planned if r.arm == "lora"} == {"lr-selection", "test"}
    assert without_lora == [r for r in planned if r.arm != "lora"]
    assert study_folder(long, "w").path == study_folder(plain, "w").path
    assert study_folder(lora, "w").path == study_folder(plain, "w").path
