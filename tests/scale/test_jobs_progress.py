"""Run-by-run progress of a batch of jobs (experiments.executors.progress): the checkpoint
after every run, the line, and an estimate that leaves read-back runs out."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from experiments.executors.progress import JobsProgress
from experiments.run_dir import RunDir


def test_the_checkpoint_is_on_disk_after_every_run(tmp_path: Path) -> None:
    folder = RunDir(tmp_path / "study").create()
    calls: list[int] = []

    def save() -> None:
        calls.append(1)
        folder.update_state(saved=len(calls))

    progress = JobsProgress("s", total=3, finished_before=frozenset(), checkpoint=save, show=False)
    for i in range(3):
        progress(i, None)
        assert RunDir(tmp_path / "study").state()["saved"] == i + 1  # read back from disk


def test_the_estimate_counts_only_computed_runs(capsys) -> None:
    progress = JobsProgress("sweep x", total=5, finished_before=frozenset({0, 1}),
                            checkpoint=None)  # fmt: skip
    progress(1, None)
    assert capsys.readouterr().out == "[sweep x] 1 of 5 runs finished (read back)\n"
    assert progress.eta_seconds() is None
    progress.started = time.monotonic() - 600.0  # ten minutes into the batch
    progress(3, None)  # computed
    progress(0, None)  # read back: no time of its own
    assert (progress.done, progress.computed) == (3, 1)
    # two runs left to compute (5 - 2 read back - 1 done), at ten minutes each
    assert abs(progress.eta_seconds() - 1200.0) < 5.0
    last = capsys.readouterr().out.splitlines()[-1]
    assert (
        last == "[sweep x] 3 of 5 runs finished; 1 computed now, 10.0 min each; about 20.0 min left"
    )


def test_unequal_jobs_are_estimated_by_their_cost() -> None:
    # two short runs (cost 1) and two four-times-longer runs; one short run read back
    progress = JobsProgress("study", total=4, finished_before=frozenset({0}), checkpoint=None,
                            show=False, costs=(1.0, 1.0, 4.0, 4.0))  # fmt: skip
    progress.started = time.monotonic() - 300.0  # five minutes for the one short run computed
    progress(0, None)
    progress(1, None)
    # eight units of cost left at five minutes a unit; counted by runs it would be ten minutes
    assert abs(progress.eta_seconds() - 2400.0) < 5.0
    progress.started = time.monotonic() - 1500.0
    progress(3, None)  # five units in 25 minutes: one long run left, 20 minutes
    assert abs(progress.eta_seconds() - 1200.0) < 5.0


def test_costs_must_match_the_jobs() -> None:
    with pytest.raises(ValueError, match="3 given for 2 jobs"):
        JobsProgress("s", total=2, finished_before=frozenset(), checkpoint=None,
                     costs=(1.0, 1.0, 1.0))  # fmt: skip
    with pytest.raises(ValueError, match="positive"):
        JobsProgress("s", total=2, finished_before=frozenset(), checkpoint=None,
                     costs=(1.0, 0.0))  # fmt: skip
