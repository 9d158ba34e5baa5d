"""Study v2: the protocol of docs/protocol.md enforced on the config, the plan (selection
first, then tests at the selected rates read from a real SQLite store), and the per-utterance
records every evaluation writes (strategies.metrics.wer, experiments.runner)."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow.tracking import MlflowClient

from cl_ssvdo.data.scoring import error_counts, utterance_error_counts
from experiments.config import CONFIGS_DIR, ConfigError
from experiments.factory import build_plugins
from experiments.runner import run_experiment
from experiments.study.cli import main as study_main
from experiments.study.collect import ARM_TAG_V2 as ARM_TAG
from experiments.study.collect import PHASE_TAG, STUDY_TAG, read_run_utterances
from experiments.study.config import is_v2, load_study_v2
from experiments.study.differences import run_matrices
from experiments.study.plan_v2 import experiment_config, plan_v2, schedule_setting, select_lr
from strategies.metrics.wer import WERMatrix

V2_CONFIGS = ["study_v2", "study_whisper", "study_whisper_cpu"]


# -- the shipped v2 configs ---------------------------------------------------------------------
@pytest.mark.parametrize("name", V2_CONFIGS)
def test_shipped_v2_configs_obey_the_protocol_and_build_valid_runs(name: str) -> None:
    study, path = load_study_v2(name)
    assert is_v2(path) and not is_v2(CONFIGS_DIR / "study.yaml")
    plan = plan_v2(study)
    phases = [r.phase for r in plan]
    assert phases == sorted(phases, key=["lr-selection", "test", "reference"].index)
    selection = [r for r in plan if r.phase == "lr-selection"]
    assert {r.seed for r in selection} == {study["lr_selection"]["seed"]}
    assert {r.split for r in selection} == {"valid"}
    assert study["lr_selection"]["seed"] not in {r.seed for r in plan if r.phase == "test"}
    assert all(r.lr is None for r in plan if r.phase == "test")  # nothing selected yet
    seen = set()
    for run in plan:  # every distinct configuration is a valid experiment config
        key = (run.phase, run.arm, str(run.variant), run.horizon)
        if key in seen:
            continue
        seen.add(key)
        cfg = experiment_config(study, run, path)
        assert cfg["stream"]["base_domains"] == [study["stream"]["base_domain"]]
        assert cfg["train"]["max_steps"] == run.steps
        if run.horizon != "main":  # its steps bind, not the epochs (>= 1 batch an epoch)
            assert cfg["train"]["epochs"] >= run.steps
        assert cfg["tracking"]["tags"][PHASE_TAG] == run.phase
        # selection runs are scored on valid (and never read test); the others on test
        assert cfg["stream"].get("eval_split", "test") == run.split
        if run.lr is not None:
            assert cfg["train"]["optimizer"]["lr"] == run.lr
        if run.arm.startswith("schedule_") and run.phase == "test":
            (plugin,) = [p for p in build_plugins(cfg) if hasattr(p, "schedule")]
            plugin.schedule.check_length(1 + len(study["stream"]["experiences"]))


def test_full_protocol_plan_has_the_required_runs() -> None:
    study, _ = load_study_v2("study_v2")
    plan = plan_v2(study)
    tests = [r for r in plan if r.phase == "test"]
    ssvdo = [r for r in tests if r.arm == "ssvdo" and r.horizon == "main"]
    assert {(r.budget, r.inner_share) for r in ssvdo} == {
        (b, s) for b in (23400, 70200) for s in (0.25, 0.5, 0.75)
    }
    # 5 seeds x 3 bases for each SSVD-O configuration
    assert len(ssvdo) == 6 * 5 * 3
    assert {r.arm for r in tests if r.horizon == "long"} == {
        "ssvdo",
        "lora",
        "ssvd",
        "full_adapted",
    }
    assert {r.arm for r in plan if r.phase == "reference"} == {"joint", "single_task"}
    # arms that reuse SSVD-O's rate have no selection runs of their own
    assert not [r for r in plan if r.phase == "lr-selection" and r.arm.startswith("schedule_")]


def test_schedules_go_inner_to_outer_and_back() -> None:
    fwd = schedule_setting("inner_then_outer", 10, [0.75, 0.25], 5, n_base=1)["per_experience"]
    rev = schedule_setting("outer_then_inner", 10, [0.75, 0.25], 5, n_base=1)["per_experience"]
    shares = [s["inner_share"] for s in fwd]
    assert shares == [0.75, 0.75, 0.625, 0.5, 0.375, 0.25]
    assert [s["inner_share"] for s in rev] == [0.25, 0.25, 0.375, 0.5, 0.625, 0.75]
    assert schedule_setting("constant", 10, [0.75, 0.25], 5) == {
        "constant": {"budget": 10, "inner_share": 0.5}
    }


# -- the protocol, one rule per case -------------------------------------------------------------
def _drop(arm: str):
    def change(study: dict[str, Any]) -> None:
        study["arms"].pop(arm)
        long = study["horizons"]["long_arms"]
        study["horizons"]["long_arms"] = [a for a in long if a != arm]

    return change


def _set(path: str, value: Any):
    def change(study: dict[str, Any]) -> None:
        *head, last = path.split(".")
        node = study
        for key in head:
            node = node[key]
        node[last] = value

    return change


def _withdrawn(reason: str = "the store was lost with its machine", **which: str) -> dict:
    return {**which, "date": "2026-11-30", "reason": reason}


VIOLATIONS = [
    (
        "base domain trained",
        _set("stream.experiences", ["adult", "child", "accent_scottish"]),
        "stream.experiences",
    ),
    (
        "experience twice",
        _set("stream.experiences", ["child", "child", "accent_scottish"]),
        "stream.experiences",
    ),
    (
        "short stream",
        _set("stream.experiences", ["child", "accent_scottish"]),
        "stream.experiences",
    ),
    ("small grid", _set("lr_selection.grid", [1e-3, 2e-3]), "lr_selection.grid"),
    ("selection on test", _set("lr_selection.split", "test"), "lr_selection.split"),
    ("unknown rule", _set("lr_selection.rule", "best_test_wer"), "lr_selection.rule"),
    ("selection seed tested", _set("lr_selection.seed", 3), "lr_selection.seed"),
    ("four seeds", _set("seeds", [0, 1, 2, 3]), "seeds"),
    ("seed twice", _set("seeds", [0, 1, 2, 3, 3]), "seeds"),
    ("arm with 3 seeds", _set("arms.lora.seeds", [0, 1, 2]), "arms.lora.seeds"),
    ("no long horizon", _set("horizons.long", None), "horizons.long"),
    ("long not longer", _set("horizons.long", 60), "horizons.long"),
    ("long arm unknown", _set("horizons.long_arms", ["lora", "loraa"]), "horizons.long_arms"),
    ("one budget", _set("budgets", [23400]), "budgets"),
    ("budgets unordered", _set("budgets", [70200, 23400]), "budgets"),
    ("two shares", _set("arms.ssvdo.inner_shares", [0.25, 0.75]), "arms"),
    ("no dora", _drop("dora"), "arms"),
    ("no full FT", _drop("full_adapted"), "arms"),
    ("no reverse schedule", _drop("schedule_outer_then_inner"), "arms"),
    ("no tail", _drop("ssvdo_tail"), "arms"),
    ("no joint reference", _set("references.joint", None), "references.joint"),
    ("not run without reason", _set("arms.osf", {"kind": "not_run"}), "arms.osf.reason"),
    ("lr_from unknown", _set("arms.ssvdo_tail.lr_from", "ssvdoo"), "arms.ssvdo_tail.lr_from"),
    ("reduced without reason", _set("reduced", True), "reduced_reason"),
    ("withdrawn arm unknown", _set("withdrawn", [_withdrawn(arm="loraa")]), "withdrawn.0.arm"),
    ("withdrawn nothing named", _set("withdrawn", [_withdrawn()]), "withdrawn.0"),
    (
        "withdrawn without a reason",
        _set("withdrawn", [_withdrawn(horizon="long", reason="lost")]),
        "withdrawn.0.reason",
    ),
]


@pytest.mark.parametrize(
    ("change", "field"), [v[1:] for v in VIOLATIONS], ids=[v[0] for v in VIOLATIONS]
)
def test_a_config_that_breaks_the_protocol_is_refused(change, field: str, tmp_path: Path) -> None:
    study = yaml.safe_load((CONFIGS_DIR / "study_v2.yaml").read_text())
    change(study)
    path = tmp_path / "study_bad.yaml"
    path.write_text(yaml.safe_dump(study))
    with pytest.raises(ConfigError) as err:
        load_study_v2(path)
    assert err.value.field == field
    assert str(path) in str(err.value)


def test_a_withdrawal_names_a_horizon_the_study_has(tmp_path: Path) -> None:
    study = yaml.safe_load((CONFIGS_DIR / "study_whisper_cpu.yaml").read_text())
    study["withdrawn"] = [_withdrawn(horizon="long")]  # this study has no long horizon
    path = tmp_path / "study_nolong.yaml"
    path.write_text(yaml.safe_dump(study))
    with pytest.raises(ConfigError, match="no 'long' horizon") as err:
        load_study_v2(path)
    assert err.value.field == "withdrawn.0.horizon"
    study["withdrawn"] = [_withdrawn(horizon="main", arm="lora")]
    path.write_text(yaml.safe_dump(study))
    assert load_study_v2(path)[0]["withdrawn"][0]["arm"] == "lora"


def test_reduced_protocol_needs_a_reason_and_at_most_three_hours(tmp_path: Path) -> None:
    study = yaml.safe_load((CONFIGS_DIR / "study_whisper_cpu.yaml").read_text())
    study["estimate_hours"] = 4.5
    path = tmp_path / "study_slow.yaml"
    path.write_text(yaml.safe_dump(study))
    with pytest.raises(ConfigError) as err:
        load_study_v2(path)
    assert err.value.field == "estimate_hours"
    study["estimate_hours"] = 2.5  # three seeds are fine once reduced with a reason
    path.write_text(yaml.safe_dump(study))
    assert load_study_v2(path)[0]["seeds"] == [0, 1, 2]


# -- learning-rate selection ---------------------------------------------------------------------
def test_selection_rule_prefers_the_smaller_rate_within_the_tie() -> None:
    rows = [
        ("lora", 1e-3, 30.15),
        ("lora", 2e-3, 30.0),
        ("lora", 5e-3, 35.0),
        ("ssvdo", 1e-3, 40.0),
        ("ssvdo", 5e-3, 30.0),
        ("ssvdo", 1e-2, float("nan")),
    ]
    assert select_lr(rows, 0.2) == {"lora": 1e-3, "ssvdo": 5e-3}
    assert select_lr(rows, 0.1) == {"lora": 2e-3, "ssvdo": 5e-3}


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([1e-4, 1e-3, 1e-2, 0.1]), st.floats(0, 100)), min_size=1))
def test_selected_rate_is_within_the_tie_and_smallest_there(rows) -> None:
    chosen = select_lr([("a", lr, w) for lr, w in rows], 0.2)["a"]
    best = min(w for _, w in rows)
    within = [lr for lr, w in rows if w <= best + 0.2 + 1e-12]
    assert chosen == min(within)


def test_dry_run_reads_the_selected_rates_from_the_store(store_uri, tmp_path, capsys) -> None:
    study, path = load_study_v2("study_whisper_cpu")
    client = MlflowClient(store_uri)
    exp_id = client.create_experiment(f"{study['experiment']}-{tmp_path.name}")
    name = study["experiment"] = client.get_experiment(exp_id).name
    for arm, lr, awer in (("lora", 1e-4, 31.0), ("lora", 3e-4, 30.0), ("lora", 1e-3, 30.1),
                          ("ssvdo", 1e-3, 25.0)):  # fmt: skip
        run = client.create_run(exp_id, tags={STUDY_TAG: study["name"], PHASE_TAG: "lr-selection",
                                              ARM_TAG: arm})  # fmt: skip
        client.log_param(run.info.run_id, "config.train.optimizer.lr", lr)
        client.log_metric(run.info.run_id, "awer", awer)
        client.set_terminated(run.info.run_id, "FINISHED")
    cfg = tmp_path / "study_cpu.yaml"
    withdrawn = [_withdrawn(arm="ssvd")]  # listed, marked as the runner will leave them
    cfg.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), "experiment": name,
                                   "withdrawn": withdrawn}))  # fmt: skip
    rc = study_main(["--config", str(cfg), "--dry-run", "--tracking-uri", store_uri])
    out = capsys.readouterr().out
    assert rc == 0
    lines = out.splitlines()
    assert lines.index("lr-selection: 12 runs") < lines.index("test: 12 runs")
    assert "  lora-b61440-p0.25-s0-base0-main (lr=0.0003)" in lines  # 30.1 ties 30.0: smaller rate
    assert "  ssvdo-b61440-p0.25-s2-base0-main (lr=0.001)" in lines
    gone = "withdrawn on 2026-11-30 (the reason: *Protocol*), not run"
    assert f"  ssvd-b61440-p0.25-s0-base0-main (lr=pending): {gone}" in lines
    assert f"  ssvd-b61440-p0.25-s100-base0-main (lr=0.0001): {gone}" in lines  # selection too
    assert not [x for x in lines if x.endswith(gone) and not x.startswith("  ssvd-")]


# -- per-utterance records -----------------------------------------------------------------------
_WORDS = st.lists(st.sampled_from(["a", "b", "c", "turn", "on"]), max_size=6)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_WORDS.filter(bool), _WORDS), min_size=1, max_size=6))
def test_per_utterance_errors_sum_to_the_corpus_counts(pairs) -> None:
    refs = [" ".join(r) for r, _ in pairs]
    hyps = [" ".join(h) for _, h in pairs]
    errors, words = utterance_error_counts(refs, hyps)
    assert (sum(errors), sum(words)) == error_counts(refs, hyps)
    assert words == [len(r) for r, _ in pairs]
    for e, (r, h) in zip(errors, pairs, strict=True):  # each one is its own utterance's count
        assert e == error_counts([" ".join(r)], [" ".join(h) if h else ""])[0]


def test_wer_matrix_cells_keep_per_utterance_counts() -> None:
    m = WERMatrix()
    cell = m.record(
        0, 0, ["turn on the light", "yes"], ["turn the lights", "yes"], ids=["u1", "u2"]
    )
    assert (cell.errors, cell.words) == ([2, 0], [4, 1])


@pytest.mark.slow
def test_a_run_writes_per_utterance_errors_per_row_to_its_folder_and_mlflow(
    tiny_config, store_uri, tmp_path
) -> None:
    cfg = tiny_config("naive", {"stream.base_domains": ["adult"], "train.max_steps": 1})
    result = run_experiment(cfg, seed=0, tracking_uri=store_uri, progress=False)
    folder = Path(result.run_dir) / "artifacts" / "utterances"
    files = sorted(p.name for p in folder.iterdir())
    assert files == [f"after_exp_{i}.csv.gz" for i in range(len(result.domains) + 1)]
    with gzip.open(folder / "after_exp_0.csv.gz", "rt") as fh:
        assert fh.readline().strip() == "row,domain,id,speaker,errors,words"
    frame = read_run_utterances(result.run_dir, arm="naive", seed=0, base=0)
    assert (frame["speaker"] != "").all() and frame["words"].min() > 0
    (R,) = run_matrices(frame, result.domains).values()
    np.testing.assert_allclose(R, np.asarray(result.wer), rtol=1e-9)  # same numbers as the matrix
    row0 = pd.read_csv(folder / "after_exp_0.csv.gz")
    row1 = pd.read_csv(folder / "after_exp_1.csv.gz")  # adult: evaluate-only, row 1 = row 0
    pd.testing.assert_frame_equal(row0.drop(columns="row"), row1.drop(columns="row"))
    client = MlflowClient(store_uri)
    logged = {a.path for a in client.list_artifacts(result.run_id, "utterances")}
    assert logged == {f"utterances/{f}" for f in files}


# -- full WER matrices in the study's CSVs --------------------------------------------------------
def test_run_table_keeps_the_whole_wer_matrix_and_writes_it_long() -> None:
    from experiments.study.collect import _matrix_columns, wer_matrices

    domains = ["adult", "child", "accent"]
    R = np.arange(12, dtype=float).reshape(4, 3)
    row = {"run": "ssvdo-s0", "run_id": "abc", "seed": 0, **_matrix_columns(R, domains)}
    nan_row = {"run": "lora-s0", "run_id": "def", "seed": 0, **_matrix_columns(None, domains)}
    table = wer_matrices(pd.DataFrame([row, nan_row]))
    assert len(table) == 12 and set(table["run"]) == {"ssvdo-s0"}  # a run without matrix: none
    back = table.pivot(index="row", columns="domain", values="wer")[domains].to_numpy()
    np.testing.assert_array_equal(back, R)
