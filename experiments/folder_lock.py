"""An exclusive ``fcntl`` lock on ``<folder>.lock``: one process at a time builds or runs a folder.

The lock file sits next to the folder (so the folder itself can be removed and rebuilt under
the lock) and holds the holder's process id, which a second process reads to say whom it is
waiting for. The kernel drops the lock when its holder dies, so a killed process never leaves
a folder locked.

Example
-------
>>> import tempfile
>>> from pathlib import Path
>>> folder = Path(tempfile.mkdtemp()) / "base"
>>> with folder_lock(folder):
...     (folder.parent / "base.lock").read_text() == str(os.getpid())
True
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["folder_lock"]


@contextlib.contextmanager
def folder_lock(folder: str | Path, on_busy: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the lock of ``folder``; when another process holds it, call ``on_busy(holder pid)``
    (which may raise instead of waiting) and then wait for it."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with (folder.parent / f"{folder.name}.lock").open("a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            if on_busy is not None:
                on_busy(fh.read().strip() or "?")
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
