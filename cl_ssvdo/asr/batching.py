"""Batching for pretraining and evaluation, duck-typed: any map-style dataset whose items are
``(wav [T], words, utt_id)`` (e.g. :class:`cl_ssvdo.data.ManifestDataset`) is batched by
duration here, and any iterable of ready batches ``(wavs [B, T], wav_lens [B], words, ids)``
(e.g. a DataLoader) is used as it is.

Must not depend on avalanche, mlflow or benchmarks.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from itertools import islice
from typing import Any

import torch
from torch.utils.data import DataLoader

from cl_ssvdo.data import collate_speech

__all__ = [
    "Batch",
    "durations_of",
    "is_item_dataset",
    "iterate_batches",
    "num_batches",
    "sorted_batches",
]

#: ``(wavs [B, T_max], wav_lens [B] relative, words, ids)``
Batch = tuple[torch.Tensor, torch.Tensor, list[str], list[str]]


def is_item_dataset(data: Any) -> bool:
    """True for a map-style dataset of single utterances (not an iterable of batches).

    >>> is_item_dataset([(torch.ones(2), "a", "u1")]), is_item_dataset(iter([]))
    (True, False)
    """
    return (
        not isinstance(data, DataLoader)
        and hasattr(data, "__getitem__")
        and hasattr(data, "__len__")
    )


def durations_of(data: Any, sample_rate: int = 16000) -> list[float]:
    """Per-item durations (s): ``data.durations`` when present, else measured once by loading.

    >>> durations_of([(torch.ones(8000), "a", "u1")])
    [0.5]
    """
    durations = getattr(data, "durations", None)
    if durations is not None:
        durations = [float(d) for d in durations]
        if len(durations) != len(data):
            raise ValueError(
                f"dataset.durations has {len(durations)} entries for {len(data)} items"
            )
        return durations
    return [torch.as_tensor(data[i][0]).numel() / sample_rate for i in range(len(data))]


def sorted_batches(
    durations: Sequence[float], batch_size: int, shuffle: bool = True, seed: int = 0
) -> list[list[int]]:
    """Indices grouped into batches of similar duration; batch order shuffled with ``seed``.

    Example
    -------
    >>> sorted_batches([3.0, 1.0, 2.0, 4.0], batch_size=2, shuffle=False)
    [[1, 2], [0, 3]]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(durations)), key=lambda i: (durations[i], i))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if shuffle:
        random.Random(seed).shuffle(batches)
    return batches


def iterate_batches(
    data: Any,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    skip: int = 0,
    durations: Sequence[float] | None = None,
    num_workers: int = 0,
) -> Iterator[Batch]:
    """Batches of ``data`` (an item dataset or an iterable of batches), skipping the first ``skip``.

    Item datasets are batched by duration (:func:`sorted_batches`) with the dataset's own
    ``collate_fn`` when it has one, else :func:`~cl_ssvdo.data.collate_speech`; iterables of batches are used as
    they are.

    >>> items = [(torch.ones(n), f"w{n}", f"u{n}") for n in (3, 1, 2)]
    >>> [ids for _, _, _, ids in iterate_batches(items, batch_size=2)]
    [['u1', 'u2'], ['u3']]
    """
    if is_item_dataset(data):
        if durations is None:
            durations = durations_of(data)
        batches = sorted_batches(durations, batch_size, shuffle=shuffle, seed=seed)[skip:]
        if not batches:
            return iter(())
        collate = getattr(data, "collate_fn", None) or collate_speech
        loader = DataLoader(
            data, batch_sampler=batches, collate_fn=collate, num_workers=num_workers
        )
        return (tuple(b) for b in loader)  # type: ignore[misc]
    return (tuple(b) for b in islice(iter(data), skip, None))  # type: ignore[misc]


def num_batches(data: Any, batch_size: int) -> int | None:
    """How many batches :func:`iterate_batches` yields per pass (None if unknown).

    >>> num_batches([(torch.ones(2), "a", "u1")] * 5, batch_size=2)
    3
    """
    if is_item_dataset(data):
        return (len(data) + batch_size - 1) // batch_size
    try:
        return len(data)
    except TypeError:
        return None
