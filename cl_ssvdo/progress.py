"""Progress that reads right both in a terminal and in a log file.

On a terminal, tqdm bars. When the output is not a terminal (a log file, CI, ``nohup``), tqdm's
carriage returns would pile up (300+ KB logs of redrawn bars): plain lines then, at most one
per ``interval`` seconds plus one when the bar closes::

    [synthesising] 3200/7030 utt, 41 s
    [pretrain epoch 3] 57/132 batch, loss 2.258, 31 s

Used by stream generation (``benchmarks``), pretraining and evaluation (``cl_ssvdo.asr``) and
the runner (``experiments``); imports nothing of the project.

>>> import io
>>> out = io.StringIO()
>>> bar = LineProgress("demo", total=3, unit="exp", stream=out, interval=0.0)
>>> for _ in range(3):
...     bar.update(1)
>>> bar.close()
>>> out.getvalue().splitlines()[-1].startswith("[demo] 3/3 exp")
True
>>> "\\r" in out.getvalue()
False
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tqdm.auto import tqdm

__all__ = ["DEFAULT_INTERVAL", "LineProgress", "is_terminal", "progress_bar"]

DEFAULT_INTERVAL = 30.0


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default stderr, where tqdm writes) is an interactive terminal."""
    stream = stream or sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class LineProgress:
    """A tqdm-like counter that prints plain lines (no carriage returns), at most one every
    ``interval`` seconds, and a last one on :meth:`close`."""

    def __init__(
        self,
        desc: str,
        total: int | None = None,
        *,
        unit: str = "it",
        initial: int = 0,
        stream: TextIO | None = None,
        interval: float = DEFAULT_INTERVAL,
    ) -> None:
        self.desc, self.total, self.unit, self.n = desc, total, unit, initial
        self.stream = stream or sys.stderr
        self.interval = interval
        self.postfix = ""
        self.start = self._last = time.monotonic()
        self._printed_at = -1

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfix = text

    def set_postfix(self, **values: Any) -> None:
        """tqdm's ``set_postfix(loss=..., step=...)``: shown as ``loss 0.52, step 900``."""
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def line(self) -> str:
        count = f"{self.n}/{self.total}" if self.total is not None else str(self.n)
        elapsed = time.monotonic() - self.start
        extra = f", {self.postfix}" if self.postfix else ""
        return f"[{self.desc}] {count} {self.unit}{extra}, {elapsed:.0f} s"

    def _emit(self) -> None:
        print(self.line(), file=self.stream, flush=True)
        self._last = time.monotonic()
        self._printed_at = self.n

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self._last >= self.interval:
            self._emit()

    def close(self) -> None:
        if self._printed_at != self.n:
            self._emit()


def progress_bar(
    iterable: Any = None,
    *,
    desc: str,
    total: int | None = None,
    unit: str = "it",
    initial: int = 0,
    disable: bool = False,
    interval: float = DEFAULT_INTERVAL,
    leave: bool = True,
) -> Any:
    """tqdm on a terminal; :class:`LineProgress` lines otherwise (wrapping ``iterable`` if given;
    ``leave`` is tqdm's: keep the finished bar on screen)."""
    if disable or is_terminal():
        return tqdm(iterable, desc=desc, total=total, unit=unit, initial=initial, disable=disable,
                    leave=leave)  # fmt: skip
    bar = LineProgress(desc, total, unit=unit, initial=initial, interval=interval)
    if iterable is None:
        return bar
    return _Wrapped(iterable, bar)


class _Wrapped:
    def __init__(self, iterable: Any, bar: LineProgress) -> None:
        self.iterable, self.bar = iterable, bar

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.bar.update(1)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.bar, name)
