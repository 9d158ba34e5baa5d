"""SSVD-O as a peft tuner: ``SSVDOPeftLinear`` (the layer), ``SSVDOModel`` (the tuner) and their
registration, so that after ``import cl_ssvdo``::

    model = peft.get_peft_model(model, cl_ssvdo.SSVDOConfig(target_modules=["0"], inner_ratio=0.1))
    ...
    plain = model.merge_and_unload()

works for plain torch models as for transformers ones. The maths is ``SSVDOAdapter`` (one per
adapter name, in the ``ssvdo_adapter`` ModuleDict); this file only adapts it to peft's
multi-adapter protocol. Saved adapters include the SVD factors (persistent buffers), so loading
never depends on recomputing the same singular-vector signs.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from peft.config import PeftConfig
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer, check_adapters_to_merge
from peft.utils import register_peft_method
from peft.utils.peft_types import PeftType
from torch import nn

from .adapter import SSVDOAdapter
from .peft_type import NAME, SSVDO_PEFT_TYPE
from .settings import DEFAULTS, SETTING_NAMES, SSVDOSettings
from .targets import targets_regex

PREFIX = "ssvdo_"


@dataclass
class SSVDOConfig(PeftConfig):
    """Configuration of an SSVD-O adapter for ``peft.get_peft_model``.

    Arguments
    ---------
    target_modules : list of str or str
        peft matching: a list matches names equal to, or ending in ``.<entry>``; a str is a
        full-match regex. Only ``nn.Linear`` targets, never ``nn.MultiheadAttention`` internals.
    exclude_modules : list of str or str, optional
        Same syntax, names to skip.
    inner_ratio : float
        p in [0, 1], fraction of the singular components rotated on the input side.
    outer_rank : int
        l >= 0, left singular vectors rotated into the complement (only where m > n).
    tau : float
        > 0, outer-rotation sensitivity.
    rotation : str
        "cayley" or "linear".
    subspace : str
        "top" or "tail" (which components the inner transform adapts).
    parameterisation : str
        "v2" (step-size calibrated, the default) or "v1" (the earlier maths; ``tau`` only
        matters there). Adapters saved before this setting existed were trained under "v1":
        load them with ``parameterisation="v1"``.
    modules_to_save : list of str, optional
        Extra modules to train and save in full (peft semantics).
    """

    target_modules: list[str] | str | None = field(
        default=None,
        metadata={"help": "Module names (list: exact or suffix match) or a full-match regex."},
    )
    exclude_modules: list[str] | str | None = field(
        default=None, metadata={"help": "Module names or regex to exclude."}
    )
    inner_ratio: float = field(default=0.1, metadata={"help": "Inner ratio p in [0, 1]."})
    outer_rank: int = field(
        default=DEFAULTS.outer_rank,
        metadata={"help": "Outer rank l >= 0 (effective only where m > n)."},
    )
    tau: float = field(
        default=DEFAULTS.tau, metadata={"help": "Outer-rotation regulariser tau > 0."}
    )
    rotation: str = field(default=DEFAULTS.rotation, metadata={"help": "'cayley' or 'linear'."})
    subspace: str = field(
        default=DEFAULTS.subspace,
        metadata={"help": "'top' or 'tail' components for the inner transform."},
    )
    parameterisation: str = field(
        default=DEFAULTS.parameterisation,
        metadata={"help": "'v2' (step-size calibrated) or 'v1' (the earlier maths)."},
    )
    modules_to_save: list[str] | None = field(
        default=None, metadata={"help": "Modules apart from SSVD-O layers to train and save."}
    )
    layer_overrides: dict[str, dict[str, Any]] | None = field(
        default=None,
        metadata={
            "help": "Full module name -> settings that differ from the above for that layer "
            "(a budget schedule gives each layer its own ranks)."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = SSVDO_PEFT_TYPE
        if isinstance(self.target_modules, list):
            self.target_modules = set(self.target_modules)
        if isinstance(self.exclude_modules, list):
            self.exclude_modules = set(self.exclude_modules)
        self.settings.required()  # validates
        for name, override in (self.layer_overrides or {}).items():
            try:
                self.settings.replace(**override).required()
            except (TypeError, ValueError) as exc:
                raise ValueError(f"layer_overrides[{name!r}]: {exc}") from exc

    @property
    def settings(self) -> SSVDOSettings:
        """The layer settings (the fields of :class:`~cl_ssvdo.ssvdo.settings.SSVDOSettings`)."""
        return SSVDOSettings(**{name: getattr(self, name) for name in SETTING_NAMES})

    @property
    def layer_settings(self) -> dict[str, object]:
        """Keyword arguments of ``SSVDOAdapter`` / ``SSVDOLinear``."""
        return self.settings.to_dict()


class SSVDOLayer(BaseTunerLayer):
    """peft tuner-layer mixin: adapters live in the ``ssvdo_adapter`` ModuleDict."""

    adapter_layer_names = ("ssvdo_adapter",)
    other_param_names = ()


class SSVDOPeftLinear(nn.Module, SSVDOLayer):
    """An ``nn.Linear`` with one or more named SSVD-O adapters (peft protocol).

    One active adapter runs by the cheaper of the low-rank and dense paths; several active
    adapters add their low-rank corrections. ``merge`` adds the active adapters' dW to the base
    weight (keeping W0 for a bit-exact ``unmerge``).
    """

    def __init__(self, base_layer: nn.Linear, adapter_name: str, **settings: Any) -> None:
        super().__init__()
        if not isinstance(base_layer, nn.Linear):
            raise TypeError(f"SSVD-O adapts torch.nn.Linear only, got {type(base_layer).__name__}")
        self.base_layer = base_layer
        self.ssvdo_adapter = nn.ModuleDict()
        self._disable_adapters = False
        self.merged_adapters = []
        self._active_adapter = adapter_name
        self.register_buffer("_w0_backup", None, persistent=False)
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.update_layer(adapter_name, **settings)

    def update_layer(
        self, adapter_name: str, inference_mode: bool = False, **settings: Any
    ) -> None:
        """Add adapter ``adapter_name``, decomposing the (unmerged) base weight."""
        if self.merged:
            raise RuntimeError(
                f"cannot add adapter {adapter_name!r} while adapters are merged; unmerge first"
            )
        weight = self.get_base_layer().weight
        adapter = SSVDOAdapter(
            self.out_features,
            self.in_features,
            **settings,
            dtype=weight.dtype,
            device=weight.device,
        )
        adapter.decompose_weight(weight)
        self.ssvdo_adapter[adapter_name] = adapter
        self.set_adapter(self.active_adapters, inference_mode=inference_mode)

    def get_delta_weight(self, adapter_name: str) -> torch.Tensor:
        """dW of one adapter, shape (m, n)."""
        return self.ssvdo_adapter[adapter_name].delta_weight()

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        base = self.base_layer
        if self.disable_adapters:
            if self.merged:
                self.unmerge()
            return base(x, *args, **kwargs)
        if self.merged:
            return base(x, *args, **kwargs)
        active = [name for name in self.active_adapters if name in self.ssvdo_adapter]
        if len(active) == 1:
            return self.ssvdo_adapter[active[0]].adapted_linear(x, base.weight, base.bias)
        result = base(x, *args, **kwargs)
        for name in active:
            result = result + self.ssvdo_adapter[name].lowrank_delta(x)
        return result

    @torch.no_grad()
    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        adapter_names = check_adapters_to_merge(self, adapter_names)
        weight = self.get_base_layer().weight
        for name in adapter_names:
            if name not in self.ssvdo_adapter:
                continue
            merged = weight + self.get_delta_weight(name)
            if safe_merge and not torch.isfinite(merged).all():
                raise ValueError(
                    f"NaNs detected in the merged weights. The adapter {name} seems to be broken"
                )
            if self._w0_backup is None:
                self._w0_backup = weight.detach().clone()
            weight.copy_(merged)
            self.merged_adapters.append(name)

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            warnings.warn("Already unmerged. Nothing to do.", stacklevel=2)
            return
        self.get_base_layer().weight.copy_(self._w0_backup)
        self._w0_backup = None
        self.merged_adapters = []

    def __repr__(self) -> str:
        return "ssvdo." + super().__repr__()


def _has_globs(entries: Any) -> bool:
    return not isinstance(entries, str) and any(any(c in e for c in "*?[") for e in entries or ())


class SSVDOModel(BaseTuner):
    """peft tuner that puts ``SSVDOPeftLinear`` layers into a model (see ``SSVDOConfig``).

    ``target_modules`` / ``exclude_modules`` lists may hold the plugins' globs (``"*ffn.0"``)
    next to peft's names/suffixes; such a list is turned into one regex before injection.
    """

    prefix: str = PREFIX
    tuner_layer_cls = SSVDOLayer
    target_module_mapping: dict[str, list[str]] = {}

    def _prepare_adapter_config(self, peft_config: PeftConfig, model_config: dict) -> PeftConfig:
        for key in ("target_modules", "exclude_modules"):
            entries = getattr(peft_config, key, None)
            if _has_globs(entries):
                setattr(peft_config, key, targets_regex(entries))
        return super()._prepare_adapter_config(peft_config, model_config)

    def _create_and_replace(
        self,
        ssvdo_config: SSVDOConfig,
        adapter_name: str,
        target: nn.Module,
        target_name: str,
        parent: nn.Module,
        current_key: str,
        **optional_kwargs: Any,
    ) -> None:
        if isinstance(parent, nn.MultiheadAttention):
            raise ValueError(
                f"target {current_key!r} is inside torch.nn.MultiheadAttention, whose fused kernel reads "
                "the weight directly; SSVD-O never wraps it"
            )
        settings = {
            **ssvdo_config.layer_settings,
            **(ssvdo_config.layer_overrides or {}).get(current_key, {}),
        }
        if isinstance(target, SSVDOPeftLinear):
            target.update_layer(adapter_name, **settings)
            return
        if not isinstance(target, nn.Linear):
            raise TypeError(
                f"target {current_key!r} is a {type(target).__name__}; SSVD-O adapts torch.nn.Linear only"
            )
        new_module = SSVDOPeftLinear(target, adapter_name, **settings)
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)
        self._replace_module(parent, target_name, new_module, target)


def register_with_peft() -> None:
    """Register SSVD-O with peft (idempotent; runs on import of this module)."""
    from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING

    if PEFT_TYPE_TO_TUNER_MAPPING.get(SSVDO_PEFT_TYPE) is SSVDOModel:
        return
    assert PeftType[NAME] is SSVDO_PEFT_TYPE
    register_peft_method(
        name=NAME.lower(), config_cls=SSVDOConfig, model_cls=SSVDOModel, prefix=PREFIX
    )


register_with_peft()
