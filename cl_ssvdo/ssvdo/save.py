"""The unmerged SSVD-O adapters of a model as a peft adapter folder (``save_pretrained`` format).

A model carrying ``SSVDOLinear`` layers (``inject_ssvdo``, the SSVD-O plugin during an
experience) is written so that stock peft loads it back onto the plain model it was injected
into (every ``SSVDOLinear`` replaced by its ``base_layer``)::

    from peft import PeftModel
    adapted = PeftModel.from_pretrained(plain_model, folder)   # = the adapted model
    merged = adapted.merge_and_unload()                        # = merge_ssvdo's result

Each layer keeps its own settings (a budget schedule gives each its own ranks) through
``SSVDOConfig.layer_overrides``, and the saved tensors include the SVD factors, so loading
never re-decomposes differently.

Example
-------
>>> import copy, tempfile, torch
>>> from torch import nn
>>> from cl_ssvdo.ssvdo import inject_ssvdo
>>> net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 8))
>>> plain = copy.deepcopy(net)
>>> _ = inject_ssvdo(net, ["0"], inner_ratio=0.5, outer_rank=2)
>>> folder = save_ssvdo_adapters(net, tempfile.mkdtemp())
>>> {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in folder.iterdir()}
True
"""

from __future__ import annotations

import copy
from pathlib import Path

from torch import nn

from .inject import replace_module, ssvdo_layers
from .layer import SSVDOLinear

__all__ = ["plain_copy", "save_ssvdo_adapters"]


def plain_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ``SSVDOLinear`` replaced by its (unmerged) base layer."""
    out = copy.deepcopy(model)
    for name, layer in list(ssvdo_layers(out)):
        if layer.merged:
            raise ValueError(f"{name}: a merged SSVDOLinear has no unmerged adapter to save")
        replace_module(out, name, layer.base_layer)
    return out


def _settings(layer: SSVDOLinear) -> dict[str, object]:
    return {
        "inner_ratio": layer.inner_ratio,
        "outer_rank": layer.requested_outer_rank,
        "tau": layer.tau,
        "rotation": layer.rotation,
        "subspace": layer.subspace,
        "parameterisation": layer.parameterisation,
    }


def save_ssvdo_adapters(model: nn.Module, folder: str | Path) -> Path:
    """Write ``model``'s SSVD-O adapters to ``folder`` (``adapter_config.json`` +
    ``adapter_model.safetensors``, and peft's README model card); ``model`` is not changed.
    ``ValueError`` when it has none."""
    from peft import get_peft_model

    from .peft_registration import SSVDOConfig

    layers = list(ssvdo_layers(model))
    if not layers:
        raise ValueError("save_ssvdo_adapters: the model has no SSVDOLinear layer")
    first = _settings(layers[0][1])
    config = SSVDOConfig(
        target_modules=[name for name, _ in layers],
        **first,
        layer_overrides={
            name: {k: v for k, v in _settings(layer).items() if v != first[k]}
            for name, layer in layers
            if _settings(layer) != first
        }
        or None,
    )
    peft_model = get_peft_model(plain_copy(model), config)
    inner = peft_model.base_model.model
    for name, layer in layers:
        state = {k: v for k, v in layer.state_dict().items() if not k.startswith("base_layer.")}
        state.pop("_extra_state", None)
        target = inner.get_submodule(name).ssvdo_adapter["default"]
        missing, unexpected = target.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise RuntimeError(f"{name}: adapter state does not fit ({missing}, {unexpected})")
    out = Path(folder)
    peft_model.save_pretrained(str(out))
    return out
