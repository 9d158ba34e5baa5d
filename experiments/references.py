"""Reference runs for intransigence (joint training) and forward transfer (single-task
fine-tuning from the base).

A reference is a finished run of ``strategy.mode: joint`` or ``single_task`` on the same
stream and base model. Its WER matrix's diagonal ``R[c + 1, c]`` is the per-domain vector
that ``cl_ssvdo.metrics.summarize(R, joint=..., single=...)`` takes.

``references.joint`` / ``references.single_task`` in a config name a run folder or an MLflow
run id; when unset, the newest finished local run folder with the same ``base_key`` (same
stream data and base model) and that mode is used, if any.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from experiments.run_dir import RunDir

__all__ = ["diagonal", "find_local_reference", "load_reference"]


def diagonal(matrix: list[list[float]] | np.ndarray) -> np.ndarray:
    """``[R[1, 0], R[2, 1], ...]``: WER on each domain right after training on it."""
    arr = np.asarray(matrix, dtype=float)
    n = arr.shape[1]
    if arr.shape[0] != n + 1:
        raise ValueError(
            f"reference WER matrix is incomplete: shape {arr.shape}, need ({n + 1}, {n})"
        )
    return np.array([arr[c + 1, c] for c in range(n)])


def _matrix_file(path: Path) -> tuple[list[list[float]], list[str]]:
    data = json.loads(path.read_text())
    values = [[np.nan if v is None else float(v) for v in row] for row in data["values"]]
    return values, list(data["columns"])


def _check_domains(found: list[str], domains: list[str], source: str) -> None:
    if found != domains:
        raise ValueError(f"reference {source}: domains {found} differ from this run's {domains}")


def load_reference(ref: str, domains: list[str], tracking_uri: str | None = None) -> np.ndarray:
    """The per-domain reference vector from a run folder or an MLflow run id."""
    folder = Path(ref)
    if folder.is_dir():
        matrix_json = folder / "artifacts" / "wer_matrix.json"
        if not matrix_json.is_file():
            raise FileNotFoundError(
                f"reference {ref}: no artifacts/wer_matrix.json (unfinished run?)"
            )
        values, columns = _matrix_file(matrix_json)
        _check_domains(columns, domains, ref)
        return diagonal(values)
    if tracking_uri is None:
        raise FileNotFoundError(f"reference {ref!r}: no such run folder (and no tracking store)")
    from experiments.tracking import get_client

    client = get_client(tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        local = client.download_artifacts(ref, "wer_matrix.json", tmp)
        values, columns = _matrix_file(Path(local))
    _check_domains(columns, domains, ref)
    return diagonal(values)


def find_local_reference(workdir: str | Path, mode: str, base_key: str) -> Path | None:
    """Newest finished run folder under ``<workdir>/runs`` with this mode and base key."""
    best: tuple[float, Path] | None = None
    for state_file in Path(workdir, "runs").glob("*/state.json"):
        folder = RunDir(state_file.parent)
        try:
            state = folder.state()
        except json.JSONDecodeError:
            continue
        if (
            state.get("mode") == mode
            and state.get("base_key") == base_key
            and state.get("status") == "FINISHED"
            and (folder.artifacts / "wer_matrix.json").is_file()
        ):
            ended = float(state.get("ended", 0.0))
            if best is None or ended > best[0]:
                best = (ended, folder.path)
    return None if best is None else best[1]
