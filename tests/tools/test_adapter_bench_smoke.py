"""The adapter speed benchmark runs end to end on tiny shapes and reports every ratio (no timing
asserts), without verdicts on smoke shapes."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tools import adapter_bench

ROOT = Path(__file__).resolve().parents[2]


def test_quick_benchmark_reports_every_ratio(capsys) -> None:
    report = adapter_bench.main(["--quick", "--threads", "1"])
    out = capsys.readouterr().out
    for row in (
        "ratio SSVD-O measured / MAC bound, worst share",
        "ratio full-factor step / SSVD-O step",
        "ratio merged inference / base",
        "ratio set-up / full SVD",
        "ratio SSVD-O peak memory / LoRA, worst share",
        "ratio adapter buffers / frozen weight bytes",
        "| MAC bound (x frozen) | measured / bound |",
    ):
        assert row in out
    # Smoke shapes say nothing about speed: no verdict either way.
    assert "MISSES" not in out and "meets" not in out and "n/a (smoke)" in out
    (stack,) = report["stacks"]
    labels = [r["variant"] for r in stack["rows"]]
    assert labels[0] == "frozen" and labels[1].startswith("peft LoRA")
    assert sum(label.startswith("SSVD-O inner share") for label in labels) == 5
    assert labels[-1].startswith("full-factor")
    # Equal budgets: every adapter spends at most the budget, LoRA exactly its matched count.
    assert all(r["trainable"] <= stack["budget"] for r in stack["rows"])
    assert stack["rows"][1]["trainable"] == stack["lora_count"]
    assert all(r["step_ms"] > 0 and r["peak_mb"] > 0 for r in stack["rows"])
    # The bound column is the MAC ratio; measured / bound divides the step ratio by it.
    for r in stack["rows"]:
        assert r["step_vs_bound"] == pytest.approx(r["step_vs_frozen"] / r["macs_vs_frozen"])
    # Merging is exact: the merged model is the same architecture as the base.
    assert 0 < stack["ratios"]["merged_inference_vs_base"] < 10


def test_stack_shapes_include_whisper_tiny_and_the_small_conformer() -> None:
    whisper, conformer = (
        adapter_bench.STACKS["whisper-tiny"],
        adapter_bench.STACKS["conformer-small"],
    )
    assert (whisper.d, whisper.ffn, whisper.blocks) == (384, 1536, 8)
    assert (conformer.d, conformer.ffn, conformer.blocks) == (144, 576, 8)


def test_hybrid_macs_sit_between_frozen_and_lowrank() -> None:
    shapes, tokens = [(4096, 1024)], 2048
    frozen = adapter_bench.arithmetic_macs("frozen", shapes, tokens)
    low = adapter_bench.arithmetic_macs("ssvdo", shapes, tokens, [(286, 27, "lowrank")])
    hyb = adapter_bench.arithmetic_macs("ssvdo", shapes, tokens, [(286, 27, "hybrid")])
    assert frozen < hyb < low


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: nothing to refuse")
def test_cuda_mode_refuses_clearly_without_a_gpu() -> None:
    with pytest.raises(SystemExit, match="no CUDA device here"):
        adapter_bench.main(["--quick", "--device", "cuda"])


def test_runs_as_a_module_from_the_repository_root() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tools.adapter_bench", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "--device" in done.stdout


def test_stat_reduces_every_row_by_the_chosen_statistic() -> None:
    """``--stat min`` reaches every row (the statistic is passed down, not a module global)."""
    from tools.adapter_bench.shapes import QUICK
    from tools.adapter_bench.stack import bench_stack

    common = dict(
        budget_params=None,
        lora_rank=4,
        shares=[0.5],
        default_share=0.5,
        warmup=0,
        repeats=3,
        device=torch.device("cpu"),
        peer_shares=[],
        seed=0,
        log=lambda _: None,
    )
    for stat in (min, max):
        result = bench_stack(QUICK, **common, stat=stat)
        for row in result["rows"]:
            assert len(row["step_ms_all"]) == 3
            assert row["step_ms"] == stat(row["step_ms_all"])


def test_setup_only_prints_one_row_per_stack(capsys) -> None:
    report = adapter_bench.main(["--quick", "--setup-only", "--threads", "1"])
    out = capsys.readouterr().out
    assert "| set-up / SVD | randomised / SVD |" in out and "| quick (" in out
    (row,) = report["setup"]
    assert set(row["vs_full_svd"]) == {"ssvdo", "ssvdo_randomized", "complement", "full_svd"}
    assert row["routes"] == ["qr-float64"]  # the tiny layers: J covers most of the spectrum
