"""Weights of the *plain* model seen through whatever adapter currently wraps its layers.

Continual-learning penalties (EWC, MAS) are defined on the weights of the plain model:
``W_name`` for every parameter name the model has when no adapter is attached. While an adapter
trains, some of those names no longer exist as parameters (``ffn.0.weight`` became
``ffn.0.base_layer.weight`` plus adapter factors) and the weight the layer actually applies is
the adapter's merged weight ``W'(theta)``. :func:`effective_weights` returns, for each plain
name, a tensor that equals the weight the layer currently applies and is differentiable with
respect to the trainable parameters, so a penalty on it is a penalty on the merged weights:

- a plain parameter (its owning module holds it directly): the parameter itself;
- a layer wrapped by an ``SSVDOLinear``: ``merged_weight()`` (and the base bias);
- any other wrapper (peft LoRA / DoRA / PiSSA layers): read the affine map by probing,
  ``W^T = f(I_n) - f(0)``, ``b = f(0)``. Valid for adapters that are affine in their input
  with no stochastic part at probe time (peft with ``lora_dropout=0``, as this project uses).

Also :func:`plain_state` / :func:`is_plain`: a copy of the plain model's float parameters and
the check that no adapter is attached (same parameter names and shapes as that copy).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

__all__ = ["effective_weights", "plain_parameters", "is_plain", "owner_path"]


def owner_path(name: str) -> tuple[str, str]:
    """``"enc.ffn.0.weight" -> ("enc.ffn.0", "weight")``."""
    module, _, attr = name.rpartition(".")
    return module, attr


def plain_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached clones of every floating-point parameter, by name."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.is_floating_point()}


def is_plain(model: nn.Module, reference: Mapping[str, torch.Tensor]) -> bool:
    """True when ``model`` has exactly the parameter names and shapes of ``reference``."""
    params = {n: p for n, p in model.named_parameters() if p.is_floating_point()}
    return params.keys() == reference.keys() and all(
        params[n].shape == reference[n].shape for n in params
    )


def _find_module(model: nn.Module, path: str) -> nn.Module | None:
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None


def _probe(
    module: nn.Module, in_features: int, like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(W [out, in], b [out]) of an affine module by evaluating it on I and 0."""
    inputs = torch.cat(
        [
            torch.eye(in_features, dtype=like.dtype, device=like.device),
            like.new_zeros(1, in_features),
        ]
    )
    out = module(inputs)
    bias = out[-1]
    return (out[:-1] - bias).T, bias


def effective_weights(model: nn.Module, names: Iterable[str]) -> dict[str, torch.Tensor]:
    """Current weight for each plain-model parameter name (see the module docstring).

    Raises ``KeyError`` naming the parameter when neither the parameter nor a wrapper module
    at its owner's path exists (the model changed structure in an unsupported way).
    """
    from cl_ssvdo.ssvdo.layer import SSVDOLinear

    params = dict(model.named_parameters())
    out: dict[str, torch.Tensor] = {}
    probed: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for name in names:
        path, attr = owner_path(name)
        module = _find_module(model, path)
        if module is not None and not isinstance(module, SSVDOLinear) and not _is_wrapper(module):
            if name in params:
                out[name] = params[name]
                continue
        if module is None:
            raise KeyError(f"parameter {name!r}: no module {path!r} in {type(model).__name__}")
        if attr not in ("weight", "bias"):
            raise KeyError(f"parameter {name!r}: the adapter at {path!r} hides it")
        if isinstance(module, SSVDOLinear):
            base = module.base_layer
            out[name] = module.merged_weight() if attr == "weight" else base.bias
            continue
        if path not in probed:
            base = _base_linear(module)
            probed[path] = _probe(module, base.in_features, base.weight)
        w, b = probed[path]
        out[name] = w if attr == "weight" else b
    return out


def _is_wrapper(module: nn.Module) -> bool:
    """A module standing in for a ``nn.Linear`` (it holds the original as ``base_layer``)."""
    return hasattr(module, "base_layer") and not isinstance(module, nn.Linear)


def _base_linear(module: nn.Module) -> nn.Linear:
    base = module
    while not isinstance(base, nn.Linear) and hasattr(base, "base_layer"):
        base = base.base_layer
    if not isinstance(base, nn.Linear):
        raise KeyError(f"{type(module).__name__} wraps no nn.Linear: cannot read its weight")
    return base
