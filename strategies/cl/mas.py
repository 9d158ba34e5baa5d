"""Memory Aware Synapses for CTC models.

Importance: ``Omega = mean_batches |d g(batch) / d W|`` with ``g`` the mean over valid frames
(masked by lengths) of the squared L2 norm of the frame posteriors, ``||softmax(z_t)||^2``
(MAS needs no labels; posteriors rather than log-posteriors keep the measure bounded and
focused on the tokens the model predicts). Across experiences importances are blended,
``Omega = alpha * Omega_old + (1 - alpha) * Omega_new`` (Avalanche's MAS), with one anchor,
the latest weights; penalty ``lambda * sum Omega (W - W*)^2``.
See :mod:`strategies.cl.penalty` for when and how.

Example
-------
>>> plugin = MASPlugin(penalty_weight=1.0, alpha=0.5, max_batches=8)
"""

from __future__ import annotations

import torch

from ._ctc import batch_forward, frame_mask
from .penalty import ImportancePenaltyPlugin, PenaltyEntry, mean_gradient_statistic

__all__ = ["MASPlugin", "mas_importance", "posterior_sq_norm"]


def posterior_sq_norm(log_probs: torch.Tensor, out_lens: torch.Tensor) -> torch.Tensor:
    """Mean over valid frames of ``||exp(log_probs[b, t])||^2``.

    log_probs : [B, T, V]; out_lens : [B] relative lengths. Returns a scalar.
    """
    mask = frame_mask(out_lens, log_probs.shape[1]).float()
    sq = log_probs.float().exp().pow(2).sum(-1)
    return (sq * mask).sum() / mask.sum().clamp_min(1.0)


def mas_importance(strategy, dataset, max_batches: int | None = None) -> dict[str, torch.Tensor]:
    """MAS importance by parameter name (float parameters only), eval mode."""
    return mean_gradient_statistic(
        strategy,
        dataset,
        max_batches,
        lambda s, batch: posterior_sq_norm(*batch_forward(s, batch)),
        torch.abs,
        "the MAS importance",
    )


class MASPlugin(ImportancePenaltyPlugin):
    """MAS over the plain model's weights.

    Arguments
    ---------
    penalty_weight : float
        lambda >= 0.
    alpha : float
        Weight of the old importance when blending, in [0, 1].
    max_batches : int or None
        Batches per experience for the importance (None: all).
    """

    def __init__(self, penalty_weight: float, alpha: float = 0.5, max_batches: int | None = None):
        super().__init__(penalty_weight, mode="online", decay=1.0, max_batches=max_batches)
        if not isinstance(alpha, int | float) or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha: must be a number in [0, 1], got {alpha!r}")
        self.alpha = float(alpha)

    def compute_importance(self, strategy, dataset) -> dict[str, torch.Tensor]:
        return mas_importance(strategy, dataset, self.max_batches)

    def add_entry(self, experience, model, importance) -> None:
        if self.entries:
            old = self.entries[-1].importance
            importance = {
                n: self.alpha * old[n].to(imp.device) + (1 - self.alpha) * imp if n in old else imp
                for n, imp in importance.items()
            }
        anchor = {n: p.detach().clone() for n, p in model.named_parameters() if n in importance}
        importance = {n: imp.detach() for n, imp in importance.items()}
        self.entries = [PenaltyEntry(experience, anchor, importance)]
