"""Put SSVD-O adapters into any ``nn.Module`` by glob patterns over module names, and take
them out again (exact merge).

SpeechBrain feed-forward layers are named ``...ffn.0`` (d -> d_ffn) and ``...ffn.3``
(d_ffn -> d), so ``["*ffn.0", "*ffn.3"]`` targets every feed-forward block. Linear layers inside
``torch.nn.MultiheadAttention`` are never wrapped: its fused kernel reads ``out_proj.weight``
directly, so a wrapper there would be silently bypassed.
"""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from .layer import DEFAULT_PARAMETERISATION, SSVDOLinear, validate_settings

SETTING_NAMES = ("inner_ratio", "outer_rank", "tau", "rotation", "subspace", "parameterisation")


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


def _resolve_targets(
    targets: Sequence[str] | Mapping[str, Mapping[str, Any]], defaults: dict[str, Any]
) -> list[tuple[str, dict[str, Any]]]:
    if isinstance(targets, str):
        targets = [targets]
    if isinstance(targets, Mapping):
        resolved = []
        for pattern, overrides in targets.items():
            overrides = dict(overrides or {})
            unknown = sorted(set(overrides) - set(SETTING_NAMES))
            if unknown:
                raise ValueError(
                    f"targets[{pattern!r}]: unknown setting(s) {unknown}; allowed {SETTING_NAMES}"
                )
            resolved.append((pattern, {**defaults, **overrides}))
    else:
        resolved = [(pattern, dict(defaults)) for pattern in targets]
    if not resolved:
        raise ValueError("targets is empty: give at least one module-name pattern")
    for pattern, settings in resolved:
        if not isinstance(pattern, str):
            raise TypeError(f"target patterns must be strings, got {pattern!r}")
        if settings["inner_ratio"] is None:
            raise ValueError(f"inner_ratio is required (pattern {pattern!r} has none)")
        try:
            validate_settings(**settings)
        except (TypeError, ValueError) as err:
            raise type(err)(f"targets[{pattern!r}]: {err}") from None
    return resolved


def _attention_internals(model: nn.Module) -> list[str]:
    prefixes = [
        name for name, mod in model.named_modules() if isinstance(mod, nn.MultiheadAttention)
    ]
    return [p + "." if p else "" for p in prefixes]


def inject_ssvdo(
    model: nn.Module,
    targets: Sequence[str] | Mapping[str, Mapping[str, Any]],
    *,
    inner_ratio: float | None = None,
    outer_rank: int = 0,
    tau: float = 1e-3,
    rotation: str = "cayley",
    subspace: str = "top",
    parameterisation: str = DEFAULT_PARAMETERISATION,
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
    defaults = dict(
        inner_ratio=inner_ratio,
        outer_rank=outer_rank,
        tau=tau,
        rotation=rotation,
        subspace=subspace,
        parameterisation=parameterisation,
    )
    resolved = _resolve_targets(targets, defaults)
    attention = _attention_internals(model)
    adapter_bases = [name + ".base_layer" for name, _ in ssvdo_layers(model)]

    chosen: list[tuple[str, nn.Linear, dict[str, Any]]] = []
    hits = {pattern: 0 for pattern, _ in resolved}
    skipped = {pattern: [] for pattern, _ in resolved}
    for name, module in model.named_modules():
        pattern, settings = next(
            ((p, s) for p, s in resolved if fnmatch.fnmatchcase(name, p)), (None, None)
        )
        if pattern is None or any(
            name == base or name.startswith(base + ".") for base in adapter_bases
        ):
            continue
        if any(name.startswith(prefix) for prefix in attention if prefix):
            skipped[pattern].append(name)
            continue
        if isinstance(module, SSVDOLinear):
            raise ValueError(
                f"module {name!r} (pattern {pattern!r}) is already an SSVDOLinear; merge_ssvdo first"
            )
        if not isinstance(module, nn.Linear):
            raise TypeError(
                f"pattern {pattern!r} matches module {name!r} of type {type(module).__name__}; "
                "only torch.nn.Linear can be adapted"
            )
        hits[pattern] += 1
        chosen.append((name, module, settings))
    for pattern, _ in resolved:
        if hits[pattern]:
            if skipped[pattern]:
                warnings.warn(
                    f"pattern {pattern!r}: skipped {skipped[pattern]} inside torch.nn.MultiheadAttention "
                    "(its fused kernel reads those weights directly)",
                    stacklevel=2,
                )
        elif skipped[pattern]:
            raise ValueError(
                f"pattern {pattern!r} matches only modules inside torch.nn.MultiheadAttention "
                f"({skipped[pattern]}), which are never wrapped"
            )
        else:
            raise ValueError(f"pattern {pattern!r} matches no module of {type(model).__name__}")
    if any(name == "" for name, _, _ in chosen):
        raise ValueError("the model itself is an nn.Linear: wrap it with SSVDOLinear(...) directly")

    if freeze_base:
        model.requires_grad_(False)
    summaries = []
    for name, module, settings in chosen:
        adapter = SSVDOLinear(module, **settings)
        parent_name, _, child_name = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child_name, adapter)
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
        parent_name, _, child_name = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child_name, layer.base_layer)
