"""Study v2: peft's SVD-based / continual-learning competitors (MiCA, CorDA, OSF) are planned as
budget-matched arms, and each planned run's config builds their matched plugin."""

from __future__ import annotations

import pytest

from experiments.factory import build_plugins
from experiments.study.config import load_study_v2
from experiments.study.plan_v2 import experiment_config, plan_v2
from experiments.study.protocol import arm_method

ARMS = {"mica_init": "mica", "corda_init": "corda", "osf": "osf"}


@pytest.mark.parametrize("name", ["study_v2", "study_whisper"])
def test_peft_competitors_are_matched_arms_at_every_budget(name: str) -> None:
    study, path = load_study_v2(name)
    plan = plan_v2(study)
    for arm, method in ARMS.items():
        assert study["arms"][arm]["kind"] == "matched" and arm_method(study["arms"][arm]) == method
        selection = [r for r in plan if r.phase == "lr-selection" and r.arm == arm]
        assert len(selection) == len(study["lr_selection"]["grid"])
        tests = [r for r in plan if r.phase == "test" and r.arm == arm]
        assert {r.budget for r in tests} == set(study["budgets"])
        assert len(tests) == len(study["budgets"]) * len(study["seeds"])
        for run in (selection[0], tests[-1]):
            cfg = experiment_config(study, run, path)
            adapter = cfg["strategy"]["adapter"]
            assert adapter["method"] == method and "rank" not in adapter
            assert adapter["match"] == {
                "constant": {"budget": run.budget, "inner_share": study["reference_share"]}
            }
            (plugin,) = build_plugins(cfg)
            assert plugin.adapter_method == method and plugin.match is not None
            if method == "corda":
                assert plugin.calibration_batches == 4


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mica", "corda", "osf"])
def test_shipped_competitor_config_runs_end_to_end(tiny_config, store_uri, name: str) -> None:
    """The shipped config through the real runner (tiny stream, pretrained ci model, SQLite
    store): every experience is trained at the matched count and the run finishes."""
    from mlflow.tracking import MlflowClient

    from experiments.runner import run_experiment

    cfg = tiny_config(name, {"strategy.adapter.calibration_batches": 1} if name == "corda" else {})
    result = run_experiment(cfg, seed=0, tracking_uri=store_uri, progress=False)
    run = MlflowClient(store_uri).get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.params["adapter.method"] == name
    assert len(result.wer) == len(result.domains) + 1
    trainable = [v for k, v in run.data.metrics.items() if k.startswith(f"{name}/trainable/")]
    budgets = [v for k, v in run.data.metrics.items() if k.startswith(f"{name}/budget/")]
    assert trainable and len(trainable) == len(budgets)
    assert all(0.9 * b <= t <= b for t, b in zip(sorted(trainable), sorted(budgets), strict=True))
