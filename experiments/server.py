"""``cl-ssvdo server``: an MLflow tracking server for a group, with a PostgreSQL backend store
and proxied artifact access (workers send artifacts through the server, so they need no shared
file system and no object-store credentials).

Backend: ``--backend-store-uri postgresql://user:pass@host:5432/mlflow`` (an existing
database), or ``--postgres-dir DIR``: a PostgreSQL cluster of this machine's PostgreSQL
binaries in ``DIR`` (created with ``initdb`` on first use, started with ``pg_ctl``, listening on
``--postgres-host``:``--postgres-port``). SQLite stays the embedded default of single-machine
runs (``tracking.uri: null``). Artifacts: ``--artifacts-destination`` (a folder, or
``s3://...`` etc.), served by the server under ``mlflow-artifacts:/``.

>>> mlflow_server_command("postgresql://m@127.0.0.1:5432/mlflow", "/srv/a", "0.0.0.0", 5000)[3:5]
['server', '--backend-store-uri']
>>> PostgresCluster("/srv/pg", port=5433).uri()
'postgresql+psycopg2://mlflow@127.0.0.1:5433/mlflow'
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "PostgresCluster",
    "find_pg_bin",
    "mlflow_server_command",
    "start_server",
    "wait_healthy",
]

PG_SEARCH = ("/usr/lib/postgresql/*/bin",)


def find_pg_bin() -> Path:
    """The folder of ``initdb``/``pg_ctl``: ``$PG_BIN``, else ``PATH``, else Debian's layout."""
    if os.environ.get("PG_BIN"):
        return Path(os.environ["PG_BIN"])
    found = shutil.which("initdb")
    if found and (Path(found).resolve().parent / "psql").is_file():
        return Path(found).resolve().parent  # PATH may hold links to only some of them
    candidates = sorted(p for pattern in PG_SEARCH for p in Path("/").glob(pattern.lstrip("/"))
                        if (p / "initdb").is_file())  # fmt: skip
    if not candidates:
        raise FileNotFoundError(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's postgresql "
            "(scripts/setup.sh does) or set PG_BIN"
        )
    return candidates[-1]


class PostgresCluster:
    """A PostgreSQL cluster in one folder, owned by ``os_user`` (PostgreSQL refuses to run as
    root; as root the server programs run as ``postgres`` through ``runuser``). Loopback-only
    with ``trust`` authentication unless ``host``/``auth`` say otherwise."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        port: int = 5432,
        host: str = "127.0.0.1",
        user: str = "mlflow",
        database: str = "mlflow",
        auth: str = "trust",
        os_user: str = "postgres",
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port, self.host, self.user, self.database, self.auth = port, host, user, database, auth
        self.os_user = os_user if os.geteuid() == 0 else None

    def uri(self) -> str:
        return f"postgresql+psycopg2://{self.user}@{self.host}:{self.port}/{self.database}"

    def _as_owner(self, cmd: list[str]) -> list[str]:
        return ["runuser", "-u", self.os_user, "--", *cmd] if self.os_user else cmd

    def _run(self, cmd: list[str]) -> None:
        out = subprocess.run(self._as_owner(cmd), capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd[:2])} failed ({out.returncode}): {out.stderr[-2000:]}"
            )

    def init(self) -> bool:
        """``initdb`` unless the folder already holds a cluster; True when one was created."""
        if (self.data_dir / "PG_VERSION").is_file():
            return False
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        if self.os_user:
            shutil.chown(self.data_dir, self.os_user, self.os_user)
        bin_dir = find_pg_bin()
        self._run([str(bin_dir / "initdb"), "-D", str(self.data_dir), "-U", self.user,
                   f"--auth={self.auth}", "-E", "UTF8", "--no-instructions"])  # fmt: skip
        return True

    def start(self, timeout: float = 120) -> None:
        """Start the server (``pg_ctl -w``) and create the database if missing."""
        bin_dir = find_pg_bin()
        opts = (f"-p {self.port} -c listen_addresses={self.host} "
                f"-c unix_socket_directories={self.data_dir}")  # fmt: skip
        self._run([str(bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l",
                   str(self.data_dir / "server.log"), "-o", opts, "-w", "-t", str(int(timeout)),
                   "start"])  # fmt: skip
        exists = subprocess.run(
            [str(bin_dir / "psql"), "-h", self.host, "-p", str(self.port), "-U", self.user,
             "-d", "postgres", "-tAc", f"SELECT 1 FROM pg_database WHERE datname='{self.database}'"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        if exists != "1":
            subprocess.run(
                [str(bin_dir / "createdb"), "-h", self.host, "-p", str(self.port), "-U",
                 self.user, self.database], check=True, capture_output=True,
            )  # fmt: skip

    def stop(self) -> None:
        self._run([str(find_pg_bin() / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w",
                   "stop"])  # fmt: skip


def mlflow_server_command(
    backend_store_uri: str,
    artifacts_destination: str,
    host: str,
    port: int,
    workers: int | None = None,
) -> list[str]:
    """``mlflow server`` with the given backend store and proxied artifact access."""
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_store_uri,
           "--serve-artifacts", "--artifacts-destination", artifacts_destination,
           "--host", host, "--port", str(port)]  # fmt: skip
    if workers:
        cmd += ["--workers", str(workers)]
    return cmd


def wait_healthy(url: str, timeout: float = 180, process: subprocess.Popen | None = None) -> None:
    """Wait until ``url``/health answers 200; raises ``TimeoutError`` (or ``RuntimeError`` if
    ``process`` exits first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"mlflow server at {url} did not answer within {timeout:.0f} s")


def start_server(
    backend_store_uri: str,
    artifacts_destination: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 5000,
    workers: int | None = None,
    log: str | Path | None = None,
    timeout: float = 180,
) -> subprocess.Popen:
    """Start ``mlflow server`` and wait until it is healthy; the caller stops it."""
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 (kept by the child)
    cmd = mlflow_server_command(backend_store_uri, str(artifacts_destination), host, port, workers)
    server = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}", timeout, server)
    except BaseException:
        server.kill()
        raise
    return server


def build_parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(prog="cl-ssvdo server", description=__doc__.split("\n\n")[0])
    p.add_argument("--backend-store-uri", default=None,
                   help="an existing store, e.g. postgresql://user:pass@db:5432/mlflow")  # fmt: skip
    p.add_argument("--postgres-dir", default=None,
                   help="run a PostgreSQL cluster in this folder (initdb on first use)")  # fmt: skip
    p.add_argument("--postgres-port", type=int, default=5432)
    p.add_argument("--postgres-host", default="127.0.0.1")
    p.add_argument("--artifacts-destination", default="./mlartifacts",
                   help="where the server stores artifacts (folder or s3://...)")  # fmt: skip
    p.add_argument("--serve-artifacts", action="store_true", default=True,
                   help="proxied artifact access (always on: workers need no shared storage)")  # fmt: skip
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve other machines")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--workers", type=int, default=None, help="server worker processes")
    return p


def main(argv: Sequence[str] | None = None, args: argparse.Namespace | None = None) -> int:
    """Run the server in the foreground until interrupted (then stop PostgreSQL if started)."""
    args = args or build_parser().parse_args(argv)
    if bool(args.backend_store_uri) == bool(args.postgres_dir):
        print("cl-ssvdo server: give --backend-store-uri or --postgres-dir", file=sys.stderr)
        return 2
    cluster = None
    uri = args.backend_store_uri
    if args.postgres_dir:
        cluster = PostgresCluster(args.postgres_dir, port=args.postgres_port,
                                  host=args.postgres_host)  # fmt: skip
        cluster.init()
        cluster.start()
        uri = cluster.uri()
        print(f"PostgreSQL backend store: {uri} (data in {cluster.data_dir})")
    dest = args.artifacts_destination
    if "://" not in dest:
        dest = str(Path(dest).absolute())
    server = None
    try:
        server = start_server(uri, dest, host=args.host, port=args.port, workers=args.workers)
        print(f"MLflow server: http://{args.host}:{args.port} (artifacts proxied to {dest}); "
              f"workers: --tracking-uri http://<this host>:{args.port}")  # fmt: skip
        signal.signal(signal.SIGTERM, lambda *_: server.terminate())
        return server.wait()
    except KeyboardInterrupt:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        return 0
    finally:
        if cluster is not None:
            cluster.stop()
