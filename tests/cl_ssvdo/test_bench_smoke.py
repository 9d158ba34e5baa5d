"""The benchmark runs end to end on tiny shapes and reports every ratio (no timing asserts)."""

from cl_ssvdo import bench


def test_quick_benchmark_reports_every_ratio(capsys) -> None:
    report = bench.main(["--quick", "--threads", "1"])
    out = capsys.readouterr().out
    for row in (
        "ratio SSVD-O step / LoRA step",
        "ratio full-factor step / SSVD-O step",
        "ratio merged inference / base",
        "ratio set-up / full SVD",
        "ratio adapter buffers / frozen weight bytes",
    ):
        assert row in out
    (stack,) = report["stacks"]
    labels = [r["variant"] for r in stack["rows"]]
    assert labels[0] == "frozen" and labels[1].startswith("peft LoRA")
    assert sum(label.startswith("SSVD-O inner share") for label in labels) == 5
    assert labels[-1].startswith("full-factor")
    # Equal budgets: every adapter spends at most the budget, LoRA exactly its matched count.
    assert all(r["trainable"] <= stack["budget"] for r in stack["rows"])
    assert stack["rows"][1]["trainable"] == stack["lora_count"]
    assert all(r["step_ms"] > 0 and r["peak_mb"] > 0 for r in stack["rows"])
    # Merging is exact: the merged model is the same architecture as the base.
    assert 0 < stack["ratios"]["merged_inference_vs_base"] < 10
