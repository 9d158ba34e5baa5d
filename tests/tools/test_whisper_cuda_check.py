"""The Whisper GPU check runs end to end on CPU with a tiny model: SSVD-O injected on fc1/fc2,
teacher-forced steps, decoding and an exact merge."""

import json

import pytest

from tools import whisper_cuda_check


@pytest.mark.slow
def test_cpu_smoke_trains_decodes_and_merges(capsys, one_thread) -> None:
    whisper_cuda_check.main(["--cpu-smoke"])
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["finite"] and row["adapter"] == "ssvdo" and row["trainable"] > 0
    assert row["syncs_per_step_after_warmup"] == [0] * len(row["syncs_per_step_after_warmup"])
    assert row["merge_rel_change_of_encoder_output"] < 1e-5
    assert len(row["decoded_lengths"]) == 2
