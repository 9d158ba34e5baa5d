"""The tracking store fails fast and survives concurrency; `sync` survives a torn metric line.

Faults are real files: random bytes, a half-truncated MLflow database; concurrency is real
processes on one new SQLite store and on one run folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from experiments.cli import main
from experiments.recorder import RunRecorder, sync_run_dir
from experiments.run_dir import RunDir, RunFolderBusyError
from experiments.tracking import TrackingStoreError, check_tracking

ROOT = Path(__file__).resolve().parents[2]


def _uri(path: Path) -> str:
    return f"sqlite:///{path.as_posix()}"


def _half_truncated(tmp_path: Path) -> Path:
    db = tmp_path / "half" / "mlflow.db"
    check_tracking(_uri(db))  # a real, migrated store
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])
    return db


def _random_bytes(tmp_path: Path) -> Path:
    db = tmp_path / "rnd" / "mlflow.db"
    db.parent.mkdir()
    db.write_bytes(bytes(range(256)) * 64)
    return db


@pytest.mark.parametrize("make", [_random_bytes, _half_truncated])
def test_broken_store_is_named_before_any_work(make, tmp_path, capsys) -> None:
    db = make(tmp_path)
    with pytest.raises(TrackingStoreError) as err:
        check_tracking(_uri(db))
    assert str(db) in str(err.value) and "Fix:" in str(err.value)
    workdir = tmp_path / "work"
    rc = main(
        ["--quiet", "run", "naive", "--set", f"workdir={workdir}", "--tracking-uri", _uri(db)]
    )
    assert rc == 3
    message = capsys.readouterr().err
    assert str(db) in message and "Fix:" in message and "Traceback" not in message
    assert not (workdir / "runs").exists()  # nothing started


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux setpriv")
@pytest.mark.parametrize(
    ("db_mode", "folder_mode", "named", "says"),
    [
        (0o444, 0o777, "mlflow.db", "Fix: chmod u+rw"),  # the file is read-only
        (0o444, 0o755, "", "not writable"),  # so is its folder: the folder is named
        (
            0o666,
            0o777,
            "mlflow.db.lock",
            "Fix: let every user of the store write it",
        ),  # another's lock
    ],
)
def test_read_only_store_is_named_before_any_work(
    db_mode: int, folder_mode: int, named: str, says: str
) -> None:
    """A store another user made, used by a user who may not write what it needs: exit 3, the
    path and the fix, no traceback, nothing started. Root ignores file modes, so under root the
    run is made as an unprivileged user."""
    home = Path(tempfile.mkdtemp(prefix="ro-store-"))  # pytest's tmp_path is private to root
    try:
        db = home / "mlflow.db"
        check_tracking(_uri(db))  # a real, migrated store
        db.chmod(db_mode)
        if named.endswith(".lock"):  # not writable by the user, whoever runs the suite
            (home / named).chmod(0o444)
        home.chmod(folder_mode)
        prefix = []
        if os.geteuid() == 0:
            prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        workdir = Path(tempfile.mkdtemp(prefix="ro-work-"))
        workdir.chmod(0o777)
        cli = [sys.executable, "-m", "experiments.cli", "--quiet", "run", "naive"]
        proc = subprocess.run(
            [*prefix, *cli, "--set", f"workdir={workdir}", "--tracking-uri", _uri(db)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "HOME": str(workdir), "PYTHONPATH": str(ROOT)},
        )
        assert proc.returncode == 3, proc.stdout + proc.stderr
        assert str(home / named) in proc.stderr and "Traceback" not in proc.stderr
        assert says in proc.stderr
        assert not (workdir / "runs").exists()
        shutil.rmtree(workdir, ignore_errors=True)
    finally:
        shutil.rmtree(home, ignore_errors=True)


_RECORD = textwrap.dedent(
    """
    import sys
    from experiments.recorder import RunRecorder
    from experiments.tracking import check_tracking
    uri, folder = sys.argv[1], sys.argv[2]
    check_tracking(uri)
    rec = RunRecorder(folder, uri, "race", folder, check=False)
    rec.log_metrics({"m": 1.0}, step=0)
    rec.finish("FINISHED")
    """
)


def test_runs_started_at_once_on_a_new_store_all_finish(tmp_path) -> None:
    uri = _uri(tmp_path / "new" / "mlflow.db")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RECORD, uri, str(tmp_path / "runs" / f"r{i}")],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    errors = [p.communicate(timeout=240)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("race").experiment_id])
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    assert all(len(client.get_metric_history(r.info.run_id, "m")) == 1 for r in runs)


_HOLD = textwrap.dedent(
    """
    import sys
    from experiments.run_dir import RunDir, RunFolderBusyError
    try:
        with RunDir(sys.argv[1]).lock(wait=False):
            print("got it")
    except RunFolderBusyError as exc:
        print(exc)
        sys.exit(4)
    """
)


def test_a_second_process_on_the_same_run_folder_is_refused_or_waits(tmp_path) -> None:
    folder = RunDir(tmp_path / "runs" / "same")
    with folder.lock():
        busy = subprocess.run(
            [sys.executable, "-c", _HOLD, str(folder.path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    assert busy.returncode == 4 and "is in use by process" in busy.stdout
    free = subprocess.run(
        [sys.executable, "-c", _HOLD, str(folder.path)], cwd=ROOT, capture_output=True, text=True
    )
    assert free.returncode == 0 and "got it" in free.stdout
    with folder.lock(), pytest.raises(RunFolderBusyError):
        with RunDir(folder.path).lock(wait=False):
            pass


def _offline_folder(tmp_path: Path) -> RunDir:
    folder = tmp_path / "runs" / "offline"
    rec = RunRecorder(folder, None, "sync", "offline", offline=True)
    rec.log_params({"a": 1})
    for step in range(3):
        rec.log_metrics({"m": float(step)}, step=step)
    rec.finish("FINISHED")
    (folder / "config.yaml").write_text("name: x\n")
    return RunDir(folder)


def test_sync_skips_a_torn_last_line_and_leaves_no_running_run(tmp_path) -> None:
    folder = _offline_folder(tmp_path)
    with folder.metrics_file.open("a") as fh:
        fh.write('{"key": "m", "val')  # what a kill while logging leaves
    uri = _uri(tmp_path / "store" / "mlflow.db")
    with pytest.warns(RuntimeWarning, match="torn last line"):
        run_id = sync_run_dir(folder.path, uri)
    client = MlflowClient(uri)
    assert client.get_run(run_id).info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run_id, "m")] == [0, 1, 2]


def test_sync_of_a_corrupt_history_creates_no_orphan_run(tmp_path) -> None:
    folder = _offline_folder(tmp_path)
    lines = folder.metrics_file.read_text().splitlines()
    lines[1] = lines[1][:10]
    folder.metrics_file.write_text("\n".join(lines) + "\n")
    uri = _uri(tmp_path / "store" / "mlflow.db")
    with pytest.raises(ValueError, match=r"metrics.jsonl line 2"):
        sync_run_dir(folder.path, uri)
    client = MlflowClient(uri)
    running = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"attributes.status = '{RunStatus.to_string(RunStatus.RUNNING)}'",
    )
    assert running == []
    assert json.loads((folder.path / "state.json").read_text())["status"] == "FINISHED"
