"""One interface to put SSVD-O or a baseline on the same layers of any ``nn.Module``.

Methods: ``"ssvdo"`` and ``"ssvd"`` (this package's :class:`cl_ssvdo.SSVDOLinear`, SSVD being
``outer_rank=0``), ``"lora"``, ``"dora"``, ``"pissa"``, ``"mica"``, ``"corda"`` (``peft``'s
``LoraModel`` tuner applied straight to the plain module -- no transformers model needed -- with
``use_dora=True`` or ``init_lora_weights="pissa"`` / ``"mica"`` / ``"corda"``), ``"osf"``
(``peft``'s ``OSFModel``, orthogonal subspace fine-tuning) and ``"full"`` (the targets' own
weights and biases train).

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
- ``lora`` / ``dora`` / ``pissa`` / ``mica`` / ``corda``: ``rank`` (required): one int for every
  layer, or one int per matched layer in model order (what :func:`cl_ssvdo.budget.match_ranks`
  returns; passed to peft as exact-name ``rank_pattern`` / ``alpha_pattern`` entries);
  ``alpha`` (default: each layer's rank, i.e. scale ``alpha / rank = 1``; a number for every
  layer, or one per layer); ``dropout=0.0``; ``pissa`` also ``pissa_init="pissa"`` (or
  ``"pissa_niter_<n>"``, peft's fast randomized SVD).
- ``mica`` (Minor Component Adaptation): ``B`` is the left singular vectors of the ``rank``
  smallest singular values of ``W`` and stays frozen, ``A`` starts at zero and trains (so the
  trainable count is ``rank * n``, :func:`cl_ssvdo.budget.mica_params`); ``rank <= min(m, n)``.
- ``corda`` (context-oriented decomposition): ``calibration`` (required), a callable
  ``calibration(model)`` that runs the plain model on calibration inputs; it is called once,
  under ``torch.no_grad`` with the model in eval mode (each module's mode is restored after),
  while hooks collect each target layer's input covariance ``C`` (:func:`corda_covariances`:
  peft's per-call rule, one call = one sample, so feed one utterance per call and padding stays
  out); peft's ``preprocess_corda`` then takes the SVD of ``W C`` (``corda_method="kpm"``,
  knowledge-preserved: the smallest ``rank`` components become the trainable factors and the
  base keeps the rest; ``"ipm"``: the largest). Like PiSSA it rewrites the base weight
  (``W - BA``); ``rank <= min(m, n)``.
- ``osf`` (orthogonal subspace fine-tuning): ``rank``, the number of trainable singular
  triplets per layer (one int or one per layer), the bottom ones of ``W``'s SVD; peft's
  ``effective_rank`` (the frozen top part, kept fixed by projecting the gradients of ``U_low``
  and ``V_low`` off it) is ``min(m, n) - rank``, so ``1 <= rank <= min(m, n) - 1``; trainable
  count ``rank * (m + n + 1)`` (:func:`cl_ssvdo.budget.osf_params`).
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from torch import nn

from cl_ssvdo.budget import RANK_METHODS  # methods whose size is a per-layer rank
from cl_ssvdo.ssvdo.settings import SSVDOSettings, setting_defaults
from cl_ssvdo.ssvdo.targets import resolve_targets, target_matches

__all__ = [
    "Method",
    "METHODS",
    "LORA_METHODS",
    "RANK_METHODS",
    "CORDA_METHODS",
    "AdapterLayer",
    "AdapterHandle",
    "allowed_settings",
    "resolve_targets",
    "target_matches",
    "apply_adapter",
    "corda_covariances",
]

Method = Literal["ssvdo", "ssvd", "lora", "dora", "pissa", "mica", "corda", "osf", "full"]
METHODS: tuple[str, ...] = get_args(Method)
#: Methods built with peft's LoRA tuner (a rank, an alpha, a dropout).
LORA_METHODS: tuple[str, ...] = ("lora", "dora", "pissa", "mica", "corda")
#: Methods whose rank may not exceed :func:`cl_ssvdo.budget.rank_cap` of the layer.
_CAPPED = ("mica", "corda", "osf")
CORDA_METHODS = ("kpm", "ipm")

_SSVDO_SETTINGS = setting_defaults()
_ALLOWED: dict[str, dict[str, Any]] = {
    "ssvdo": {**_SSVDO_SETTINGS, "allocation": None},
    "ssvd": {k: v for k, v in _SSVDO_SETTINGS.items() if k != "outer_rank"},
    "lora": {"rank": None, "alpha": None, "dropout": 0.0},
    "dora": {"rank": None, "alpha": None, "dropout": 0.0},
    "pissa": {"rank": None, "alpha": None, "dropout": 0.0, "pissa_init": "pissa"},
    "mica": {"rank": None, "alpha": None, "dropout": 0.0},
    "corda": {
        "rank": None,
        "alpha": None,
        "dropout": 0.0,
        "corda_method": "kpm",
        "calibration": None,
    },
    "osf": {"rank": None},
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
    if method == "corda":
        if out["corda_method"] not in CORDA_METHODS:
            raise ValueError(
                f"corda_method: expected one of {list(CORDA_METHODS)}, got {out['corda_method']!r}"
            )
        if not callable(out["calibration"]):
            raise ValueError(
                "calibration: method 'corda' needs calibration=<callable(model)> that runs the "
                "model on calibration inputs (each target layer's input covariance is collected "
                f"during that pass), got {out['calibration']!r}"
            )
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
        elif self.method in RANK_METHODS:
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


def _ranks(s: dict[str, Any], names: list[str]) -> list[int]:
    """Per-layer ranks from the ``rank`` setting (checked)."""
    ranks = _per_layer("rank", s["rank"], names)
    if ranks is None:
        return [_check_int_rank(s["rank"])] * len(names)
    return [_check_int_rank(r, f"rank[{i}]") for i, r in enumerate(ranks)]


def _peft_ranks(s: dict[str, Any], names: list[str]) -> tuple[list[int], list[Any]]:
    """Per-layer ``(ranks, alphas)`` from the ``rank`` / ``alpha`` settings (checked)."""
    ranks = _ranks(s, names)
    alphas = _per_layer("alpha", s.get("alpha"), names)
    if alphas is None:
        alphas = list(ranks) if s.get("alpha") is None else [s["alpha"]] * len(names)
    return ranks, alphas


def _check_caps(model: nn.Module, method: str, names: list[str], ranks: list[int]) -> None:
    """MiCA, CorDA and OSF take at most :func:`cl_ssvdo.budget.rank_cap` per layer."""
    from cl_ssvdo.budget import rank_cap

    for name, rank in zip(names, ranks, strict=True):
        m, n = _linear_shape(model.get_submodule(name))
        cap = rank_cap(method, m, n)
        if rank > cap:
            raise ValueError(
                f"rank: {method} takes at most rank {cap} on layer {name!r} ({m} x {n}), got {rank}"
            )


_CORDA_FIELDS = ("covariance_matrix", "corda_method", "rank", "eigens")


def corda_covariances(
    model: nn.Module, names: Sequence[str], calibration: Callable[[nn.Module], Any]
) -> dict[str, Any]:
    """Each target layer's input covariance over ``calibration(model)``, as peft's CorDA hook
    computes it: per forward call, the input as ``(tokens, features)`` (here every leading
    dimension is flattened, so ``(B, T, D)`` and SpeechBrain's ``(T, B, D)`` both work; peft's
    own hook only drops a leading batch dimension of 1), in float32, divided by its maximum,
    ``X^T X``; then the mean over calls. The pass runs under ``torch.no_grad`` in eval mode;
    every module's mode is restored after and no hook is left. ``ValueError`` (naming
    ``calibration``) when a target layer is never run or gets a non-finite input."""
    import torch

    sums: dict[str, Any] = dict.fromkeys(names)
    calls = dict.fromkeys(names, 0)

    def hook(name: str):
        def collect(module: nn.Module, args: tuple, output: Any) -> None:
            x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
            x = x / torch.max(x).abs()
            if not torch.isfinite(x).all():
                raise ValueError(f"calibration: non-finite (or all-zero) input to layer {name!r}")
            cov = x.t() @ x
            sums[name] = cov if sums[name] is None else sums[name] + cov
            calls[name] += 1

        return collect

    modes = {m: m.training for m in model.modules()}
    handles = [model.get_submodule(n).register_forward_hook(hook(n)) for n in names]
    try:
        model.eval()
        with torch.no_grad():
            calibration(model)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    silent = [n for n in names if not calls[n]]
    if silent:
        raise ValueError(
            f"calibration: the calibration pass never ran target layers {silent} (CorDA needs "
            "each target's input covariance)"
        )
    return {n: sums[n] / calls[n] for n in names}


def _corda_calibrate(
    model: nn.Module, config: Any, names: list[str], calibration: Callable[[nn.Module], Any]
) -> None:
    """CorDA's preprocessing: the covariances of :func:`corda_covariances`, handed to peft's
    ``preprocess_corda`` through its ``covariance_file`` (a temporary file), which computes
    and crops each target's eigens (``kpm``: the smallest ``rank``). On failure no field is
    left on the layers."""
    import tempfile

    import torch
    from peft.tuners.lora.corda import preprocess_corda

    covariances = corda_covariances(model, names, calibration)
    corda = config.corda_config
    try:
        with tempfile.TemporaryDirectory(prefix="corda-") as folder:
            corda.covariance_file = str(Path(folder) / "covariance.pt")
            torch.save(covariances, corda.covariance_file)
            preprocess_corda(model, config)  # reads the file: no run_model needed
    except BaseException:
        for name in names:
            layer = model.get_submodule(name)
            for field in _CORDA_FIELDS:
                if field in vars(layer):
                    delattr(layer, field)
        raise
    finally:
        corda.covariance_file = None  # the tuner keeps the config: no stale path in it


def _apply_peft(model: nn.Module, method: str, names: list[str], s: dict[str, Any]) -> Any:
    from peft import LoraConfig
    from peft.tuners.lora import LoraModel

    ranks, alphas = _peft_ranks(s, names)
    extra: dict[str, Any] = {}
    if method == "dora":
        extra["use_dora"] = True
    elif method == "pissa":
        extra["init_lora_weights"] = s["pissa_init"]
    elif method == "mica":
        extra["init_lora_weights"] = "mica"
    elif method == "corda":
        from peft.tuners.lora.config import CordaConfig

        extra["init_lora_weights"] = "corda"
        extra["corda_config"] = CordaConfig(corda_method=s["corda_method"])
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
    if method == "corda":
        _corda_calibrate(model, config, names, s["calibration"])
    return LoraModel(model, config, adapter_name="default")


def _apply_osf(model: nn.Module, names: list[str], s: dict[str, Any]) -> Any:
    from peft import OSFConfig
    from peft.tuners.osf import OSFModel

    ranks = _ranks(s, names)
    # peft's ``effective_rank`` is the frozen top part; ``rank`` here is the trainable rest.
    frozen = [
        min(_linear_shape(model.get_submodule(n))) - r for n, r in zip(names, ranks, strict=True)
    ]
    config = OSFConfig(
        effective_rank=frozen[0],
        target_modules="^(?:" + "|".join(re.escape(n) for n in names) + ")$",
        # OSF matches pattern keys with re.search: anchor both ends so each names one module.
        rank_pattern=(
            {"^" + re.escape(n) + "$": k for n, k in zip(names, frozen, strict=True)}
            if len(set(frozen)) > 1
            else None
        ),
    )
    return OSFModel(model, config, adapter_name="default")


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
    if method in RANK_METHODS:  # bad ranks raise before the model is touched
        ranks = _peft_ranks(s, names)[0] if method in LORA_METHODS else _ranks(s, names)
        if method in _CAPPED:
            _check_caps(model, method, names, ranks)
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
        try:
            if method == "osf":
                tuner = _apply_osf(model, names, s)
            else:
                tuner = _apply_peft(model, method, names, s)
        except BaseException:  # e.g. a failing CorDA calibration pass: flags as they were
            for name, param in model.named_parameters():
                if name in requires_grad:
                    param.requires_grad_(requires_grad[name])
            raise
    return AdapterHandle(model, method, names, s, requires_grad, tuner, had_peft_config)
