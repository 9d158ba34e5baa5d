"""Where runs are tracked: an explicit MLflow tracking URI and artifact location.

Precedence for the URI: ``--tracking-uri`` / ``tracking.uri`` in the config, then
``MLFLOW_TRACKING_URI``, then a SQLite store in the working dir (``sqlite:///<workdir>/mlflow.db``
with artifacts under ``<workdir>/mlartifacts``). A server that cannot be reached raises
:class:`TrackingUnreachableError` before any work starts; results are always written to the
run folder first, so nothing is lost and ``cl-ssvdo sync RUN_DIR`` pushes them later.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import os
import sqlite3
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

__all__ = [
    "TrackingStoreError",
    "TrackingUnreachableError",
    "check_tracking",
    "ensure_experiment",
    "get_client",
    "is_local_store",
    "resolve_artifact_location",
    "resolve_tracking_uri",
    "ui_command",
]

# A dead server should fail in seconds, not after MLflow's default seven retries with backoff.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")


class TrackingUnreachableError(RuntimeError):
    """The MLflow tracking store at ``uri`` cannot be reached (``reason`` says why)."""

    def __init__(self, uri: str, reason: str) -> None:
        self.uri = uri
        self.reason = reason
        super().__init__(
            f"MLflow tracking store {uri!r} is unreachable: {reason}. "
            "Start the server (or fix --tracking-uri / MLFLOW_TRACKING_URI), or run with "
            "--offline and push the run folder later with `cl-ssvdo sync RUN_DIR`."
        )


class TrackingStoreError(TrackingUnreachableError):
    """The local store file at ``path`` is unusable (read-only, not SQLite, corrupt); exit 3."""

    def __init__(self, uri: str, path: str | Path, problem: str, fix: str) -> None:
        self.uri = uri
        self.path = Path(path)
        self.reason = problem
        RuntimeError.__init__(self, f"MLflow tracking store {path} {problem}. Fix: {fix}.")


_SQLITE_MAGIC = b"SQLite format 3\x00"


@contextlib.contextmanager
def store_lock(db_path: str | Path) -> Iterator[None]:
    """An exclusive ``fcntl`` lock on ``<db>.lock``: one process at a time creates or migrates
    the store (MLflow's schema migration is not safe against a concurrent one)."""
    lock = Path(str(db_path) + ".lock")
    try:
        fh = lock.open("a")
    except PermissionError as exc:  # e.g. a store shared between users: the lock is another's
        raise TrackingStoreError(
            f"sqlite:///{db_path}",
            lock,
            "(the store's lock file) cannot be opened for writing",
            f"let every user of the store write it (chmod a+rw {lock}) or remove it",
        ) from exc
    with fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _check_sqlite_file(uri: str, path: Path) -> None:
    """Open an existing database file as SQLite and ask it to check itself."""
    other = "or point --tracking-uri / MLFLOW_TRACKING_URI at another file"
    if not os.access(path, os.R_OK | os.W_OK):
        raise TrackingStoreError(
            uri, path, "is not readable and writable", f"chmod u+rw {path} {other}"
        )
    size = path.stat().st_size
    if size == 0:
        return
    with path.open("rb") as fh:
        head = fh.read(16)
    if head != _SQLITE_MAGIC:
        raise TrackingStoreError(
            uri,
            path,
            "is not an SQLite database",
            f"move it away (MLflow creates a new one) {other}",
        )
    try:
        con = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=30)
        try:
            result = con.execute("PRAGMA quick_check").fetchone()
            con.execute("BEGIN IMMEDIATE")  # needs the write lock: a read-only file fails here
            con.rollback()
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise TrackingStoreError(
            uri,
            path,
            f"cannot be used ({exc})",
            f"restore it from a backup or move it away {other}",
        ) from exc
    if not result or result[0] != "ok":
        raise TrackingStoreError(
            uri,
            path,
            f"is corrupt (quick_check: {result[0] if result else '?'})",
            f"restore it from a backup or move it away {other}",
        )


def default_tracking_uri(workdir: str | Path) -> str:
    """``sqlite:///<absolute workdir>/mlflow.db``."""
    return f"sqlite:///{(Path(workdir).resolve() / 'mlflow.db').as_posix()}"


def resolve_tracking_uri(uri: str | None, workdir: str | Path) -> str:
    """The explicit ``uri``, else ``$MLFLOW_TRACKING_URI``, else the working dir's SQLite store."""
    if uri:
        return uri
    env = os.environ.get("MLFLOW_TRACKING_URI")
    return env if env else default_tracking_uri(workdir)


def is_local_store(uri: str) -> bool:
    """True for stores this machine writes directly (SQLite, file paths)."""
    scheme = urlparse(uri).scheme
    return scheme in ("sqlite", "file", "") or (len(scheme) == 1 and sys.platform == "win32")


def resolve_artifact_location(
    uri: str, workdir: str | Path, artifact_location: str | None = None
) -> str | None:
    """Artifact root for new experiments: explicit, else ``mlartifacts/`` next to a SQLite
    database (``<workdir>/mlartifacts`` for the default store) or in ``workdir`` for other local
    stores, else ``None`` (the server decides, e.g. ``mlflow-artifacts:/``)."""
    if artifact_location:
        return artifact_location
    if uri.startswith("sqlite:///") and uri[len("sqlite:///") :] not in ("", ":memory:"):
        return (Path(uri[len("sqlite:///") :]).resolve().parent / "mlartifacts").as_uri()
    if is_local_store(uri):
        return (Path(workdir).resolve() / "mlartifacts").as_uri()
    return None


def _check_http(uri: str, timeout: float) -> None:
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (user's URI)
            if response.status != 200:
                raise TrackingUnreachableError(uri, f"GET {url} answered HTTP {response.status}")
    except urllib.error.HTTPError as exc:
        raise TrackingUnreachableError(uri, f"GET {url} answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingUnreachableError(uri, f"GET {url} failed ({reason})") from exc


def _check_sqlite(uri: str) -> None:
    path = Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None
    if path is None or str(path) in ("", ":memory:"):
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrackingUnreachableError(uri, f"cannot create {path.parent} ({exc})") from exc
    if not os.access(path.parent, os.W_OK):
        raise TrackingUnreachableError(uri, f"{path.parent} is not writable")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        _check_sqlite_file(uri, path)  # names the file; no lock needed to say so
    with store_lock(path):
        if path.exists():
            _check_sqlite_file(uri, path)
        try:  # creates or migrates the schema, once, under the lock
            MlflowClient(uri).search_experiments(max_results=1)
        except Exception as exc:
            raise TrackingStoreError(
                uri,
                path,
                f"cannot be opened by MLflow ({type(exc).__name__}: {str(exc).splitlines()[0][:300]})",
                "restore it from a backup or move it away so a new store is created",
            ) from exc


def check_tracking(uri: str, timeout: float = 5.0) -> None:
    """Raise :class:`TrackingUnreachableError` unless the store at ``uri`` answers.

    http(s): ``GET <uri>/health`` (what ``mlflow server`` exposes); sqlite: the folder is
    writable, an existing file is a healthy, writable SQLite database
    (:class:`TrackingStoreError` naming the file and the fix otherwise), and the schema is
    created or migrated under :func:`store_lock`; anything else: one ``search_experiments`` call within ``timeout`` seconds.
    """
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        _check_http(uri, timeout)
    elif scheme == "sqlite":
        _check_sqlite(uri)
    elif scheme in ("file", ""):
        return
    else:
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        future = pool.submit(MlflowClient(uri).search_experiments, max_results=1)
        try:
            future.result(timeout=timeout)
        except concurrent.futures.TimeoutError as exc:
            raise TrackingUnreachableError(uri, f"no answer within {timeout:.0f} s") from exc
        except Exception as exc:  # the store's own error, whatever the backend
            raise TrackingUnreachableError(uri, f"{type(exc).__name__}: {exc}") from exc
        finally:
            pool.shutdown(wait=False)


def get_client(uri: str) -> MlflowClient:
    """An ``MlflowClient`` bound to ``uri`` (never to the process-wide default)."""
    return MlflowClient(tracking_uri=uri)


# MLflow 3's UI opens an experiment by its kind (the GenAI traces page for an untagged one):
# tagged as model development, it opens on the runs table. Values: the UI's ExperimentKind.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def ensure_experiment(client: MlflowClient, name: str, artifact_location: str | None = None) -> str:
    """The id of experiment ``name``: created (with ``artifact_location``) or restored if
    deleted; tagged as a model-training experiment unless it already has a kind."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        experiment_id = client.create_experiment(
            name, artifact_location=artifact_location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
        )
        return experiment_id
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    if EXPERIMENT_KIND_TAG not in experiment.tags:
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return experiment.experiment_id


def find_experiment_ids(client: MlflowClient, names: list[str] | None = None) -> list[str]:
    """Ids of the named experiments (all active experiments when ``names`` is None)."""
    if names:
        ids = []
        for name in names:
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise ValueError(f"no MLflow experiment named {name!r} in {client.tracking_uri}")
            ids.append(exp.experiment_id)
        return ids
    return [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]


def ui_command(
    uri: str, workdir: str | Path, host: str = "127.0.0.1", port: int = 5000
) -> list[str]:
    """The ``mlflow ui`` command line serving the project's store (and its artifacts)."""
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    artifacts = resolve_artifact_location(uri, workdir)
    if artifacts:
        cmd += ["--default-artifact-root", artifacts]
    return cmd + ["--host", host, "--port", str(port)]
