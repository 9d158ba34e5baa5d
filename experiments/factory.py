"""Config -> plugin objects -> CTC strategy. The plugin classes live in ``strategies``; this
module only maps validated config data onto their constructors. The keys each method accepts
(:func:`adapter_keys`) derive from :class:`cl_ssvdo.ssvdo.settings.SSVDOSettings` (``<layer
settings>``: its fields but ``inner_ratio``/``outer_rank``, which come from the schedule) and
:func:`cl_ssvdo.baselines.allowed_settings`; ``schedule`` / ``match`` are parsed once here
(:func:`parse_schedules`) and the plugins get the parsed objects.

``strategy.adapter`` (one adapter plugin, first in ``plugins=[...]``):

=========  ==========================================================================
method     plugin
=========  ==========================================================================
ssvdo      ``SSVDOPlugin(schedule, targets, outer, <layer settings>)``
ssvd       ``SSVDPlugin(inner_ratio= | schedule= | match=, targets, <layer settings>)``
lora/dora  ``BaselinePlugin(method, targets, rank= | match=, alpha, dropout, max_shortfall)``
pissa      idem
mica       idem (``rank``: MiCA's rank; ``B`` is frozen, so a rank costs ``n`` per layer)
corda      idem, plus ``corda_method`` (kpm | ipm) and ``calibration_batches`` (required)
osf        ``BaselinePlugin("osf", targets, rank= | match=, max_shortfall)`` (``rank``:
           trainable singular triplets per layer)
full       ``BaselinePlugin("full", targets, bias)``
=========  ==========================================================================

``strategy.plugins`` (in order, after the adapter): naive (none), replay
(``CTCReplayPlugin``), si, ewc, mas, lwf, agem (``CTCAGEMPlugin``), weight_avg
(``WeightAveragingPlugin``); their other keys are the constructors' arguments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from avalanche.core import BasePlugin
from torch import nn

from experiments.config import ConfigError

__all__ = [
    "adapter_keys",
    "build_adapter_plugin",
    "build_cl_plugins",
    "build_plugins",
    "build_strategy",
    "check_schedule",
    "parse_schedules",
    "resolve_device",
]


def _layer_keys() -> tuple[str, ...]:
    """SSVD-O layer settings a config may set for a whole adapter (``inner_ratio`` and
    ``outer_rank`` come from the schedule)."""
    from cl_ssvdo.ssvdo.settings import SETTING_NAMES

    return tuple(k for k in SETTING_NAMES if k not in ("inner_ratio", "outer_rank"))


def adapter_keys(method: str) -> tuple[str, ...]:
    """The keys ``strategy.adapter`` accepts for ``method`` besides ``method`` itself, derived
    from the settings of :mod:`cl_ssvdo.ssvdo.settings` and :mod:`cl_ssvdo.baselines` (the
    JSON schema is checked against them by a test).

    >>> adapter_keys("ssvdo")
    ('targets', 'schedule', 'outer', 'tau', 'rotation', 'subspace', 'parameterisation')
    >>> adapter_keys("lora")
    ('targets', 'rank', 'match', 'max_shortfall', 'alpha', 'dropout')
    """
    from cl_ssvdo.baselines import allowed_settings

    if method == "ssvdo":
        return ("targets", "schedule", "outer", *_layer_keys())
    if method == "ssvd":
        return ("targets", "schedule", "match", "inner_ratio", *_layer_keys())
    if method == "full":
        return ("targets", *allowed_settings("full"))
    internal = ("rank", "pissa_init", "calibration")  # rank/match below; the plugin builds these
    peft_only = [k for k in allowed_settings(method) if k not in internal]
    extra = ("calibration_batches",) if method == "corda" else ()
    return ("targets", "rank", "match", "max_shortfall", *peft_only, *extra)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def parse_schedules(adapter: Mapping[str, Any] | None) -> dict[str, Any]:
    """The adapter's ``schedule`` / ``match`` parsed into ``BudgetSchedule`` objects (absent
    keys left out); a bad one is a :class:`ConfigError` naming its field, raised before any
    model is built."""
    if not adapter:
        return {}
    from cl_ssvdo.schedule import BudgetSchedule, ScheduleError

    parsed = {}
    for key in ("schedule", "match"):
        if adapter.get(key) is None:
            continue
        try:
            parsed[key] = BudgetSchedule.from_dict(adapter[key], where=key)
        except ScheduleError as exc:
            raise ConfigError(str(exc), f"strategy.adapter.{key}") from exc
    return parsed


def check_schedule(adapter: Mapping[str, Any] | None) -> None:
    """Raise :class:`ConfigError` when the adapter's ``schedule`` / ``match`` is bad."""
    parse_schedules(adapter)


def build_adapter_plugin(adapter: Mapping[str, Any] | None) -> BasePlugin | None:
    """The adapter plugin of ``strategy.adapter`` (None when the whole model trains)."""
    if not adapter:
        return None
    from strategies.adapters.peft import BaselinePlugin
    from strategies.adapters.ssvdo import SSVDOPlugin, SSVDPlugin

    method = adapter["method"]
    kwargs = {k: adapter[k] for k in adapter_keys(method) if adapter.get(k) is not None}
    if "targets" in kwargs:
        kwargs["targets"] = tuple(kwargs["targets"])
    kwargs.update(parse_schedules(adapter))  # parsed once, passed on as objects
    try:
        if method == "ssvdo":
            return SSVDOPlugin(**kwargs)
        if method == "ssvd":
            return SSVDPlugin(**kwargs)
        return BaselinePlugin(method, **kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc), "strategy.adapter") from exc


def _cl_plugin(spec: Mapping[str, Any], train_batch: int, index: int) -> BasePlugin | None:
    from strategies.cl import (
        CTCAGEMPlugin,
        CTCReplayPlugin,
        EWCPlugin,
        LwFPlugin,
        MASPlugin,
        SynapticIntelligencePlugin,
        WeightAveragingPlugin,
    )

    classes = {
        "replay": CTCReplayPlugin,
        "si": SynapticIntelligencePlugin,
        "ewc": EWCPlugin,
        "mas": MASPlugin,
        "lwf": LwFPlugin,
        "agem": CTCAGEMPlugin,
        "weight_avg": WeightAveragingPlugin,
    }
    name = spec["name"]
    if name == "naive":
        return None
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    if name == "replay":
        kwargs.setdefault("batch_size", train_batch)
        kwargs.setdefault("batch_size_mem", train_batch)
    try:
        return classes[name](**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc), f"strategy.plugins.{index}") from exc


def build_cl_plugins(specs: Sequence[Mapping[str, Any]], train_batch: int = 16) -> list[BasePlugin]:
    """The continual-learning plugins of ``strategy.plugins``, in order."""
    plugins = [_cl_plugin(spec, train_batch, i) for i, spec in enumerate(specs)]
    return [p for p in plugins if p is not None]


def build_plugins(config: Mapping[str, Any]) -> list[BasePlugin]:
    """Adapter plugin first, then the continual-learning plugins; composition checked early
    (``strategies.cl.check_plugins``: incompatible combinations fail with the reason)."""
    from strategies.cl import IncompatiblePlugins, check_plugins

    strategy = config["strategy"]
    plugins: list[BasePlugin] = []
    adapter = build_adapter_plugin(strategy.get("adapter"))
    if adapter is not None:
        plugins.append(adapter)
    plugins += build_cl_plugins(strategy.get("plugins", []), config["train"]["batch_size"])
    try:
        check_plugins(plugins)
    except IncompatiblePlugins as exc:
        raise ConfigError(str(exc), "strategy.plugins") from exc
    return plugins


def _optimizer_factory(opt: Mapping[str, Any]):
    name, lr, wd = opt["name"], float(opt["lr"]), float(opt["weight_decay"])

    def factory(params: list[nn.Parameter]) -> torch.optim.Optimizer:
        if name == "adamw":
            return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
        if name == "adam":
            return torch.optim.Adam(params, lr=lr, weight_decay=wd)
        return torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=float(opt["momentum"]))

    return factory


def build_strategy(
    config: Mapping[str, Any],
    model: nn.Module,
    tokenizer: Any,
    *,
    evaluator: Any = None,
    extra_plugins: Sequence[BasePlugin] = (),
    device: str | torch.device | None = None,
    plugins: Sequence[BasePlugin] | None = None,
):
    """A ``strategies.CTCTemplate`` for ``config``: adapter + CL plugins from the config, then
    ``extra_plugins`` (e.g. a ``WERMatrix``); optimiser, batch sizes, epochs, step budget
    from ``config["train"]``. ``plugins``: the config's plugins when already built
    (:func:`build_plugins`), else built here. Returns ``(strategy, plugins)`` (the config's
    plugins only)."""
    from strategies.template import CTCTemplate

    train = config["train"]
    plugins = build_plugins(config) if plugins is None else list(plugins)
    opt = train["optimizer"]
    lr = float(opt["lr"])
    if lr <= 0:
        raise ConfigError("must be > 0 to train", "train.optimizer.lr")
    strategy = CTCTemplate(
        model=model,
        tokenizer=tokenizer,
        lr=lr,
        weight_decay=float(opt["weight_decay"]),
        train_mb_size=int(train["batch_size"]),
        train_epochs=int(train["epochs"]),
        eval_mb_size=int(train["eval_batch_size"]),
        device=device or resolve_device(train["device"]),
        grad_clip=float(train["grad_clip"]),
        amp=bool(train["amp"]),
        amp_dtype=str(train.get("amp_dtype", "float16")),
        plugins=[*plugins, *extra_plugins],
        evaluator=evaluator,
        max_steps_per_exp=train.get("max_steps"),
        optimizer_factory=_optimizer_factory(opt),
        num_workers=int(train["num_workers"]),
    )
    return strategy, plugins
