"""Put SSVD-O adapters into any ``nn.Module`` by glob patterns over module names, and take
them out again (exact merge).

Which layers a pattern selects is the rule of :mod:`cl_ssvdo.ssvdo.targets` (shared with the
baselines, the plugins and peft). SpeechBrain feed-forward layers are named ``...ffn.0`` (d -> d_ffn) and ``...ffn.3``
(d_ffn -> d), so ``["*ffn.0", "*ffn.3"]`` targets every feed-forward block. Linear layers inside
``torch.nn.MultiheadAttention`` are never wrapped: its fused kernel reads ``out_proj.weight``
directly, so a wrapper there would be silently bypassed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from .layer import SSVDOLinear
from .settings import DEFAULTS, SSVDOSettings
from .targets import match_targets


@dataclass(frozen=True)
class LayerSummary:
    """One adapted layer: its name, shape (m = out_features, n = in_features), effective
    ranks (k, l) and number of trainable parameters."""

    name: str
    out_features: int
    in_features: int
    inner_rank: int
    outer_rank: int
    trainable: int


def _pattern_settings(
    targets: Sequence[str] | Mapping[str, Mapping[str, Any]], defaults: SSVDOSettings
) -> dict[str, SSVDOSettings]:
    """Pattern -> validated settings (a mapping's overrides on top of ``defaults``)."""
    if isinstance(targets, str):
        targets = [targets]
    if not isinstance(targets, Mapping):
        return {pattern: defaults for pattern in targets}
    out = {}
    for pattern, overrides in targets.items():
        where = f"targets[{pattern!r}]"
        overrides = dict(overrides or {})
        SSVDOSettings.from_mapping(overrides, where)  # unknown keys, values named
        try:
            out[pattern] = defaults.replace(**overrides)
        except (TypeError, ValueError) as err:
            raise type(err)(f"{where}: {err}") from None
    return out


def inject_ssvdo(
    model: nn.Module,
    targets: Sequence[str] | Mapping[str, Mapping[str, Any]],
    *,
    inner_ratio: float | None = DEFAULTS.inner_ratio,
    outer_rank: int = DEFAULTS.outer_rank,
    tau: float = DEFAULTS.tau,
    rotation: str = DEFAULTS.rotation,
    subspace: str = DEFAULTS.subspace,
    parameterisation: str = DEFAULTS.parameterisation,
    freeze_base: bool = True,
) -> list[LayerSummary]:
    """Replace every ``nn.Linear`` whose name matches a pattern by an ``SSVDOLinear``, in place.

    Arguments
    ---------
    model : nn.Module
        Any module; its current weights are decomposed (load pretrained weights first).
    targets : sequence of str, or mapping pattern -> settings
        ``fnmatch`` globs over ``model.named_modules()`` names. A mapping gives each pattern its
        own settings (keys among inner_ratio, outer_rank, tau, rotation, subspace,
        parameterisation), falling back to the keyword arguments. A module matched by several
        patterns takes the first.
    inner_ratio, outer_rank, tau, rotation, subspace, parameterisation
        Default settings, see ``SSVDOLinear``. ``inner_ratio`` is required unless every pattern
        of a mapping sets it.
    freeze_base : bool
        If True, every parameter of ``model`` other than the adapters' is frozen.

    Returns
    -------
    list of LayerSummary
        One per adapted layer, in module order.

    Raises
    ------
    ValueError
        A pattern matches no module, matches only ``MultiheadAttention`` internals, or a
        matched module is already adapted; or a setting is out of range (named).
    TypeError
        A pattern matches a module that is not an ``nn.Linear`` (module and pattern named).

    Example
    -------
    >>> net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 4))
    >>> [s.name for s in inject_ssvdo(net, ["0", "2"], inner_ratio=0.5, outer_rank=2)]
    ['0', '2']
    """
    defaults = SSVDOSettings(inner_ratio, outer_rank, tau, rotation, subspace, parameterisation)
    by_pattern = _pattern_settings(targets, defaults)
    for pattern, settings in by_pattern.items():
        if settings.inner_ratio is None:
            raise ValueError(f"inner_ratio is required (pattern {pattern!r} has none)")
    if isinstance(model, nn.Linear):
        raise ValueError("the model itself is an nn.Linear: wrap it with SSVDOLinear(...) directly")
    chosen = match_targets(model, list(by_pattern))
    return inject_layers(
        model, {name: by_pattern[pattern] for name, pattern in chosen}, freeze_base=freeze_base
    )


def inject_layers(
    model: nn.Module, plan: Mapping[str, SSVDOSettings], *, freeze_base: bool = True
) -> list[LayerSummary]:
    """Replace the ``nn.Linear`` layers named in ``plan`` (exact module names, e.g. from
    :func:`cl_ssvdo.ssvdo.targets.resolve_targets`) by ``SSVDOLinear`` with their settings.

    Returns one :class:`LayerSummary` per layer, in ``plan`` order. With ``freeze_base``, every
    other parameter of ``model`` is frozen first.

    >>> net = nn.Sequential(nn.Linear(4, 16), nn.ReLU())
    >>> summary = inject_layers(net, {"0": SSVDOSettings(inner_ratio=0.5, outer_rank=2)})
    >>> summary[0].inner_rank, summary[0].outer_rank, summary[0].trainable  # 1 + 2 + 12 * 2
    (2, 2, 27)
    """
    layers = []
    for name, settings in plan.items():
        module = model.get_submodule(name)
        if not isinstance(module, nn.Linear):
            raise TypeError(f"{name}: {type(module).__name__} is not an nn.Linear")
        layers.append((name, module, settings.required()))
    if freeze_base:
        model.requires_grad_(False)
    summaries = []
    for name, module, settings in layers:
        adapter = SSVDOLinear(module, **settings.to_dict())
        replace_module(model, name, adapter)
        trainable = 0
        for param in adapter.trainable_parameters:
            param.requires_grad_(True)
            trainable += param.numel()
        summaries.append(
            LayerSummary(
                name,
                adapter.out_features,
                adapter.in_features,
                adapter.inner_rank,
                adapter.outer_rank,
                trainable,
            )
        )
    return summaries


def replace_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` where ``model``'s submodule ``name`` (dotted) is."""
    parent_name, _, child_name = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child_name, module)


def ssvdo_layers(model: nn.Module) -> Iterator[tuple[str, SSVDOLinear]]:
    """(name, layer) for every ``SSVDOLinear`` in ``model``, in module order."""
    for name, module in model.named_modules():
        if isinstance(module, SSVDOLinear):
            yield name, module


def merge_ssvdo(model: nn.Module) -> None:
    """Merge every adapter exactly and replace it by its base ``nn.Linear`` holding W'.

    Afterwards ``model`` contains no ``SSVDOLinear``; the merged linears keep
    ``requires_grad=False`` as they had while frozen. Inject again for the next experience.
    """
    if isinstance(model, SSVDOLinear):
        raise TypeError(
            "merge_ssvdo needs a container module; for a bare SSVDOLinear call .merge()"
        )
    for name, layer in list(ssvdo_layers(model)):
        layer.merge()
        replace_module(model, name, layer.base_layer)
