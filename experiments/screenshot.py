"""Doc step: screenshot the MLflow UI showing one run's artifacts, to prove they render.

Pushes a finished run folder into a fresh SQLite store, starts ``mlflow ui`` on 127.0.0.1,
waits for ``/health``, opens the run's artifact page (the WER-matrix heatmap selected) in
headless Chromium (Debian package ``chromium``, a fresh profile, no network services) and saves
a PNG; ``--landing`` takes the experiment's landing page instead (Model training view, the
runs table). The landing page is also checked by ``tests/experiments/test_ui_landing.py``
(skipped without Chromium)::

    python -m experiments.screenshot RUN_DIR --out docs/img/mlflow_run_artifacts.png
    python -m experiments.screenshot RUN_DIR --landing --out docs/img/mlflow_landing.png
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from experiments.recorder import sync_run_dir
from experiments.run_dir import RunDir
from experiments.server import wait_healthy
from experiments.tracking import get_client, ui_command

__all__ = ["chromium_binary", "main", "screenshot_landing", "screenshot_run"]

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


# MLflow 3.17's UI has a GenAI / Model training switch (default GenAI, kept in the browser's
# localStorage `mlflow.workflowType`); this query selects Model training for the page opened.
WORKFLOW_QUERY = "workflowType=machine_learning"


def chromium_binary() -> str | None:
    """The Chromium executable on PATH, if any."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _require_chromium() -> str:
    """:func:`chromium_binary`, or ``FileNotFoundError`` saying how to install it."""
    browser = chromium_binary()
    if browser is None:
        raise FileNotFoundError("chromium is not installed (Debian: apt-get install chromium)")
    return browser


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def screenshot_run(
    run_dir: str | Path,
    out: str | Path,
    artifact: str = "wer_matrix.png",
    width: int = 1600,
    height: int = 1000,
    wait_ms: int = 20000,
) -> Path:
    """Screenshot of ``run_dir``'s artifact page (``artifact`` selected) as a PNG at ``out``."""
    _require_chromium()
    if not RunDir(run_dir).is_run_dir():
        raise FileNotFoundError(f"{run_dir} is not a run folder")
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        store, experiment_id, run_id = _synced_copy(run_dir, tmp)
        with _ui_server(store, Path(tmp, "store")) as base:
            url = f"{base}/#/experiments/{experiment_id}/runs/{run_id}/artifacts/{artifact}"
            _chromium(
                url,
                Path(tmp, "chromium-profile"),
                f"--screenshot={out}",
                width=width,
                height=height,
                wait_ms=wait_ms,
            )
    _check_png(out)
    return out


def _synced_copy(run_dir: str | Path, tmp: str | Path) -> tuple[str, str, str]:
    """Copies ``run_dir`` (without checkpoints) into ``tmp/run`` and syncs it into a fresh
    SQLite store ``tmp/store/mlflow.db``; returns ``(store URI, experiment id, run id)``.
    A copy, so syncing leaves the original folder's state alone."""
    folder = Path(tmp) / "run"
    shutil.copytree(run_dir, folder, ignore=shutil.ignore_patterns("checkpoints"))
    store = f"sqlite:///{Path(tmp, 'store', 'mlflow.db').as_posix()}"
    run_id = sync_run_dir(folder, store, force=True)
    return store, get_client(store).get_run(run_id).info.experiment_id, run_id


def _check_png(out: Path) -> None:
    if not out.is_file() or out.read_bytes()[:4] != b"\x89PNG":
        raise RuntimeError(f"chromium wrote no PNG at {out}")


@contextlib.contextmanager
def _ui_server(store: str, workdir: str | Path) -> Iterator[str]:
    """``mlflow ui`` on ``store`` at a free 127.0.0.1 port; yields its base URL."""
    port = _free_port()
    server = subprocess.Popen(
        ui_command(store, workdir, "127.0.0.1", port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, timeout=90.0)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def _chromium(url: str, profile: Path, *args: str, width: int, height: int, wait_ms: int) -> str:
    browser = _require_chromium()
    done = subprocess.run(
        [
            browser,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--virtual-time-budget={wait_ms}",
            *args,
            url,
        ],
        check=True,
        timeout=180,
        capture_output=True,
        text=True,
    )
    return done.stdout


def screenshot_landing(
    store: str,
    experiment_id: str,
    out: str | Path | None = None,
    *,
    workdir: str | Path | None = None,
    width: int = 1600,
    height: int = 1000,
    wait_ms: int = 20000,
    model_training: bool = True,
) -> str:
    """Opens the experiment's landing page (``#/experiments/<id>``, what a click in the
    experiment list shows) in headless Chromium; saves a PNG at ``out`` when given and returns
    the rendered page's DOM (to check what the page shows). ``model_training``: with MLflow's
    ``workflowType=machine_learning`` (what ``cl-ssvdo ui`` prints), else the UI's default."""
    _require_chromium()
    with tempfile.TemporaryDirectory() as tmp, _ui_server(store, workdir or tmp) as base:
        url = f"{base}/#/experiments/{experiment_id}" + (
            f"?{WORKFLOW_QUERY}" if model_training else ""
        )
        size = {"width": width, "height": height, "wait_ms": wait_ms}
        dom = _chromium(url, Path(tmp, "profile-dom"), "--dump-dom", **size)
        if out is not None:
            out = Path(out).resolve()
            out.parent.mkdir(parents=True, exist_ok=True)
            _chromium(url, Path(tmp, "profile-png"), f"--screenshot={out}", **size)
            _check_png(out)
    return dom


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.screenshot", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("run_dir", help="a finished run folder (<workdir>/runs/...)")
    parser.add_argument("--out", default=None, help="PNG to write")
    parser.add_argument("--artifact", default="wer_matrix.png", help="artifact to select")
    parser.add_argument(
        "--landing",
        action="store_true",
        help="the run's experiment landing page instead (docs/img/mlflow_landing.png)",
    )
    args = parser.parse_args(argv)
    if args.landing:
        out = args.out or "docs/img/mlflow_landing.png"
        with tempfile.TemporaryDirectory() as tmp:
            store, experiment_id, _ = _synced_copy(args.run_dir, tmp)
            screenshot_landing(store, experiment_id, out, workdir=Path(tmp, "store"))
        print(f"wrote {Path(out).resolve()}")
        return 0
    path = screenshot_run(
        args.run_dir, args.out or "docs/img/mlflow_run_artifacts.png", args.artifact
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
