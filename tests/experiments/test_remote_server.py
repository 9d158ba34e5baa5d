"""Against a real ``mlflow server`` on 127.0.0.1: a run logs through HTTP (artifacts proxied by
the server), ``compare`` reads it back from the server only, and a server that dies during a
run loses nothing (the run goes on offline and is synced afterwards)."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from experiments.compare import compare_runs
from experiments.run_dir import RunDir
from experiments.runner import run_experiment
from experiments.sweep import sync_folder

pytestmark = pytest.mark.slow


def _start_server(folder: Path, port: int) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{(folder / 'server.db').as_posix()}",
        "--artifacts-destination",
        str(folder / "artifacts"),
    ]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    pytest.fail("mlflow server did not start within 180 s")


@pytest.fixture(scope="module")
def server_uri(tmp_path_factory: pytest.TempPathFactory):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = _start_server(tmp_path_factory.mktemp("server"), port)
    yield f"http://127.0.0.1:{port}", server
    if server.poll() is None:
        server.terminate()
        server.wait(timeout=30)


def test_run_and_compare_through_a_server(tiny_config, server_uri, tmp_path) -> None:
    uri, _ = server_uri
    result = run_experiment(
        tiny_config("naive", {"stream.domains": ["adult", "child"]}),
        0,
        tracking_uri=uri,
        progress=False,
    )
    assert result.synced
    client = MlflowClient(uri)
    run = client.get_run(result.run_id)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    assert "wer_matrix.png" in {a.path for a in client.list_artifacts(result.run_id)}
    compared = compare_runs(uri, experiments=["cl-ssvdo"], out_dir=tmp_path / "cmp")
    row = compared.frame.set_index("run_id").loc[result.run_id]
    assert row["awer"] == pytest.approx(result.summary["awer"])


def test_server_dying_mid_run_loses_nothing(
    tiny_config, server_uri, store_uri, monkeypatch
) -> None:
    uri, server = server_uri
    from strategies.template import CTCTemplate

    original = CTCTemplate.train

    def stop_server_then_train(self, experiences, *args, **kwargs):
        if experiences.current_experience == 1 and server.poll() is None:
            server.terminate()
            server.wait(timeout=30)
        return original(self, experiences, *args, **kwargs)

    monkeypatch.setattr(CTCTemplate, "train", stop_server_then_train)
    cfg = tiny_config("naive", {"stream.domains": ["adult", "child"], "name": "dies"})
    with pytest.warns(RuntimeWarning, match="continuing offline"):
        result = run_experiment(cfg, 0, tracking_uri=uri, progress=False)
    folder = RunDir(result.run_dir)
    assert folder.state()["status"] == "FINISHED" and not result.synced
    assert len(result.wer) == 3 and (folder.artifacts / "forgetting_matrix.png").is_file()
    steps = sorted(m["step"] for m in folder.metrics() if m["key"] == "wer/child")
    assert steps == [0, 1, 2]
    run_id = sync_folder(result.run_dir, store_uri)  # the server is gone: push elsewhere
    history = MlflowClient(store_uri).get_metric_history(run_id, "wer/child")
    assert sorted(m.step for m in history) == [0, 1, 2]
