"""Synaptic Intelligence for CTC models.

Avalanche's ``SynapticIntelligencePlugin`` runs on a CTC model as shipped (it only reads
``strategy.loss`` and the gradients), but it looks its parameters up by "currently requires
grad" in every callback. A plugin that changes the trainable set per experience (full
fine-tuning of some layers: frozen in ``before_training_exp``, restored in
``after_training_exp``) makes its ``after_training_exp`` see parameters it never tracked when it
runs after that plugin (``KeyError``). :class:`SIPlugin` fixes this by running SI's
``after_training_exp`` with the ``requires_grad`` flags the experience trained with.
Composition rules (rejected with adapters that re-create their parameters each experience) are
in :mod:`strategies.cl.compat`.

Example
-------
>>> plugin = SIPlugin(si_lambda=0.1)  # plugins=[FullFTPlugin(...), plugin]
"""

from __future__ import annotations

from avalanche.training.plugins import SynapticIntelligencePlugin

__all__ = ["SIPlugin", "SynapticIntelligencePlugin"]


class SIPlugin(SynapticIntelligencePlugin):
    """Avalanche's SI with the trainable set frozen per experience (see the module docstring).
    Arguments as ``SynapticIntelligencePlugin`` (``si_lambda``, ``eps``, ``excluded_parameters``)."""

    def before_training_exp(self, strategy, **kwargs) -> None:
        super().before_training_exp(strategy, **kwargs)
        self._trained_flags: dict[str, bool] | None = None

    def before_training_iteration(self, strategy, **kwargs) -> None:
        if self._trained_flags is None:
            self._trained_flags = {n: p.requires_grad for n, p in strategy.model.named_parameters()}
        super().before_training_iteration(strategy, **kwargs)

    def after_training_exp(self, strategy, **kwargs) -> None:
        flags = self._trained_flags
        params = dict(strategy.model.named_parameters())
        if flags is None or flags.keys() != params.keys():
            super().after_training_exp(strategy, **kwargs)
            return
        current = {n: p.requires_grad for n, p in params.items()}
        try:
            for n, p in params.items():
                p.requires_grad_(flags[n])
            super().after_training_exp(strategy, **kwargs)
        finally:
            for n, p in params.items():
                p.requires_grad_(current[n])
