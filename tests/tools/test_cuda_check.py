"""The CUDA check script runs its own checks end to end on CPU (tiny shapes) and refuses
nothing silently: a failed check makes a non-zero exit."""

import json

from tools import cuda_check


def test_cpu_smoke_run_checks_start_merge_and_finiteness(capsys) -> None:
    assert cuda_check.main(["--cpu-smoke"]) == 0
    rows = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")
    ]
    assert [r["path"] for r in rows] == cuda_check.PATHS
    for row in rows:
        assert row["start_rel_err"] < 1e-6 and row["unmerge_bit_exact"] and row["finite"]
        assert row["merge_max_err"] < 1e-5 and row["bf16_rel_err_vs_fp64_cpu"] < 5e-2
