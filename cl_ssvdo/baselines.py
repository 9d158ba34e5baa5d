"""One interface to put SSVD-O or a baseline on the same layers of any ``nn.Module``.

Methods: ``"ssvdo"`` and ``"ssvd"`` (this package's :class:`cl_ssvdo.SSVDOLinear`, SSVD being
``outer_rank=0``), ``"lora"``, ``"dora"``, ``"pissa"`` (``peft``'s ``LoraModel`` tuner applied
straight to the plain module -- no transformers model needed -- with ``use_dora=True`` or
``init_lora_weights="pissa"``), and ``"full"`` (the targets' own weights and biases train).

Targets are glob patterns over module names (``fnmatch``, case-sensitive), e.g. ``"*ffn.0"``;
an entry without ``*?[`` also matches as peft's ``target_modules`` list entries do (the exact
name or a ``.<entry>`` suffix, e.g. ``"ffn.0"``), so one list works in both places
(:mod:`cl_ssvdo.ssvdo.targets`, the one matcher, also behind ``inject_ssvdo`` and
:class:`cl_ssvdo.SSVDOConfig`). Each pattern must match at least one ``nn.Linear``; linear
layers inside ``nn.MultiheadAttention`` are never selected (its fused kernel reads
``out_proj`` directly). Every method adapts exactly the same resolved layers.

:func:`apply_adapter` freezes every parameter of the model, then makes the adapter's parameters
(only) trainable; :meth:`AdapterHandle.merge` writes the adapted weights into plain
``nn.Linear`` layers, removes every adapter module and restores each parameter's original
``requires_grad``. Unfreeze anything else (e.g. an output head) after applying.

Settings per method:

- ``ssvdo``: ``inner_ratio`` (required) and ``outer_rank=0`` for every layer, or instead
  ``allocation``, one ``(inner_ratio, outer_rank)`` per matched layer in model order (what
  :func:`cl_ssvdo.budget.allocate` returns); ``tau``, ``rotation``, ``subspace``,
  ``parameterisation`` with the defaults of :class:`cl_ssvdo.ssvdo.settings.SSVDOSettings`.
  ``ssvd``: the same without ``outer_rank`` and ``allocation``.
- ``lora`` / ``dora`` / ``pissa``: ``rank`` (required): one int for every layer, or one int per
  matched layer in model order (what :func:`cl_ssvdo.budget.match_ranks` returns; passed to
  peft as exact-name ``rank_pattern`` / ``alpha_pattern`` entries); ``alpha`` (default: each
  layer's rank, i.e. scale ``alpha / rank = 1``; a number for every layer, or one per layer);
  ``dropout=0.0``; ``pissa`` also ``pissa_init="pissa"`` (or ``"pissa_niter_<n>"``, peft's
  fast randomized SVD).
- ``full``: ``bias=True``.

Example
-------
>>> import torch
>>> from torch import nn
>>> model = nn.Sequential()
>>> model.add_module("ffn", nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 16)))
>>> handle = apply_adapter(model, "lora", ["*ffn.0", "*ffn.2"], rank=2)
>>> [(row.name, row.shape, row.trainable) for row in handle.summary()]
[('ffn.0', (64, 16), 160), ('ffn.2', (16, 64), 160)]
>>> type(handle.merge().ffn[0]).__name__
'Linear'
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from torch import nn

from cl_ssvdo.ssvdo.settings import SSVDOSettings, setting_defaults
from cl_ssvdo.ssvdo.targets import resolve_targets, target_matches

__all__ = [
    "Method",
    "METHODS",
    "AdapterLayer",
    "AdapterHandle",
    "allowed_settings",
    "resolve_targets",
    "target_matches",
    "apply_adapter",
]

Method = Literal["ssvdo", "ssvd", "lora", "dora", "pissa", "full"]
METHODS: tuple[str, ...] = ("ssvdo", "ssvd", "lora", "dora", "pissa", "full")

_SSVDO_SETTINGS = setting_defaults()
_ALLOWED: dict[str, dict[str, Any]] = {
    "ssvdo": {**_SSVDO_SETTINGS, "allocation": None},
    "ssvd": {k: v for k, v in _SSVDO_SETTINGS.items() if k != "outer_rank"},
    "lora": {"rank": None, "alpha": None, "dropout": 0.0},
    "dora": {"rank": None, "alpha": None, "dropout": 0.0},
    "pissa": {"rank": None, "alpha": None, "dropout": 0.0, "pissa_init": "pissa"},
    "full": {"bias": True},
}


def allowed_settings(method: str) -> dict[str, Any]:
    """Setting name -> default accepted by ``method`` (SSVD-O/SSVD: the fields of
    :class:`cl_ssvdo.ssvdo.settings.SSVDOSettings`, plus ``allocation`` for SSVD-O).

    >>> sorted(allowed_settings("lora"))
    ['alpha', 'dropout', 'rank']
    """
    if method not in _ALLOWED:
        raise ValueError(f"method: unknown {method!r}, expected one of {list(METHODS)}")
    return dict(_ALLOWED[method])


@dataclass(frozen=True)
class AdapterLayer:
    """One adapted layer: module name, ``(out_features, in_features)``, trainable parameters."""

    name: str
    shape: tuple[int, int]
    trainable: int


def _settings(method: str, given: dict[str, Any]) -> dict[str, Any]:
    allowed = _ALLOWED[method]
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ValueError(
            f"settings: {unknown} not accepted by method {method!r}; accepted: {sorted(allowed)}"
        )
    out = {**allowed, **given}
    if out.get("allocation") is not None:
        if "inner_ratio" in given or "outer_rank" in given:
            raise ValueError("settings: give either allocation or inner_ratio/outer_rank, not both")
        out["inner_ratio"] = out["outer_rank"] = None
    else:
        missing = [k for k in ("inner_ratio", "rank") if k in allowed and out[k] is None]
        if missing:
            raise ValueError(f"settings: method {method!r} needs {missing[0]}=...")
    if method in ("ssvdo", "ssvd"):
        _ssvdo_settings(out)  # bad values raise before the model is touched
    return out


def _ssvdo_settings(s: dict[str, Any]) -> SSVDOSettings:
    """The SSVD-O layer settings among a method's settings (None: not given here)."""
    return SSVDOSettings(**{k: v for k, v in s.items() if k in _SSVDO_SETTINGS and v is not None})


class AdapterHandle:
    """The adapted model plus what is needed to inspect and merge it.

    ``model`` is the very object passed to :func:`apply_adapter`, modified in place.
    """

    def __init__(
        self,
        model: nn.Module,
        method: str,
        names: list[str],
        settings: dict[str, Any],
        requires_grad: dict[str, bool],
        tuner: Any = None,
        had_peft_config: bool = False,
    ) -> None:
        self.model = model
        self.method = method
        self.targets = names
        self.settings = settings
        self._requires_grad = requires_grad
        self._tuner = tuner
        self._had_peft_config = had_peft_config
        self._shapes = {name: _linear_shape(model.get_submodule(name)) for name in names}
        self.merged = False

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimizer should update: those with ``requires_grad`` (empty
        placeholders, e.g. an outer ``L`` of shape (m - n, 0), left out)."""
        return [p for p in self.model.parameters() if p.requires_grad and p.numel() > 0]

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.trainable_parameters())

    def summary(self) -> list[AdapterLayer]:
        """Per adapted layer: name, ``(out, in)`` shape and number of trainable parameters."""
        rows = []
        for name in self.targets:
            module = self.model.get_submodule(name)
            count = sum(p.numel() for p in module.parameters() if p.requires_grad)
            rows.append(AdapterLayer(name, self._shapes[name], count))
        return rows

    def save_adapter(self, folder: str | Path) -> Path:
        """The unmerged adapter as a peft folder (``save_pretrained`` format), loadable onto the
        plain model it was applied to: ``PeftModel.from_pretrained(plain, folder)``.

        LoRA and DoRA (their base weights are the plain model's); SSVD-O/SSVD layers are saved
        by :func:`cl_ssvdo.ssvdo.save.save_ssvdo_adapters`. PiSSA rewrites the base weights
        (W - BA), so its adapter alone does not load onto the plain model: ``NotImplementedError``.
        """
        if self.method not in ("lora", "dora") or self.merged:
            raise NotImplementedError(
                f"save_adapter: {self.method} {'(merged) ' if self.merged else ''}has no unmerged "
                "adapter that loads onto the plain model (lora and dora do)"
            )
        import copy

        from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

        state = get_peft_model_state_dict(self._tuner, adapter_name="default")
        config = copy.deepcopy(self._tuner.peft_config["default"])
        fresh = get_peft_model(copy.deepcopy(self._tuner).unload(), config)
        # the tuner's keys are "model.<layer>...", a PeftModel's "base_model.model.<layer>..."
        result = set_peft_model_state_dict(fresh, {"base_model." + k: v for k, v in state.items()})
        if result.unexpected_keys:
            raise RuntimeError(f"save_adapter: keys that do not fit: {result.unexpected_keys[:5]}")
        fresh.save_pretrained(str(folder))
        return Path(folder)

    def merge(self) -> nn.Module:
        """Write the adapted weights into the layers and remove every adapter module.

        Returns the (same) model with plain ``nn.Linear`` targets; parameters get back the
        ``requires_grad`` they had before :func:`apply_adapter`. A handle merges once.
        """
        if self.merged:
            raise RuntimeError(f"{self.method} adapter was already merged")
        if self.method in ("ssvdo", "ssvd"):
            from cl_ssvdo.ssvdo import merge_ssvdo

            merge_ssvdo(self.model)
        elif self.method in ("lora", "dora", "pissa"):
            self.model = self._tuner.merge_and_unload()
            self._tuner = None
            # peft's tuner sets ``model.peft_config``; a plain module should not keep it (a
            # later get_peft_model on it would warn). peft 0.21 removes it itself on unload.
            if not self._had_peft_config and "peft_config" in vars(self.model):
                del self.model.peft_config
        for name, param in self.model.named_parameters():
            if name in self._requires_grad:
                param.requires_grad_(self._requires_grad[name])
        self.merged = True
        return self.model


def _linear_shape(module: nn.Module) -> tuple[int, int]:
    base = module
    while not isinstance(base, nn.Linear) and hasattr(base, "base_layer"):
        base = base.base_layer
    if not isinstance(base, nn.Linear):
        raise TypeError(f"expected an nn.Linear (or a wrapper of one), got {type(module).__name__}")
    return base.out_features, base.in_features


def _per_layer(name: str, value: Any, names: list[str]) -> list[Any] | None:
    """``value`` as one entry per layer when it is a sequence (checked length), else None."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        return None
    values = list(value)
    if len(values) != len(names):
        raise ValueError(
            f"{name}: {len(values)} values for {len(names)} matched layers {names} (give one "
            f"int for all layers or one per layer in model order)"
        )
    return values


def _check_int_rank(rank: Any, where: str = "rank") -> int:
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"{where}: must be an int >= 1, got {rank!r}")
    return rank


def _peft_ranks(s: dict[str, Any], names: list[str]) -> tuple[list[int], list[Any]]:
    """Per-layer ``(ranks, alphas)`` from the ``rank`` / ``alpha`` settings (checked)."""
    ranks = _per_layer("rank", s["rank"], names)
    alphas = _per_layer("alpha", s["alpha"], names)
    if ranks is None:
        ranks = [_check_int_rank(s["rank"])] * len(names)
    else:
        ranks = [_check_int_rank(r, f"rank[{i}]") for i, r in enumerate(ranks)]
    if alphas is None:
        alphas = list(ranks) if s["alpha"] is None else [s["alpha"]] * len(names)
    return ranks, alphas


def _apply_peft(model: nn.Module, method: str, names: list[str], s: dict[str, Any]) -> Any:
    from peft import LoraConfig
    from peft.tuners.lora import LoraModel

    ranks, alphas = _peft_ranks(s, names)
    extra: dict[str, Any] = {}
    if method == "dora":
        extra["use_dora"] = True
    elif method == "pissa":
        extra["init_lora_weights"] = s["pissa_init"]
    if len(set(ranks)) > 1 or len(set(alphas)) > 1:
        # peft matches pattern keys as ``(.*\.)?(key)$``; a leading ^ inside the group only
        # matches with an empty prefix, so each key names exactly one module.
        extra["rank_pattern"] = {"^" + re.escape(n): r for n, r in zip(names, ranks, strict=True)}
        extra["alpha_pattern"] = {"^" + re.escape(n): a for n, a in zip(names, alphas, strict=True)}
    config = LoraConfig(
        r=ranks[0],
        lora_alpha=alphas[0],
        lora_dropout=s["dropout"],
        # Exact names as one anchored regex: peft's list form would also match name suffixes.
        target_modules="^(?:" + "|".join(re.escape(n) for n in names) + ")$",
        bias="none",
        **extra,
    )
    return LoraModel(model, config, adapter_name="default")


def _apply_ssvdo(model: nn.Module, names: list[str], s: dict[str, Any]) -> None:
    from cl_ssvdo.ssvdo import inject_layers

    shared = _ssvdo_settings(s)
    if s.get("allocation") is None:
        plan = dict.fromkeys(names, shared.required())
    else:
        alloc = list(s["allocation"])
        if len(alloc) != len(names):
            raise ValueError(
                f"allocation: {len(alloc)} (inner_ratio, outer_rank) pairs for {len(names)} "
                f"matched layers {names}"
            )
        plan = {
            n: shared.replace(inner_ratio=float(p), outer_rank=int(ol))
            for n, (p, ol) in zip(names, alloc, strict=True)
        }
    inject_layers(model, plan, freeze_base=True)


def apply_adapter(
    model: nn.Module, method: Method, targets: Sequence[str], **settings: Any
) -> AdapterHandle:
    """Adapt the layers of ``model`` matched by ``targets`` with ``method`` (in place).

    Arguments
    ---------
    model : nn.Module
        Any module; its matched ``nn.Linear`` layers get the adapter.
    method : str
        One of :data:`METHODS`.
    targets : sequence of str
        Patterns over module names (:mod:`cl_ssvdo.ssvdo.targets`).
    **settings
        The method's settings (module docstring, :func:`allowed_settings`).
    """
    if method not in METHODS:
        raise ValueError(f"method: unknown {method!r}, expected one of {list(METHODS)}")
    s = _settings(method, settings)
    names = resolve_targets(model, targets)
    requires_grad = {name: p.requires_grad for name, p in model.named_parameters()}
    had_peft_config = "peft_config" in vars(model)
    if method in ("lora", "dora", "pissa"):
        _peft_ranks(s, names)  # bad ranks raise before the model is touched
    model.requires_grad_(False)
    tuner = None
    if method in ("ssvdo", "ssvd"):
        _apply_ssvdo(model, names, s)
    elif method == "full":
        for name in names:
            layer = model.get_submodule(name)
            layer.weight.requires_grad_(True)
            if s["bias"] and layer.bias is not None:
                layer.bias.requires_grad_(True)
    else:
        tuner = _apply_peft(model, method, names, s)
    return AdapterHandle(model, method, names, s, requires_grad, tuner, had_peft_config)
