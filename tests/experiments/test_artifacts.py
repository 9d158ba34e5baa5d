"""Matrix artifacts, long tables, plots and the logger's own bookkeeping."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cl_ssvdo import metrics
from experiments.artifacts import (
    budget_frame,
    long_table,
    matrix_from_json,
    row_labels,
    write_matrix,
)
from experiments.compare import aggregate_seeds, comparison_frame, frame_to_text, write_comparison
from experiments.mlflow_logger import MLflowLogger, package_versions, run_params
from experiments.plots import _sizes, learning_forgetting_scatter, matrix_heatmap
from experiments.recorder import RunRecorder
from experiments.results import format_matrix, step_metrics
from experiments.run_dir import RunDir

DOMAINS = ["adult", "child", "accent"]
R = [[9.8, 93.0, 39.1], [8.5, 90.1, 37.0], [37.3, 11.3, 69.0], [15.8, 64.8, 13.4]]


def test_write_matrix_round_trips_with_nan(tmp_path: Path) -> None:
    forgetting = metrics.forgetting_matrix(R)
    files = write_matrix(forgetting, DOMAINS, tmp_path, "forgetting_matrix", "F", center_zero=True)
    assert [f.suffix for f in files] == [".csv", ".json", ".png"]
    assert all(f.stat().st_size > 0 for f in files)
    values, rows, cols = matrix_from_json(tmp_path / "forgetting_matrix.json")
    assert rows == row_labels(DOMAINS) and cols == DOMAINS
    np.testing.assert_allclose(np.asarray(values), forgetting, equal_nan=True)
    assert files[2].read_bytes()[:4] == b"\x89PNG"


def test_heatmap_annotates_every_finite_cell() -> None:
    data = metrics.forgetting_matrix(R)
    fig = matrix_heatmap(data, row_labels(DOMAINS), DOMAINS, "F", center_zero=True)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(texts) == int(np.isfinite(data).sum())
    assert f"{data[2, 0]:.1f}" in texts
    with pytest.raises(ValueError, match="does not match"):
        matrix_heatmap(R, ["a"], DOMAINS, "x")


def test_long_table_matches_matrix() -> None:
    table = long_table(R, DOMAINS)
    assert list(table.columns) == ["train_exp", "train_domain", "eval_domain", "wer"]
    assert len(table) == 12
    row = table[(table.train_exp == 2) & (table.eval_domain == "adult")]
    assert row.wer.item() == 37.3 and row.train_domain.item() == "child"
    assert set(table[table.train_exp == 0].train_domain) == {"base"}


@given(st.lists(st.integers(min_value=1, max_value=10**7), min_size=2, max_size=8))
@settings(max_examples=40, deadline=None)
def test_marker_sizes_grow_with_parameters(params) -> None:
    sizes = _sizes(params)
    order = np.argsort(params, kind="stable")
    assert np.all(np.diff(sizes[order]) >= -1e-9)
    assert sizes.min() >= 40.0 - 1e-9 and sizes.max() <= 600.0 + 1e-9
    # area proportional to parameters wherever above the floor
    big = sizes > 40.0
    ratio = sizes[big] / np.asarray(params, dtype=float)[big]
    assert np.allclose(ratio, ratio[0])


def test_scatter_has_one_point_per_run() -> None:
    points = [
        {"label": f"r{i}", "group": "g", "learning": i, "forgetting": 2 * i, "params": 10**i}
        for i in range(1, 4)
    ]
    fig = learning_forgetting_scatter(points)
    offsets = np.concatenate([c.get_offsets() for c in fig.axes[0].collections])
    assert offsets.tolist() == [[1, 2], [2, 4], [3, 6]]


@pytest.mark.parametrize("n_groups", [3, 12])
def test_scatter_colours_groups_apart_and_labels_only_few_points(n_groups: int) -> None:
    points = [
        {"label": f"r{i}", "group": f"g{i}", "learning": i, "forgetting": i, "params": 10}
        for i in range(n_groups)
    ]
    ax = learning_forgetting_scatter(points).axes[0]
    colours = {tuple(c.get_facecolor()[0][:3]) for c in ax.collections}
    assert len(colours) == n_groups  # no two methods share a colour
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [f"g{i}" for i in range(n_groups)]
    assert (len(ax.texts) == n_groups) == (n_groups <= 10)  # per-point labels only when few


def test_step_metrics_come_from_cl_ssvdo_metrics() -> None:
    summary = metrics.summarize(R)
    out = step_metrics(summary, R[-1], DOMAINS, 3)
    assert out["bwt"] == pytest.approx(summary["bwt"])
    assert out["forgetting_max"] == pytest.approx(summary["forgetting_max"])
    assert out["learning"] == pytest.approx(summary["learning"][-1])
    assert out["wer_new_domain"] == R[3][2]
    assert "im" not in out and "fwt_mean" not in out


def test_budget_frame_and_text_matrix() -> None:
    frame = budget_frame(
        [
            {"experience": 2, "layer": "b", "trainable": 3},
            {"experience": 1, "layer": "a", "trainable": 5},
        ]
    )
    assert frame.experience.tolist() == [1, 2]
    text = format_matrix(metrics.forgetting_matrix(R).tolist(), DOMAINS, "F")
    assert text.splitlines()[2].split()[-1] == "-" and "28.8" in text


def test_comparison_table_and_seed_aggregate(tmp_path: Path) -> None:
    rows = [
        {
            "run": f"{s}-{seed}",
            "strategy": s,
            "adapter": s,
            "budget": 100.0,
            "seed": seed,
            "trainable_params": 90.0,
            "awer": a,
            "bwt": -a / 10,
            "learning_mean": 5.0,
            "forgetting_mean": 1.0 + seed,
            "forgetting_max": 2.0,
            "wer/adult": a,
        }
        for s, base in (("ssvdo", 10.0), ("lora", 20.0))
        for seed, a in ((0, base), (1, base + 2))
    ]
    frame = comparison_frame(rows)
    assert frame.columns[0] == "run" and frame.strategy.tolist() == [
        "lora",
        "lora",
        "ssvdo",
        "ssvdo",
    ]
    agg = aggregate_seeds(frame)
    ssvdo = agg[agg.strategy == "ssvdo"].iloc[0]
    assert ssvdo.awer == 11.0 and ssvdo.awer_std == pytest.approx(math.sqrt(2)) and ssvdo.seeds == 2
    files = write_comparison(frame, tmp_path, "t")
    assert {f.name for f in files} >= {
        "comparison.csv",
        "comparison.md",
        "comparison_by_seed.csv",
        "learning_vs_forgetting.png",
        "wer_vs_params.png",
    }
    assert "| ssvdo-0 |" in (tmp_path / "comparison.md").read_text()
    assert frame_to_text(frame).splitlines()[0].split()[:2] == ["run", "strategy"]


def test_logger_scalars_names_and_pickling(tmp_path: Path) -> None:
    recorder = RunRecorder(tmp_path / "run", None, offline=True)
    logger = MLflowLogger(recorder, params={"seed": 3})
    logger.log_single_metric("Top1 Acc?/eval", 0.5, 7)
    logger.log_single_metric("image", object(), 1)
    logger.log_single_metric("flag", True, 1)
    logger.log_eval_row(2, {"adult": {"wer": 12.5, "cer": 4.0}})
    rows = RunDir(tmp_path / "run").metrics()
    assert [(r["key"], r["value"], r["step"]) for r in rows] == [
        ("Top1 Acc_/eval", 0.5, 7),
        ("wer/adult", 12.5, 2),
        ("cer/adult", 4.0, 2),
    ]
    assert RunDir(tmp_path / "run").read_json("params.json") == {"seed": "3"}
    clone = pickle.loads(pickle.dumps(logger))
    assert clone.recorder is None and clone.global_epoch == 0


def test_logger_maps_avalanche_wer_metrics_to_domains(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from avalanche.evaluation.metric_results import MetricValue

    recorder = RunRecorder(tmp_path / "run", None, offline=True)
    logger = MLflowLogger(recorder)
    strategy = SimpleNamespace(
        experience=SimpleNamespace(current_experience=1, domain="child"),
        clock=SimpleNamespace(train_exp_counter=2),
    )
    values = [
        MetricValue(None, "WER_Exp/eval_phase/test_stream/Exp001", 33.0, 10),
        MetricValue(None, "CER_Exp/eval_phase/test_stream/Exp001", 9.0, 10),
        MetricValue(None, "Loss_Exp/eval_phase/test_stream/Exp001", 1.5, 10),
    ]
    logger.after_eval_exp(strategy, values)
    rows = RunDir(tmp_path / "run").metrics()
    assert {(r["key"], r["value"], r["step"]) for r in rows} == {
        ("wer/child", 33.0, 2),
        ("cer/child", 9.0, 2),
    }


def test_run_params_have_config_git_versions_seed() -> None:
    params = run_params({"train": {"lr": 0.1}, "seeds": [1]}, seed=1)
    assert params["config.train.lr"] == "0.1" and params["seed"] == "1"
    assert "git.commit" in params and "git.dirty" in params
    assert package_versions()["version.mlflow"] == params["version.mlflow"] != "not installed"
