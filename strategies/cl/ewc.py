"""Elastic Weight Consolidation for CTC models.

Importance: the diagonal empirical Fisher of the CTC loss over real batches of the finished
experience, ``F = mean_batches (d L_ctc(batch) / d W)^2`` (Avalanche's per-batch estimate), on
the plain model's weights; penalty ``lambda * sum F (W - W*)^2`` on the current (merged, when an
adapter trains) weights. See :mod:`strategies.cl.penalty` for when and how.

Example
-------
>>> plugin = EWCPlugin(penalty_weight=100.0, max_batches=8)  # plugins=[SSVDOPlugin(...), plugin]
"""

from __future__ import annotations

import torch

from ._ctc import batch_loss
from .penalty import ImportancePenaltyPlugin, mean_gradient_statistic

__all__ = ["EWCPlugin", "fisher_diagonal"]


def fisher_diagonal(strategy, dataset, max_batches: int | None = None) -> dict[str, torch.Tensor]:
    """Diagonal empirical Fisher of the CTC loss, by parameter name (float parameters only).

    Runs in eval mode with every float parameter requiring grad; restores both afterwards.
    """
    return mean_gradient_statistic(
        strategy, dataset, max_batches, batch_loss, lambda g: g**2, "the Fisher information"
    )


class EWCPlugin(ImportancePenaltyPlugin):
    """EWC over the plain model's weights (``separate`` or ``online`` mode), CTC Fisher.

    Arguments are those of :class:`strategies.cl.penalty.ImportancePenaltyPlugin`
    (``penalty_weight``, ``mode``, ``decay``, ``max_batches``).
    """

    def compute_importance(self, strategy, dataset) -> dict[str, torch.Tensor]:
        return fisher_diagonal(strategy, dataset, self.max_batches)
