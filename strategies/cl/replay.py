"""Experience replay with Avalanche's buffer and the padded speech collate.

Avalanche's ``ReplayPlugin`` works on a CTC stream as shipped: its ``ExperienceBalancedBuffer``
stores ``AvalancheDataset`` subsets of each experience, their concatenation keeps the first
dataset's ``collate_fn`` (the speech collate the benchmark attached), and ``ReplayDataLoader``
collates the joint batch with the current data's ``collate_fn``. :class:`CTCReplayPlugin` makes
that explicit and checked: the replay loader always collates with the current data's collate,
and a buffer whose collate differs (e.g. a dataset built without the benchmark's collate) is an
error naming both functions, instead of a confusing failure inside ``default_collate``.
Each training batch holds ``batch_size`` current utterances plus ``batch_size_mem`` replayed
ones (both default to the strategy's ``train_mb_size``).

Example
-------
>>> plugin = CTCReplayPlugin(mem_size=300, batch_size_mem=8)
"""

from __future__ import annotations

from avalanche.benchmarks.utils.data_loader import ReplayDataLoader
from avalanche.training.plugins import ReplayPlugin

from ._ctc import collate_of
from .compat import check_plugins

__all__ = ["CTCReplayPlugin"]


class CTCReplayPlugin(ReplayPlugin):
    """``ReplayPlugin`` whose loader is checked to use the padded speech collate.

    Arguments are those of ``avalanche.training.plugins.ReplayPlugin`` (``mem_size``,
    ``batch_size``, ``batch_size_mem``, ``task_balanced_dataloader``, ``storage_policy``).
    """

    def before_training(self, strategy, **kwargs) -> None:
        check_plugins(strategy.plugins)

    def before_training_exp(
        self,
        strategy,
        num_workers: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        **kwargs,
    ):
        super().before_training_exp(
            strategy, num_workers=num_workers, shuffle=shuffle, drop_last=drop_last, **kwargs
        )
        loader = strategy.dataloader
        if not isinstance(loader, ReplayDataLoader):
            return  # first experience: empty buffer, the template's own loader
        data_collate = collate_of(strategy.adapted_dataset)
        buffer_collate = collate_of(self.storage_policy.buffer)
        if buffer_collate is not data_collate:
            raise RuntimeError(
                f"replay: the buffer collates with {_name(buffer_collate)} but the training data "
                f"with {_name(data_collate)}; both must be the padded speech collate"
            )
        loader.loader_kwargs["collate_fn"] = data_collate

    def after_training_exp(self, strategy, **kwargs) -> None:
        # ReplayPlugin calls the deprecated ``storage_policy.update``, which only forwards here.
        self.storage_policy.post_adapt(strategy, strategy.experience)


def _name(fn) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
