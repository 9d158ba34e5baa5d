"""Averaged Gradient Episodic Memory for CTC models.

Memory: up to ``patterns_per_experience`` random utterances of every finished experience (an
``AvalancheDataset`` subset, so it keeps the padded speech collate). Before each training
iteration a replayed batch of ``sample_size`` utterances (uniform over the memory) gives the
reference gradient ``g_ref`` of its CTC loss with respect to the trainable parameters
(``torch.autograd.grad``: ``.grad`` fields are not touched). After the backward pass the
current gradient ``g`` is projected when it conflicts with the reference:

    g <- g - (g . g_ref) / (g_ref . g_ref) * g_ref     if g . g_ref < 0

so that ``g . g_ref >= 0`` afterwards (the update does not increase the replayed loss to
first order). Only trainable parameters take part, which is what makes it compose with
adapters (the reference gradient is in the adapter's coordinates).

Example
-------
>>> plugin = CTCAGEMPlugin(patterns_per_experience=64, sample_size=8)
"""

from __future__ import annotations

import random

import torch
from avalanche.core import SupervisedPlugin

from ._ctc import batch_loss, collate_of
from .compat import check_plugins

__all__ = ["CTCAGEMPlugin", "project_gradient"]


def project_gradient(grad: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """A-GEM projection of the flat gradient ``grad`` against ``reference`` (both [P]).

    Example
    -------
    >>> g = project_gradient(torch.tensor([1.0, -1.0]), torch.tensor([0.0, 1.0]))
    >>> g.tolist()
    [1.0, 0.0]
    """
    dot = torch.dot(grad, reference)
    ref_sq = torch.dot(reference, reference)
    if dot >= 0 or ref_sq == 0:
        return grad
    return grad - (dot / ref_sq) * reference


class CTCAGEMPlugin(SupervisedPlugin):
    """A-GEM with CTC reference gradients (see the module docstring).

    Arguments
    ---------
    patterns_per_experience : int
        Utterances kept from each finished experience.
    sample_size : int
        Utterances in each replayed reference batch.
    seed : int
        Seed of the memory and sampling choices (independent of the global RNG).
    """

    def __init__(self, patterns_per_experience: int, sample_size: int, seed: int = 0) -> None:
        super().__init__()
        for name, v in (
            ("patterns_per_experience", patterns_per_experience),
            ("sample_size", sample_size),
        ):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: must be an int >= 1, got {v!r}")
        self.patterns_per_experience = patterns_per_experience
        self.sample_size = sample_size
        self.buffers: list = []
        self._rng = random.Random(seed)
        self.reference: torch.Tensor | None = None
        self.projections = 0

    def before_training(self, strategy, **kwargs) -> None:
        check_plugins(strategy.plugins)

    def _trainable(self, strategy) -> list[torch.nn.Parameter]:
        return [p for p in strategy.model.parameters() if p.requires_grad]

    def sample_batch(self):
        """A collated batch of ``sample_size`` utterances drawn uniformly from the memory."""
        pool = [(i, j) for i, buf in enumerate(self.buffers) for j in range(len(buf))]
        picks = self._rng.sample(pool, min(self.sample_size, len(pool)))
        items = [self.buffers[i][j] for i, j in picks]
        return collate_of(self.buffers[0])(items)

    def before_training_iteration(self, strategy, **kwargs) -> None:
        self.reference = None
        if not self.buffers:
            return
        params = self._trainable(strategy)
        loss = batch_loss(strategy, self.sample_batch())
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        self.reference = torch.cat(
            [
                (g if g is not None else torch.zeros_like(p)).reshape(-1)
                for g, p in zip(grads, params, strict=True)
            ]
        ).detach()

    @torch.no_grad()
    def after_backward(self, strategy, **kwargs) -> None:
        if self.reference is None:
            return
        params = self._trainable(strategy)
        grad = torch.cat(
            [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]
        )
        if grad.numel() != self.reference.numel():
            raise RuntimeError(
                "A-GEM: the trainable parameters changed between the reference and the update"
            )
        projected = project_gradient(grad, self.reference)
        if projected is grad:
            return
        self.projections += 1
        offset = 0
        for p in params:
            n = p.numel()
            if p.grad is not None:
                p.grad.copy_(projected[offset : offset + n].view_as(p))
            offset += n

    def after_training_exp(self, strategy, **kwargs) -> None:
        dataset = strategy.experience.dataset
        n = len(dataset)
        if n > self.patterns_per_experience:
            idx = sorted(self._rng.sample(range(n), self.patterns_per_experience))
            dataset = dataset.subset(idx)
        self.buffers.append(dataset)
