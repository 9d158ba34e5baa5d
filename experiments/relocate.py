"""A copied or moved SQLite tracking store still opens its artifacts.

MLflow stores absolute artifact URIs (``file:///old/place/mlartifacts/1/<run>/artifacts``) in
its database; after copying ``<workdir>/`` (``mlflow.db`` + ``mlartifacts/``) elsewhere, the UI
would look in the old place. :func:`relocate_store` rewrites the experiments', runs' and logged
models' artifact URIs that point into another folder's ``mlartifacts/`` to the
``mlartifacts/`` next to the database, when that folder exists here. ``cl-ssvdo ui`` runs it
before starting the server; stores elsewhere (servers, other artifact roots) are left alone.

>>> relocate_store("http://127.0.0.1:5000")  # not a local SQLite store: nothing to do
0
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

__all__ = ["ARTIFACTS_DIR", "relocate_store"]

ARTIFACTS_DIR = "mlartifacts"
# (table, column) pairs of MLflow's SQL schema that hold artifact URIs.
_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
)
_PATTERN = re.compile(rf"^file://.*?/{ARTIFACTS_DIR}((?:/.*)?)$")


def _db_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    path = Path(uri[len("sqlite:///") :])
    return path if path.is_file() else None


def relocate_store(uri: str) -> int:
    """Point artifact URIs that name another folder's ``mlartifacts/`` to the one next to the
    SQLite database at ``uri``; returns the number of rows changed (0 when nothing moved)."""
    db = _db_path(uri)
    if db is None:
        return 0
    here = (db.resolve().parent / ARTIFACTS_DIR).as_uri()
    if not Path(db.resolve().parent / ARTIFACTS_DIR).is_dir():
        return 0
    changed = 0
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for table, column in _COLUMNS:
            if table not in tables:
                continue
            rows = conn.execute(f"SELECT rowid, {column} FROM {table}").fetchall()  # noqa: S608
            for rowid, value in rows:
                found = _PATTERN.match(value or "")
                if found is None:
                    continue
                new = here + found.group(1)
                if new == value:
                    continue
                conn.execute(
                    f"UPDATE {table} SET {column} = ? WHERE rowid = ?",  # noqa: S608
                    (new, rowid),
                )
                changed += 1
    return changed
