"""``cl-ssvdo server``'s parts on real engines: a throwaway PostgreSQL cluster (``initdb`` in a
temporary folder, a random loopback port) as the MLflow backend store, an ``mlflow server``
with proxied artifacts in front of it; a sweep logs there through HTTP only, and restarting the
MLflow server in the middle of the sweep loses no result."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from experiments.server import PostgresCluster, find_pg_bin, start_server
from experiments.sweep import run_sweep
from tests.scale.conftest import free_port

pytestmark = pytest.mark.slow

try:
    find_pg_bin()
    HAVE_PG = True
except FileNotFoundError:
    HAVE_PG = False


class Server:
    """The MLflow server process over the PostgreSQL store, restartable on its port."""

    def __init__(self, backend: str, artifacts: Path) -> None:
        self.backend, self.artifacts, self.port = backend, artifacts, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process = start_server(backend, artifacts, port=self.port)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)

    def restart(self) -> None:
        self.stop()
        self.process = start_server(self.backend, self.artifacts, port=self.port)


@pytest.fixture(scope="module")
def pg_server():
    if not HAVE_PG:
        pytest.skip("PostgreSQL server binaries not installed (scripts/setup.sh installs them)")
    # not under pytest's 0700 tmp tree: as root the cluster runs as the postgres user
    root = Path(tempfile.mkdtemp(prefix="cl-ssvdo-pg-"))
    root.chmod(0o755)
    cluster = PostgresCluster(root / "data", port=free_port())
    server = None
    try:
        assert cluster.init()
        cluster.start()
        server = Server(cluster.uri(), root / "artifacts")
        yield cluster, server
    finally:
        if server is not None:
            server.stop()
        if (cluster.data_dir / "postmaster.pid").exists():
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def _restart_when_first_child_is_midway(workdir: Path, server: Server, done: list[float]):
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        for state in workdir.glob("sweeps/*/runs/*/state.json"):
            try:
                if '"completed": 1' in state.read_text():
                    server.restart()
                    done.append(time.monotonic())
                    return
            except OSError:
                pass
        time.sleep(0.05)


def test_sweep_logs_to_postgres_server_and_survives_a_restart(micro_sweep, pg_server, tmp_path):
    cluster, server = pg_server
    restarted: list[float] = []
    watcher = threading.Thread(
        target=_restart_when_first_child_is_midway,
        args=(tmp_path / "w", server, restarted),
        daemon=True,
    )
    watcher.start()
    result = run_sweep(micro_sweep(tmp_path / "w"), tracking_uri=server.uri, progress=False)
    watcher.join(timeout=120)
    assert restarted, "the server was never restarted mid-sweep"

    client = MlflowClient(server.uri)
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.info.artifact_uri.startswith("mlflow-artifacts:")  # proxied, no shared FS
    assert "comparison.csv" in {a.path for a in client.list_artifacts(result.parent_run_id)}
    exp = parent.info.experiment_id
    kids = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'")
    finished = {r.info.run_name: r for r in kids if r.info.status == "FINISHED"}
    assert sorted(finished) == ["lora-b8000-s0", "ssvdo-b8000-s0"]
    for child in result.children:
        run = finished[child.name]
        assert run.info.run_id == child.run_id and child.synced
        for j, domain in enumerate(child.domains):  # every row of the WER matrix, none lost
            history = {m.step: m.value for m in client.get_metric_history(child.run_id,
                                                                          f"wer/{domain}")}  # fmt: skip
            assert sorted(history) == [0, 1, 2, 3]
            assert [history[i] for i in range(4)] == pytest.approx([row[j] for row in child.wer])
        assert "wer_matrix.png" in {a.path for a in client.list_artifacts(child.run_id)}
    # and it is all in PostgreSQL: a new server over the same database sees it
    server.restart()
    again = MlflowClient(server.uri).get_run(result.parent_run_id)
    assert again.data.params == parent.data.params
    assert cluster.uri().startswith("postgresql")
