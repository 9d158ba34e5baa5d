"""Quadratic importance penalties (EWC, MAS) and the plugin base they share.

Penalty over stored entries ``(anchor, importance)``:

    P(theta) = sum_entries sum_names sum_elements importance * (W_name(theta) - anchor_name)^2

``W_name(theta)`` is the plain model's weight ``name`` as the layer currently applies it
(:func:`strategies.cl.weights.effective_weights`): while an SSVD-O or PEFT adapter trains, that
is the adapter's merged weight, so the penalty constrains what the adapter changes and its
gradient flows into the adapter parameters. This is how EWC/MAS compose with adapters that are
removed after every experience (the anchors and importances live on plain-model names, which
survive the merge). Names whose current weight cannot change (frozen, no adapter on the layer)
are skipped: their term is a constant.

When importances are computed: at the start of the *next* training experience
(``before_train_dataset_adaptation``, which Avalanche calls before any plugin's
``before_training_exp``), on the plain model and the previous experience's training data. The
weights then are exactly those at the end of the previous experience (after the adapter's merge
and after any weight averaging, whatever the order of the plugins), which is the anchor.
:meth:`ImportancePenaltyPlugin.consolidate` computes them on demand.

Importance passes run in ``eval`` mode (no dropout, no batch-norm statistics updates: no hidden
side effects on the model) and restore the modules' modes and ``requires_grad`` flags.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from avalanche.core import SupervisedPlugin
from torch import nn

from ._ctc import experience_index
from .compat import check_plugins
from .weights import effective_weights

__all__ = ["quadratic_penalty", "PenaltyEntry", "ImportancePenaltyPlugin", "importance_pass"]


def quadratic_penalty(
    current: Mapping[str, torch.Tensor],
    anchor: Mapping[str, torch.Tensor],
    importance: Mapping[str, torch.Tensor],
) -> torch.Tensor:
    """``sum importance * (current - anchor)^2`` over the names of ``importance``.

    Arguments
    ---------
    current, anchor, importance : mapping name -> tensor of the same shape
        ``current`` may be a subset of ``importance``'s names (missing names contribute 0).

    Example
    -------
    >>> w = {"a": torch.tensor([1.0, 2.0])}
    >>> float(quadratic_penalty(w, {"a": torch.tensor([1.0, 0.0])}, {"a": torch.tensor([3.0, 0.5])}))
    2.0
    """
    total = None
    for name, imp in importance.items():
        if name not in current:
            continue
        cur = current[name]
        term = (imp.to(cur.device) * (cur - anchor[name].to(cur.device)) ** 2).sum()
        total = term if total is None else total + term
    if total is None:
        device = next(iter(anchor.values())).device if anchor else None
        return torch.zeros((), device=device)
    return total


@dataclass
class PenaltyEntry:
    """Anchor weights and their importance after one experience (plain-model names)."""

    experience: int
    anchor: dict[str, torch.Tensor]
    importance: dict[str, torch.Tensor]


class importance_pass:  # noqa: N801 (a context manager used like a function)
    """Context for an importance computation: eval mode, every float parameter requiring grad;
    restores modes and flags afterwards."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __enter__(self) -> nn.Module:
        self._modes = {name: m.training for name, m in self.model.named_modules()}
        self._flags = {n: p.requires_grad for n, p in self.model.named_parameters()}
        self.model.eval()
        for p in self.model.parameters():
            if p.is_floating_point():
                p.requires_grad_(True)
        return self.model

    def __exit__(self, *exc) -> None:
        for name, m in self.model.named_modules():
            m.training = self._modes.get(name, m.training)
        for n, p in self.model.named_parameters():
            p.requires_grad_(self._flags.get(n, p.requires_grad))
            p.grad = None


class ImportancePenaltyPlugin(SupervisedPlugin):
    """Shared machinery of EWC and MAS (see the module docstring).

    Subclasses implement :meth:`compute_importance` ``(strategy, dataset) -> {name: tensor}``.

    Arguments
    ---------
    penalty_weight : float
        lambda >= 0, the weight of the penalty added to the CTC loss.
    mode : str
        ``"separate"``: one (anchor, importance) per past experience, penalties summed;
        ``"online"``: one running entry, importance ``decay * old + new``, anchor the latest.
    decay : float
        Decay of the running importance in ``online`` mode, in [0, 1].
    max_batches : int or None
        Cap on the batches of an experience used for the importance (None: all).
    """

    def __init__(
        self,
        penalty_weight: float,
        mode: str = "separate",
        decay: float = 1.0,
        max_batches: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(penalty_weight, int | float) or penalty_weight < 0:
            raise ValueError(f"penalty_weight: must be a number >= 0, got {penalty_weight!r}")
        if mode not in ("separate", "online"):
            raise ValueError(f"mode: must be 'separate' or 'online', got {mode!r}")
        if not isinstance(decay, int | float) or not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay: must be a number in [0, 1], got {decay!r}")
        if max_batches is not None and (not isinstance(max_batches, int) or max_batches < 1):
            raise ValueError(f"max_batches: must be an int >= 1 or None, got {max_batches!r}")
        self.penalty_weight = float(penalty_weight)
        self.mode = mode
        self.decay = float(decay)
        self.max_batches = max_batches
        self.entries: list[PenaltyEntry] = []
        self._pending: tuple[int, object] | None = None
        self.last_penalty: float = 0.0

    # ---------------------------------------------------------------- maths
    def compute_importance(self, strategy, dataset) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def penalty(self, model: nn.Module) -> torch.Tensor:
        """Sum of the entries' quadratic penalties at the model's current weights (unweighted)."""
        if not self.entries:
            return torch.zeros(())
        names = set().union(*(e.importance for e in self.entries))
        current = {
            n: w for n, w in effective_weights(model, sorted(names)).items() if w.requires_grad
        }
        total = None
        for entry in self.entries:
            term = quadratic_penalty(current, entry.anchor, entry.importance)
            total = term if total is None else total + term
        return total

    def add_entry(self, experience: int, model: nn.Module, importance: dict[str, torch.Tensor]):
        """Store ``importance`` with the model's current (plain) weights as the anchor."""
        anchor = {n: p.detach().clone() for n, p in model.named_parameters() if n in importance}
        importance = {n: imp.detach() for n, imp in importance.items()}
        if self.mode == "online" and self.entries:
            old = self.entries[-1].importance
            for n, imp in importance.items():
                if n in old:
                    importance[n] = self.decay * old[n].to(imp.device) + imp
            self.entries = []
        self.entries.append(PenaltyEntry(experience, anchor, importance))

    def consolidate(self, strategy) -> None:
        """Compute the pending importance now (normally done lazily, see the module docstring)."""
        if self._pending is None:
            return
        experience, dataset = self._pending
        self._pending = None
        importance = self.compute_importance(strategy, dataset)
        self.add_entry(experience, strategy.model, importance)

    # ---------------------------------------------------------------- callbacks
    def before_training(self, strategy, **kwargs) -> None:
        check_plugins(strategy.plugins)

    def before_train_dataset_adaptation(self, strategy, **kwargs) -> None:
        self.consolidate(strategy)

    def before_backward(self, strategy, **kwargs) -> None:
        if not self.entries or self.penalty_weight == 0.0:
            return
        penalty = self.penalty(strategy.model)
        self.last_penalty = float(penalty.detach())
        strategy.loss = strategy.loss + self.penalty_weight * penalty.to(strategy.loss.device)

    def after_training_exp(self, strategy, **kwargs) -> None:
        self._pending = (experience_index(strategy), strategy.experience.dataset)


def iterate_batches(strategy, dataset, max_batches: int | None) -> Iterable:
    """Batches of ``dataset`` with its collate (the padded speech collate), in order."""
    from ._ctc import data_loader

    loader = data_loader(strategy, dataset, shuffle=False)
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        yield batch


def mean_gradient_statistic(
    strategy,
    dataset,
    max_batches: int | None,
    objective: Callable[[Any, Any], torch.Tensor],
    statistic: Callable[[torch.Tensor], torch.Tensor],
    what: str,
) -> dict[str, torch.Tensor]:
    """Mean over batches of ``statistic(d objective / d w)``, by parameter name (float
    parameters only), in eval mode with every float parameter requiring grad (restored after):
    EWC's Fisher diagonal (squared gradients of the loss) and MAS's importance (absolute
    gradients of the posterior norm) are this with different arguments.
    """
    model = strategy.model
    with importance_pass(model):
        params = {n: p for n, p in model.named_parameters() if p.is_floating_point()}
        total = {n: torch.zeros_like(p) for n, p in params.items()}
        count = 0
        for batch in iterate_batches(strategy, dataset, max_batches):
            target = objective(strategy, batch)
            grads = torch.autograd.grad(target, list(params.values()), allow_unused=True)
            for (n, _), g in zip(params.items(), grads, strict=True):
                if g is not None:
                    total[n] += statistic(g.detach())
            count += 1
    if count == 0:
        raise ValueError(f"dataset: no batch to estimate {what} from")
    return {n: t / count for n, t in total.items()}
