"""``cl-ssvdo study``: the shipped study configs plan the intended sweeps, a micro study runs
as sweeps in a real SQLite store and the results page regenerates from the store and from its
CSVs identically, and the claim-verdict rules behave as documented on hand-made tables."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow.tracking import MlflowClient

from experiments.cli import main as cli_main
from experiments.config import ConfigError, shipped_configs
from experiments.run_dir import RunDir
from experiments.study import (
    StudyPlan,
    claims,
    collect,
    doc_settings,
    load_study,
    losses,
    lr_check,
    main,
    plan_study,
    run_study,
)
from experiments.study import page as results_page
from experiments.study import table as run_table
from experiments.study import verdicts as rules
from tests.experiments.conftest import TINY_OVERRIDES


# -- the shipped study configs -------------------------------------------------------------------
def test_full_study_plans_every_arm_on_both_sizes() -> None:
    study, path = load_study("study")
    plan = plan_study(study, path)
    names = [s.name for s in plan.sweeps]
    assert names == [
        "study-small-matched",
        "study-small-split0.5",
        "study-small-split0.75",
        "study-small-references",
        "study-small-lr-ssvdo",
        "study-small-lr-lora",
        "study-medium-matched",
    ]
    settings_ = doc_settings(plan, "cl-ssvdo study")
    assert settings_.planned_runs == {"small": 63, "medium": 6}
    assert settings_.methods["medium"] == ["ssvd", "ssvdo@0.25"]
    assert {"ssvdo@0.25|lr=0.002", "lora|lr=0.005"} <= set(settings_.methods["small"])
    for sweep in plan.sweeps:
        preset = sweep.config["model"]["preset"]
        assert preset == study["models"][sweep.model]["model"]["preset"]
        assert sweep.config["model"]["pretrain"]["max_minutes"] is None
        for child in sweep.children:
            cfg = child.config
            assert cfg["seeds"] == [child.seed] and child.seed in (0, 1, 2)
            assert cfg["train"]["max_steps"] == 60 and cfg["model"]["preset"] == preset
            assert cfg["tracking"]["experiment"] == "cl-ssvdo-study"
            assert cfg["tracking"]["tags"]["cl_ssvdo.study"] == "study"
            assert cfg["tracking"]["tags"]["cl_ssvdo.model_size"] == sweep.model
            adapter = cfg["strategy"].get("adapter") or {}
            lr_arm = sweep.kind.startswith("lr-")
            assert (cfg["tracking"]["tags"].get("cl_ssvdo.arm") == "lr") == lr_arm
            if adapter.get("method") == "ssvdo":
                share = adapter["schedule"]["constant"]["inner_share"]
                main_arm = sweep.kind == "matched" or lr_arm
                assert share == (0.25 if main_arm else float(sweep.kind[5:]))
            elif adapter.get("method") in run_table.BASELINE_ADAPTERS:  # matched at reference share
                assert adapter["match"]["constant"]["inner_share"] == 0.25
                assert child.budget in study["models"][sweep.model]["budgets"]
            else:
                assert sweep.kind == "references" and child.budget is None


def test_quick_study_is_the_reduced_protocol() -> None:
    study, path = load_study("study_quick")
    plan = plan_study(study, path)
    assert [s.name for s in plan.sweeps] == [
        "study_quick-small-matched",
        "study_quick-small-split0.75",
        "study_quick-small-references",
    ]
    children = [c for s in plan.sweeps for c in s.children]
    assert len(children) == 14 and {c.seed for c in children} == {0, 1}
    assert all(c.config["train"]["max_steps"] == 40 for c in children)
    # the same base model as the full study (same preset and pretraining settings)
    full, full_path = load_study("study")
    full_plan = plan_study(full, full_path)
    assert plan.sweeps[0].config["model"] == full_plan.sweeps[0].config["model"]


def test_a_model_may_run_fewer_splits_than_the_study() -> None:
    study, path = load_study("study_quick", ["models.small.inner_shares=[0.25]"])
    plan = plan_study(study, path)
    assert [s.name for s in plan.sweeps] == [
        "study_quick-small-matched",
        "study_quick-small-references",
    ]


def _sweep_dump(sweep) -> tuple:
    return (sweep.name, sweep.config, [(c.label, c.config, c.budget) for c in sweep.children])


def test_lr_check_runs_each_method_at_the_other_rates_after_the_models_sweeps() -> None:
    study, path = load_study("study")
    plan = plan_study(study, path)
    without, _ = load_study("study", ["lr_check=null"])
    old = plan_study(without, path)
    # the main sweeps are planned exactly as without the check (their hashes key finished runs)
    main = [s for s in plan.sweeps if not s.kind.startswith("lr-")]
    assert [_sweep_dump(s) for s in main] == [_sweep_dump(s) for s in old.sweeps]
    small = [s for s in plan.sweeps if s.model == "small"]
    assert plan.sweeps[: len(small)] == small  # the small model's lr check before medium's runs
    lr_sweeps = [s for s in plan.sweeps if s.kind.startswith("lr-")]
    assert [(s.name, s.kind, s.model) for s in lr_sweeps] == [
        ("study-small-lr-ssvdo", "lr-ssvdo", "small"),
        ("study-small-lr-lora", "lr-lora", "small"),
    ]
    for sweep, lr in zip(lr_sweeps, (2e-3, 5e-3), strict=True):  # only the rate not shipped
        assert sweep.config["sweep"]["grid"] == {"train.optimizer.lr": [lr]}
        assert sweep.config["sweep"]["budgets"] == [23400]
        assert sweep.config["sweep"]["inner_share"] == 0.25
        assert sweep.config["tracking"]["tags"]["cl_ssvdo.arm"] == "lr"
        assert [c.seed for c in sweep.children] == [0, 1, 2]
        for child in sweep.children:
            assert child.config["train"]["optimizer"]["lr"] == lr and child.budget == 23400
            assert f"-lr={lr:g}-" in child.label
            tags = child.config["tracking"]["tags"]
            assert tags["cl_ssvdo.arm"] == "lr" and tags["cl_ssvdo.study"] == "study"
    for sweep in lr_sweeps:  # labels unique in the sweep, and apart from the main runs'
        labels = {c.label for c in sweep.children}
        assert len(labels) == len(sweep.children)
        assert not labels & {c.label for c in plan.sweeps[0].children}
    assert "cl_ssvdo.arm" not in old.sweeps[0].config["tracking"]["tags"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["lr_check.lrs=[5.0e-3]"], ["study-small-lr-lora"]),  # SSVD-O's own rate: no sweep
        (["lr_check.lrs=[5.0e-3]", "lr_check.methods=[ssvdo]"], []),
        (["lr_check.models=[medium]"], ["study-medium-lr-ssvdo"]),  # medium runs no LoRA
        (["lr_check.methods=[ssvd.yaml]", "lr_check.lrs=[1.0e-3]"], ["study-small-lr-ssvd"]),
    ],
)
def test_lr_check_skips_rates_a_method_already_has(overrides, expected) -> None:
    study, path = load_study("study", overrides)
    names = [s.name for s in plan_study(study, path).sweeps]
    assert [n for n in names if "-lr-" in n] == expected
    if "lr_check.models=[medium]" in overrides:
        sweep = plan_study(study, path).sweeps[-1]
        assert sweep.config["sweep"]["budgets"] == study["models"]["medium"]["budgets"][:1]


def test_lr_check_labels_and_display_names() -> None:
    assert run_table.method_label("ssvdo", "ssvdo", 0.25, lr=2e-3) == "ssvdo@0.25|lr=0.002"
    assert run_table.method_label("lora", "lora", math.nan, lr=0.005) == "lora|lr=0.005"
    assert run_table.method_label("lora", "lora", None) == "lora"  # the main arms' labels unchanged
    assert run_table.split_lr("ssvdo@0.25|lr=0.002") == ("ssvdo@0.25", 0.002)
    assert run_table.split_lr("full") == ("full", None)
    assert run_table.display_name("ssvdo@0.25|lr=0.002") == "SSVD-O (s=0.25), lr 0.002"
    assert run_table.display_name("lora|lr=0.005") == "LoRA, lr 0.005"


def test_study_configs_are_not_listed_as_experiment_configs() -> None:
    assert not [p for p in shipped_configs() if p.name.startswith("study")]


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("ssvdo.reference_share=0.4", "ssvdo.reference_share"),
        ("models.small.methods=[ssvdoo]", "models.small.methods"),
        ("models.small.budgets=[70000,20000]", "models.small.budgets"),
        ("models.small.inner_shares=[0.75]", "models.small.inner_shares"),
        ("models.small.inner_shares=[1.5]", "models.small.inner_shares.0"),
        ("modles={}", "modles"),
        ("claims.min_margin=-1", "claims.min_margin"),
        ("lr_check={methods: [full], lrs: [0.001]}", "lr_check.methods"),
        ("lr_check={methods: [lora], lrs: [0.001], models: [large]}", "lr_check.models"),
        ("lr_check={methods: [lora], lrs: [0]}", "lr_check.lrs.0"),
        ("lr_check={methods: [lora], lrs: []}", "lr_check.lrs"),
        ("lr_check={methods: [lora]}", "lr_check.lrs"),  # required
    ],
)
def test_bad_study_config_names_the_field(override: str, field: str, capsys) -> None:
    with pytest.raises(ConfigError) as info:
        load_study("study_quick", [override])
    assert info.value.field == field
    assert main(["--quick", "--dry-run", "--set", override]) == 2
    assert field in capsys.readouterr().err


def test_cli_dispatches_study_and_lists_runs(capsys) -> None:
    assert cli_main(["study", "--quick", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "study_quick-small-matched: 10 runs" in out and "lora-b23400-s1" in out
    assert "runs per model: small: 14" in out


# -- verdict rules on hand-made tables -----------------------------------------------------------
def test_compare_groups_threshold_is_max_of_pooled_std_and_margin() -> None:
    a, b = [10.0, 12.0, 14.0], [20.0, 22.0, 24.0]  # sd 2 each, difference 10
    c = rules.compare_groups("x", a, b, lower_is_better=True, margin=0.5)
    assert (c.outcome, c.advantage, c.threshold) == ("for", 10.0, 2.0)
    assert rules.compare_groups("x", a, b, lower_is_better=True, margin=11.0).outcome == "tie"
    assert rules.compare_groups("x", a, b, lower_is_better=False, margin=0.5).outcome == "against"
    wide = rules.compare_groups("x", [0.0, 20.0], [5.0, 7.0], lower_is_better=True, margin=0.0)
    assert wide.outcome == "tie" and wide.threshold == pytest.approx(math.sqrt((200 + 2) / 2))
    single = rules.compare_groups("x", [1.0], [50.0, 51.0], lower_is_better=True, margin=0.0)
    assert single.outcome == "tie" and math.isnan(single.threshold) and "2 seeds" in single.note
    with pytest.raises(ValueError, match="margin"):
        rules.compare_groups("x", a, b, lower_is_better=True, margin=-1.0)


values = st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=4)


@settings(max_examples=200, deadline=None)
@given(a=values, b=values, margin=st.floats(0, 5), lower=st.booleans())
def test_swapping_sides_swaps_the_outcome(a, b, margin, lower) -> None:
    ab = rules.compare_groups("x", a, b, lower_is_better=lower, margin=margin)
    ba = rules.compare_groups("x", b, a, lower_is_better=lower, margin=margin)
    assert ab.advantage == pytest.approx(-ba.advantage, abs=1e-9)
    swap = {"for": "against", "against": "for", "tie": "tie"}
    assert swap[ab.outcome] == ba.outcome
    if ab.outcome != "tie":
        assert abs(ab.advantage) > ab.threshold >= margin


def test_verdict_combines_comparisons() -> None:
    def comp(outcome: str) -> rules.Comparison:
        return rules.Comparison("x", "a", "b", "m", 1, 0, 3, 2, 0, 3, 1.0, 0.5, outcome)

    assert rules.verdict([comp("for"), comp("for")]) == "confirmed"
    assert rules.verdict([comp("for"), comp("against")]) == "refuted"
    assert rules.verdict([comp("for"), comp("tie")]) == "inconclusive"
    assert rules.verdict([]) == "inconclusive"


def _rows(model, method, budget, column_means, seeds=(0, 1, 2), noise=0.1, **extra):
    adapter = {"ssvd": "ssvd", "lora": "lora", "dora": "dora", "pissa": "pissa", "full": "full"}
    base = run_table.split_lr(method)[0]
    rows = []
    for s in seeds:
        row = {
            "model": model,
            "method": method,
            "strategy": base.split("@")[0],
            "adapter": "ssvdo" if base.startswith("ssvdo@") else adapter.get(base, "none"),
            "budget": float(budget) if budget is not None else math.nan,
            "inner_share": float(base.split("@")[1]) if "@" in base else math.nan,
            "seed": s,
            "trainable_params": float(budget or 1_000_000),
            "learning_mean": 10.0,
            "forgetting_mean": 5.0,
            "awer": 30.0,
            "bwt": -5.0,
            "first_forgetting": 4.0,
            "max_steps": 80.0,
            "lr": 1e-3,
            "duration_s": 60.0,
            "domains": "adult,child,accent",
            "git_commit": "abc",
            "start_time": s,
            **extra,
        }
        for col, mean in column_means.items():
            row[col] = mean + noise * (s - 1)
        rows.append(row)
    return rows


def _settings(models=("small", "medium")) -> run_table.DocSettings:
    return run_table.DocSettings(
        study="t",
        experiment="e",
        command="cl-ssvdo study --config t.yaml",
        models=list(models),
        budgets={m: [1000, 5000] for m in models},
        seeds=[0, 1, 2],
        inner_shares=[0.25, 0.75],
        reference_share=0.25,
    )


def _table(
    ssvdo_wer=20.0,
    lora_wer=25.0,
    hi_share_wer=18.0,
    medium_ssvd=30.0,
    full_awer=40.0,
    seeds=(0, 1, 2),
):
    rows = []
    for model, ssvd_wer in (("small", 22.0), ("medium", medium_ssvd)):
        for budget in (1000, 5000):
            rows += _rows(model, "ssvdo@0.25", budget, {"new_domain_wer": ssvdo_wer,
                          "learning_mean": 12.0, "forgetting_mean": 2.0}, seeds)  # fmt: skip
            rows += _rows(model, "ssvdo@0.75", budget, {"new_domain_wer": hi_share_wer,
                          "learning_mean": 13.0, "forgetting_mean": 9.0}, seeds)  # fmt: skip
            rows += _rows(model, "lora", budget, {"new_domain_wer": lora_wer}, seeds)
            for other in ("dora", "pissa"):
                rows += _rows(model, other, budget, {"new_domain_wer": 24.0}, seeds)
            rows += _rows(model, "ssvd", budget, {"new_domain_wer": ssvd_wer}, seeds)
        rows += _rows(model, "full", None, {"new_domain_wer": 15.0, "awer": full_awer}, seeds)
    return pd.DataFrame(rows)


def test_claims_confirmed_on_a_table_that_supports_them() -> None:
    verdicts = claims.evaluate_claims(_table(), _settings())
    assert [v.verdict for v in verdicts] == ["confirmed"] * 4
    c1 = verdicts[0]
    assert len(c1.comparisons) == 2 * 2 * 4  # models x budgets x baselines
    assert "Gap to full fine-tuning" in c1.sentence and "SSVD-O +5.00" in c1.sentence
    # claim 2: at the smallest budget only, s=0.75 (18) beats s=0.25 (20) by 2 > 0.5
    assert [c.budget for c in verdicts[1].comparisons] == [1000.0, 1000.0]
    assert verdicts[1].comparisons[0].advantage == pytest.approx(2.0)
    # claim 3: tradeoff 12-2=10 vs 13-9=4
    assert all(c.advantage == pytest.approx(6.0) for c in verdicts[2].comparisons)
    # claim 4: outer value medium 100*(30-20)/30 = 33.3 % vs small 100*(22-20)/22 = 9.1 %
    c4 = verdicts[3].comparisons
    assert len(c4) == 2 and c4[0].mean_a == pytest.approx(100 * 10 / 30, rel=1e-2)


def test_claims_refuted_where_the_table_contradicts_them() -> None:
    verdicts = claims.evaluate_claims(
        _table(ssvdo_wer=20.0, lora_wer=18.0, hi_share_wer=25.0, medium_ssvd=20.5), _settings()
    )
    assert verdicts[0].verdict == "refuted"  # LoRA beats SSVD-O by 2 points
    assert {c.name_b for c in verdicts[0].comparisons if c.outcome == "against"} == {"LoRA"}
    assert verdicts[1].verdict == "refuted"  # the inner-heavy split learns worse here
    assert verdicts[3].verdict == "refuted"  # outer value 2.4 % on medium < 9.1 % on small
    assert not any("AWER" in n for n in losses.loss_notes(_table(), _settings(), verdicts))
    table = _table(lora_wer=18.0, full_awer=25.0)  # full FT's final AWER 25 < SSVD-O's 30
    notes = losses.loss_notes(table, _settings(), claims.evaluate_claims(table, _settings()))
    assert len(notes) == 2 * 2 + 2 * 2  # LoRA and full FT, at every model and budget
    assert any(
        n.startswith("- new-domain WER, small @ 1,000: SSVD-O") and "LoRA better" in n
        for n in notes
    )
    assert any(
        n.startswith("- AWER, medium @ 5,000") and "full FT better by 5.00" in n for n in notes
    )


def test_claim1_needs_every_named_baseline() -> None:
    table = _table()
    without_dora = table[table["method"] != "dora"]
    verdict = claims.evaluate_claims(without_dora, _settings())[0]
    assert all(c.outcome == "for" for c in verdict.comparisons)
    assert verdict.verdict == "inconclusive" and "Not compared (no runs): DoRA" in verdict.sentence


@pytest.mark.parametrize(("medium_base", "caveat"), [(45.0, True), (30.5, False)])
def test_claim4_warns_when_the_base_models_start_apart(medium_base: float, caveat: bool) -> None:
    table = _table().assign(**{"base_wer/adult": 30.0})
    table.loc[table["model"] == "medium", "base_wer/adult"] = medium_base
    text = claims.claim4(table, _settings()).sentence
    assert ("Caveat: the base models differ" in text) == caveat
    assert ("adult WER small 30.0 %, medium 45.0 %" in text) == caveat


def test_claims_inconclusive_with_one_seed_or_one_model() -> None:
    one_seed = claims.evaluate_claims(_table(seeds=(0,)), _settings())
    assert [v.verdict for v in one_seed] == ["inconclusive"] * 4
    small_only = _table()
    small_only = small_only[small_only["model"] == "small"]
    verdicts = claims.evaluate_claims(small_only, _settings(models=("small",)))
    assert verdicts[3].verdict == "inconclusive" and not verdicts[3].comparisons
    assert "Only 1 model size" in verdicts[3].sentence


def test_aggregate_gives_mean_and_std_per_cell() -> None:
    agg = run_table.aggregate(_table(), ["small", "medium"])
    row = agg[(agg["model"] == "small") & (agg["method"] == "lora") & (agg["budget"] == 1000)]
    assert row["seeds"].item() == 3
    assert row["new_domain_wer"].item() == pytest.approx(25.0)
    assert row["new_domain_wer_std"].item() == pytest.approx(0.1)
    assert list(agg["model"].unique()) == ["small", "medium"]
    first = agg[agg["model"] == "small"]["method"].tolist()
    assert first[:6] == ["ssvdo@0.25", "ssvdo@0.75", "ssvd", "lora", "dora", "pissa"]
    assert first[-1] == "full"


def _lr_table(ssvdo_at_lora_rate=26.0, lora_at_ssvdo_rate=19.0) -> pd.DataFrame:
    """The small model of :func:`_table` with the shipped rates (SSVD-O 5e-3, LoRA 2e-3) and
    the learning-rate check: SSVD-O at 2e-3 and LoRA at 5e-3 at the tight budget."""
    table = _table()
    table = table[table["model"] == "small"].copy()
    table.loc[table["method"].str.startswith("ssvdo@"), "lr"] = 5e-3
    table.loc[table["method"] == "lora", "lr"] = 2e-3
    extra = _rows("small", "ssvdo@0.25|lr=0.002", 1000,
                  {"new_domain_wer": ssvdo_at_lora_rate}, lr=2e-3)  # fmt: skip
    extra += _rows("small", "lora|lr=0.005", 1000, {"new_domain_wer": lora_at_ssvdo_rate}, lr=5e-3)
    return pd.concat([table, pd.DataFrame(extra)], ignore_index=True)


def test_lr_check_rows_stay_out_of_the_claims_and_main_tables() -> None:
    table, small = _lr_table(), _settings(models=("small",))
    with_check = claims.evaluate_claims(table, small)
    without = claims.evaluate_claims(run_table.main_arms(table), small)
    assert [(v.verdict, v.comparisons) for v in with_check] == [
        (v.verdict, v.comparisons) for v in without
    ]
    assert losses.loss_notes(table, small, with_check) == losses.loss_notes(
        run_table.main_arms(table), small, without
    )
    agg = run_table.aggregate(table, ["small"])
    tight = agg[agg["budget"] == 1000]["method"].tolist()
    assert tight[-2:] == ["ssvdo@0.25|lr=0.002", "lora|lr=0.005"]  # after the main arms


def test_lr_check_sentence_when_the_ordering_holds_at_equal_rates() -> None:
    (check,) = lr_check.lr_checks(
        _lr_table(ssvdo_at_lora_rate=20.0, lora_at_ssvdo_rate=25.0), _settings(models=("small",))
    )
    assert [(lbl, lr, shipped) for lbl, lr, shipped in check.cells] == [
        ("ssvdo@0.25|lr=0.002", 0.002, False),
        ("ssvdo@0.25", 0.005, True),
        ("lora", 0.002, True),
        ("lora|lr=0.005", 0.005, False),
    ]
    assert [c.outcome for c in check.comparisons if c.metric == "new-domain WER"] == ["for"] * 3
    (sentence,) = check.sentences
    assert (
        "At equal learning rates (0.002, 0.005) the ordering on new-domain WER and AWER is the "
        "same as at the shipped ones" in sentence
    )
    assert (
        "At the shipped learning rates (0.005 vs 0.002): new-domain WER, SSVD-O (s=0.25) better; "
        "AWER, no difference beyond the spread." in sentence
    )


def test_results_page_has_the_lr_check_and_rebuilds_from_its_csvs(tmp_path) -> None:
    table, small = _lr_table(), _settings(models=("small",))
    small.planned_runs = {"small": len(table) + 2, "medium": 6}  # some runs not finished
    out = {"doc": tmp_path / "results.md", "images": tmp_path / "img", "tables": tmp_path / "t"}
    meta = {"status": "FINISHED", "wall_seconds": 7200.0, "invocations": 2, "command": "c"}
    files = results_page.write_results(table, small, meta=meta, **out)
    page = out["doc"].read_text()
    results, lr_part = page.split("## Learning-rate check")
    assert "## The claims" in results and "## Where SSVD-O loses" in lr_part
    assert "|lr=" not in page and ", lr 0.00" not in results  # the main tables leave it out
    assert "| SSVD-O (s=0.25) | 0.005 (shipped) | 20.0 ± 0.1 |" in lr_part
    assert "| LoRA | 0.005 | 19.0 ± 0.1 | 4.0 ± 0.0 | 30.0 ± 0.0 | -5.0 ± 0.0 |" in lr_part
    assert "| new-domain WER at the shipped lrs (0.005 vs 0.002) | SSVD-O (s=0.25), lr 0.005" in (
        lr_part
    )
    # SSVD-O is better at the shipped rates (20 vs 25) but LoRA at both equal rates
    assert (
        "At equal learning rates the ordering differs: new-domain WER at lr 0.002: LoRA better; "
        "new-domain WER at lr 0.005: LoRA better." in lr_part
    )
    assert "study wall time: 2.00 h (2 invocations, finished)" in page
    n = len(table)
    assert f"Finished runs: {n} of {n + 8} planned (small {n} of {n + 2}, medium 0 of 6)" in page
    assert "lr_check.csv" in page
    lr_csv = pd.read_csv(out["tables"] / "lr_check.csv")
    assert out["tables"] / "lr_check.csv" in files and len(lr_csv) == 3 * 2  # 3 pairs x 2 metrics
    assert set(lr_csv["method_b"]) == {"lora", "lora|lr=0.005"}
    # the CSVs alone give the same page
    frame, meta_back = collect.load_runs_csv(out["tables"], small.study)
    results_page.write_results(frame, small, meta=meta_back, **out)
    assert out["doc"].read_text() == page
    # without the check: no section, no CSV left behind
    results_page.write_results(run_table.main_arms(table), small, meta=meta, **out)
    assert "Learning-rate check" not in out["doc"].read_text()
    assert not (out["tables"] / "lr_check.csv").exists()


def _record(client: MlflowClient, experiment_id: str, study: str, wall: float) -> str:
    run = client.create_run(experiment_id, tags={"cl_ssvdo.kind": "study", "cl_ssvdo.study": study})
    client.log_metric(run.info.run_id, "study_wall_seconds", wall)
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def test_study_wall_time_sums_the_record_runs_and_fresh_restarts_it(tmp_path) -> None:
    uri = f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}"
    client = MlflowClient(uri)
    exp = client.create_experiment("records", artifact_location=str(tmp_path / "artifacts"))
    assert collect.study_record(uri, "records", "s") == {}
    _record(client, exp, "s", 3600.0)
    _record(client, exp, "s", 1800.0)
    _record(client, exp, "other", 99.0)
    record = collect.study_record(uri, "records", "s")
    assert record["wall_seconds"] == 5400.0 and record["invocations"] == 2
    assert record["status"] == "FINISHED"

    study = {"name": "s", "experiment": "records", "seeds": [0]}
    plan = StudyPlan(study, tmp_path / "s.yaml", [], str(tmp_path / "work"), uri)
    run_study(plan, command="cl-ssvdo study", fresh=True, progress=False)
    record = collect.study_record(uri, "records", "s")
    assert record["invocations"] == 1 and record["wall_seconds"] < 60
    assert collect.study_record(uri, "records", "other")["invocations"] == 1


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), min_size=1, max_size=12))
def test_pareto_front_is_exactly_the_non_dominated_points(pairs) -> None:
    points = [{"learning": float(x), "forgetting": float(y)} for x, y in pairs]
    front = run_table.pareto_front(points)

    def dominates(q, p):
        return (
            q["learning"] >= p["learning"]
            and q["forgetting"] <= p["forgetting"]
            and (q["learning"] > p["learning"] or q["forgetting"] < p["forgetting"])
        )

    assert all(not any(dominates(q, p) for q in points) for p in front)
    rest = [p for p in points if not any(p is f for f in front)]
    assert all(any(dominates(q, p) for q in points) for p in rest)


# -- a micro study, end to end -------------------------------------------------------------------
def _micro_config(tmp_path: Path, tiny_stream, pretrained_ci) -> Path:
    train = {k.split(".", 1)[1]: v for k, v in TINY_OVERRIDES.items() if k.startswith("train.")}
    study = {
        "name": "micro",
        "experiment": "study-test",
        "seeds": [0, 1],
        "overrides": {
            "workdir": str(tmp_path / "work"),
            "stream": {"root": str(tiny_stream.root), "max_utterances": 8},
            "train": train,
        },
        "models": {
            "ci": {"model": {"preset": "ci", "pretrained": str(pretrained_ci)}, "budgets": [6000]}
        },
        "ssvdo": {"inner_shares": [0.25, 0.75], "reference_share": 0.25},
        "baselines": ["lora.yaml"],
        "references": [],
        "output": {
            "doc": str(tmp_path / "docs" / "results.md"),
            "images": str(tmp_path / "docs" / "img" / "results"),
            "tables": str(tmp_path / "docs" / "results"),
        },
    }
    path = tmp_path / "micro.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


@pytest.mark.slow
def test_micro_study_runs_as_sweeps_and_regenerates_the_page(
    tiny_stream, pretrained_ci, store_uri, tmp_path
) -> None:
    path = _micro_config(tmp_path, tiny_stream, pretrained_ci)
    assert cli_main(["study", "--config", str(path), "--tracking-uri", store_uri, "--quiet"]) == 0

    client = MlflowClient(store_uri)
    exp = client.get_experiment_by_name("study-test")
    runs = client.search_runs([exp.experiment_id])
    kinds = [r.data.tags.get("cl_ssvdo.kind") for r in runs]
    parents = {r.info.run_name: r for r in runs if r.data.tags.get("cl_ssvdo.kind") == "sweep"}
    assert sorted(parents) == ["micro-ci-matched", "micro-ci-split0.75"]
    record = next(r for r in runs if r.data.tags.get("cl_ssvdo.kind") == "study")
    assert record.info.status == "FINISHED" and record.data.metrics["study_wall_seconds"] > 0
    children = [r for r in runs if r.data.tags.get("cl_ssvdo.kind") is None]
    assert len(children) == 6 and kinds.count("sweep") == 2
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["cl_ssvdo.study"] == "micro"
        assert child.data.tags["mlflow.parentRunId"] in {p.info.run_id for p in parents.values()}

    docs = tmp_path / "docs"
    page = (docs / "results.md").read_text()
    for n in range(1, 5):
        assert f"**Claim {n}: " in page
    assert "SSVD-O (s=0.25)" in page and "LoRA" in page and "Not yet run" not in page
    assert "cl-ssvdo study --config" in page
    assert (docs / "img" / "results" / "wer_vs_params_ci.png").stat().st_size > 5000
    assert (docs / "img" / "results" / "learning_forgetting_ci.png").stat().st_size > 5000
    assert "img/results/wer_vs_params_ci.png" in page

    # per-run rows agree with the run folders (an independent record of the same matrices)
    table = pd.read_csv(docs / "results" / "runs.csv")
    assert len(table) == 6 and set(table["method"]) == {"ssvdo@0.25", "ssvdo@0.75", "lora"}
    for row in table.to_dict("records"):
        run = client.get_run(row["run_id"])
        wer = np.asarray(RunDir(run.data.tags["cl_ssvdo.run_dir"]).state()["wer"], dtype=float)
        assert row["new_domain_wer"] == pytest.approx(np.mean([wer[i + 1, i] for i in range(3)]))
        assert row["first_forgetting"] == pytest.approx(wer[3, 0] - wer[:3, 0].min())
        assert row["awer"] == pytest.approx(wer[3].mean())
    summary = pd.read_csv(docs / "results" / "summary.csv")
    assert set(summary["seeds"]) == {2}

    # regenerating from the store, then from the CSVs alone, gives the same page
    assert main(["--config", str(path), "--tracking-uri", store_uri, "--only-regenerate"]) == 0
    assert (docs / "results.md").read_text() == page
    missing = f"sqlite:///{(tmp_path / 'absent' / 'mlflow.db').as_posix()}"
    assert main(["--config", str(path), "--tracking-uri", missing, "--only-regenerate"]) == 0
    assert (docs / "results.md").read_text() == page
    assert not (tmp_path / "absent").exists()  # reading never creates a store

    # another study: refuses to replace these results with an empty page ...
    assert main(["--config", str(path), "--tracking-uri", missing, "--only-regenerate",
                 "--set", "name=other"]) == 1  # fmt: skip
    assert (docs / "results.md").read_text() == page
    # ... and writes the "not yet run" page where there are none
    empty = tmp_path / "empty"
    assert main(["--config", str(path), "--tracking-uri", missing, "--only-regenerate",
                 "--set", "name=other", "--set", f"output.doc={empty / 'results.md'}",
                 "--set", f"output.tables={empty / 'tables'}"]) == 0  # fmt: skip
    blank = (empty / "results.md").read_text()
    assert "**Not yet run:**" in blank and "cl-ssvdo study --config" in blank
    assert not (empty / "tables").exists()
