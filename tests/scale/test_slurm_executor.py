"""The Slurm executor through submitit: the micro sweep as a job array with a concurrency
limit, on a real single-node Slurm cluster (slurmctld + slurmd + munged from Debian's
slurm-wlm, started here on 127.0.0.1) when its programs are installed, else through submitit's
local executor (the same job pickles, subprocesses instead of sbatch). A job interrupted as on
preemption is requeued by submitit and resumes its run folder from the checkpoint."""

from __future__ import annotations

import json
import pickle
import time

import pytest
from mlflow.tracking import MlflowClient

from experiments.executors import read_attempts
from experiments.executors.slurm import ResumableChild, SlurmExecutor
from experiments.sweep import run_sweep
from tests.scale.slurm_cluster import slurm_available, start_slurm

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slurm():
    """``"slurm"`` with a running single-node cluster, else ``"local"``."""
    if not slurm_available():
        yield "local", None
        return
    cluster = start_slurm()
    try:
        yield "slurm", cluster
    finally:
        cluster.stop()


def test_parameters_and_requeue_callable() -> None:
    ex = SlurmExecutor({"partition": "gpu", "time_min": 90, "gpus_per_node": 2,
                        "array_parallelism": 3, "additional_parameters": {"qos": "low"}})  # fmt: skip
    params = ex.parameters()
    assert params["slurm_partition"] == "gpu" and params["timeout_min"] == 90
    assert params["gpus_per_node"] == 2 and params["slurm_array_parallelism"] == 3
    assert params["slurm_additional_parameters"] == {"qos": "low"}
    # on preemption submitit pickles what checkpoint() returns and requeues it
    delayed = ResumableChild().checkpoint("job")
    again = pickle.loads(pickle.dumps(delayed))
    assert isinstance(again.function, ResumableChild) and again.args == ("job",)


def test_micro_sweep_as_a_job_array(micro_sweep, slurm, tmp_path) -> None:
    cluster, handle = slurm
    uri = f"sqlite:///{(tmp_path / 'slurm.db').as_posix()}"
    settings = {"cluster": cluster, "array_parallelism": 2, "time_min": 20, "cpus_per_task": 1}
    if handle is not None:
        settings["partition"] = handle.partition
    result = run_sweep(
        micro_sweep(tmp_path / "w"),
        tracking_uri=uri,
        progress=False,
        executor={"kind": "slurm", "slurm": settings},
    )
    client = MlflowClient(uri)
    parent = client.get_run(result.parent_run_id)
    assert parent.data.tags["cl_ssvdo.executor"] == "slurm"
    kids = client.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'"
    )
    assert sorted(r.info.run_name for r in kids) == ["lora-b8000-s0", "ssvdo-b8000-s0"]
    assert all(r.info.status == "FINISHED" for r in kids)
    for child in result.children:
        assert len(child.wer) == 4 and len(read_attempts(child.run_dir)) == 1
    # resubmitted: finished children come back without a new job attempt
    again = run_sweep(micro_sweep(tmp_path / "w"), tracking_uri=uri, progress=False,
                      executor={"kind": "slurm", "slurm": settings})  # fmt: skip
    assert again.parent_run_id == result.parent_run_id
    assert all(len(read_attempts(c.run_dir)) == 1 for c in again.children)


def test_preempted_job_is_requeued_and_resumes(tiny_config, slurm, tmp_path) -> None:
    from experiments.executors import ChildJob

    cluster, handle = slurm
    cfg = tiny_config("ssvdo", {"workdir": str(tmp_path / "w"), "train.max_steps": 4})
    run_dir = tmp_path / "w" / "runs" / "preempted"
    uri = f"sqlite:///{(tmp_path / 'p.db').as_posix()}"
    job = ChildJob(cfg, 0, str(run_dir), "preempted", tracking_uri=uri)
    settings = {"cluster": cluster, "time_min": 20, "folder": str(tmp_path / "submitit")}
    if handle is not None:
        settings["partition"] = handle.partition
    (submitted,) = SlurmExecutor(settings).submit([job])
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        state = run_dir / "state.json"
        if state.is_file() and json.loads(state.read_text() or "{}").get("completed", -1) >= 1:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the job never finished its first experience")
    submitted._interrupt()  # what Slurm sends on preemption (SIGTERM, then USR2)
    if handle is not None:
        handle.skip_requeue_delay(submitted.job_id)
    result = submitted.result()
    attempts = read_attempts(run_dir)
    assert len(attempts) == 2 and attempts[1]["resumed_from"] is not None
    assert attempts[1]["resumed_from"] >= 0 and len(result.wer) == 4
    run = MlflowClient(uri).get_run(result.run_id)
    assert run.info.status == "FINISHED"
    history = MlflowClient(uri).get_metric_history(result.run_id, "wer/adult")
    assert sorted(m.step for m in history) == [0, 1, 2, 3]
