"""Doc step: screenshot the MLflow UI showing one run's artifacts, to prove they render.

Pushes a finished run folder into a fresh SQLite store, starts ``mlflow ui`` on 127.0.0.1,
waits for ``/health``, opens the run's artifact page (the WER-matrix heatmap selected) in
headless Chromium (Debian package ``chromium``, a fresh profile, no network services) and saves
a PNG. Not part of the test suite (it needs Chromium)::

    python -m experiments.screenshot RUN_DIR --out docs/img/mlflow_run_artifacts.png
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from experiments.recorder import RunDir, sync_run_dir
from experiments.tracking import get_client, ui_command

__all__ = ["chromium_binary", "main", "screenshot_run"]

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


def chromium_binary() -> str | None:
    """The Chromium executable on PATH, if any."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"mlflow ui at {url} did not answer /health within {timeout:.0f} s")


def screenshot_run(
    run_dir: str | Path,
    out: str | Path,
    artifact: str = "wer_matrix.png",
    width: int = 1600,
    height: int = 1000,
    wait_ms: int = 20000,
) -> Path:
    """Screenshot of ``run_dir``'s artifact page (``artifact`` selected) as a PNG at ``out``."""
    browser = chromium_binary()
    if browser is None:
        raise FileNotFoundError("chromium is not installed (Debian: apt-get install chromium)")
    if not RunDir(run_dir).is_run_dir():
        raise FileNotFoundError(f"{run_dir} is not a run folder")
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        # A copy, so syncing into the temporary store leaves the original folder's state alone.
        folder = Path(tmp) / "run"
        shutil.copytree(run_dir, folder, ignore=shutil.ignore_patterns("checkpoints"))
        store = f"sqlite:///{Path(tmp, 'store', 'mlflow.db').as_posix()}"
        run_id = sync_run_dir(folder, store, force=True)
        experiment_id = get_client(store).get_run(run_id).info.experiment_id
        port = _free_port()
        server = subprocess.Popen(
            ui_command(store, Path(tmp, "store"), "127.0.0.1", port),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_healthy(base)
            url = f"{base}/#/experiments/{experiment_id}/runs/{run_id}/artifacts/{artifact}"
            profile = Path(tmp, "chromium-profile")
            subprocess.run(
                [
                    browser,
                    *CHROMIUM_FLAGS,
                    f"--user-data-dir={profile}",
                    f"--window-size={width},{height}",
                    f"--virtual-time-budget={wait_ms}",
                    f"--screenshot={out}",
                    url,
                ],
                check=True,
                timeout=180,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
    if not out.is_file() or out.read_bytes()[:4] != b"\x89PNG":
        raise RuntimeError(f"chromium wrote no PNG at {out}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.screenshot", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("run_dir", help="a finished run folder (<workdir>/runs/...)")
    parser.add_argument("--out", default="docs/img/mlflow_run_artifacts.png")
    parser.add_argument("--artifact", default="wer_matrix.png", help="artifact to select")
    args = parser.parse_args(argv)
    path = screenshot_run(args.run_dir, args.out, args.artifact)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
