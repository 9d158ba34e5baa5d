"""One run folder on disk: its paths, small JSON files, the metric log and the lock that keeps
two processes out of it.

Layout (all plain files)::

    RUN_DIR/config.yaml          the resolved config of this run (seed included)
    RUN_DIR/params.json          MLflow params (flattened config, git commit, versions, seed)
    RUN_DIR/tags.json            MLflow tags
    RUN_DIR/metrics.jsonl        one {"key", "value", "step", "timestamp"} per line, append-only
    RUN_DIR/state.json           progress: matrices so far, completed experiences, MLflow run id
    RUN_DIR/artifacts/           files logged as run artifacts (matrices, plots, budget table)
    RUN_DIR/artifacts/tables/    long-format tables, logged with ``log_table`` as well
    RUN_DIR/checkpoints/         the latest per-experience checkpoint (for ``--resume``)

Example
-------
>>> import tempfile
>>> folder = RunDir(tempfile.mkdtemp())
>>> folder.is_run_dir(), folder.artifacts.name
(False, 'artifacts')
"""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from experiments.folder_lock import folder_lock

__all__ = ["RunDir", "RunFolderBusyError"]


class RunDir:
    """Paths and small JSON helpers for one run folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def artifacts(self) -> Path:
        return self.path / "artifacts"

    @property
    def tables(self) -> Path:
        return self.artifacts / "tables"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    def create(self) -> RunDir:
        for folder in (self.path, self.artifacts, self.tables, self.checkpoints):
            folder.mkdir(parents=True, exist_ok=True)
        return self

    def read_json(self, name: str, default: Any = None) -> Any:
        path = self.path / name
        return json.loads(path.read_text()) if path.is_file() else default

    def write_json(self, name: str, data: Any) -> Path:
        """Atomic write (tmp file + rename), so a kill never leaves half a file."""
        path = self.path / name
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=_json_default))
        tmp.replace(path)
        return path

    def state(self) -> dict[str, Any]:
        return self.read_json("state.json", {})

    def update_state(self, **changes: Any) -> dict[str, Any]:
        state = {**self.state(), **changes}
        self.write_json("state.json", state)
        return state

    def metrics(self) -> list[dict[str, Any]]:
        """The metric history; a torn last line (the mark of a kill while logging) is skipped
        with a warning, a bad line elsewhere is a ``ValueError`` naming file and line."""
        if not self.metrics_file.is_file():
            return []
        lines = self.metrics_file.read_text(errors="replace").splitlines()
        rows = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                if number == len(lines):
                    warnings.warn(
                        f"{self.metrics_file}: skipping a torn last line ({number}): {line[:80]!r}",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    continue
                raise ValueError(f"{self.metrics_file} line {number}: not JSON ({exc})") from exc
        return rows

    @contextlib.contextmanager
    def lock(self, wait: bool = True) -> Iterator[None]:
        """Hold an exclusive ``fcntl`` lock on ``<run folder>.lock`` (next to the folder, so
        ``--fresh`` can remove the folder). A second process running the same folder waits
        (with a message) or, with ``wait=False``, gets a :class:`RunFolderBusyError`."""

        def busy(holder: str) -> None:
            if not wait:
                raise RunFolderBusyError(self.path, holder)
            print(
                f"cl-ssvdo: run folder {self.path} is in use by process {holder}; waiting",
                file=sys.stderr,
            )

        with folder_lock(self.path, on_busy=busy):
            yield

    def is_run_dir(self) -> bool:
        return (self.path / "config.yaml").is_file() and (self.path / "state.json").is_file()


class RunFolderBusyError(RuntimeError):
    """Another process holds the run folder's lock."""

    def __init__(self, path: Path, holder: str) -> None:
        self.path = path
        super().__init__(
            f"run folder {path} is in use by process {holder}: an identical run is going on; "
            "wait for it (its result is reused) or change the config or seed"
        )


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
