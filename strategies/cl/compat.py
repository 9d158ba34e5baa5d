"""Early checks that a list of plugins composes, each failure with its reason.

Decisions (tested in ``tests/strategies/cl/test_cl_plugins.py``):

- At most one adapter plugin (SSVD-O or a PEFT baseline): two would wrap each other's layers.
- EWC and MAS compose with adapters: their penalties are defined on the plain model's weights as
  the layers currently apply them (the adapter's merged weight, :mod:`strategies.cl.weights`),
  so they constrain what the adapter changes; anchors and importances survive each merge.
- Synaptic Intelligence with an adapter that adds parameters (everything but ``full``) is
  rejected: SI integrates importance along the optimisation path of the *trainable parameters*;
  the adapter's parameters are created afresh, in a new basis, each experience and removed
  after it, so the accumulated importance would attach to coordinates that no longer exist
  (and Avalanche's SI "expands" them by shape). Use EWC or MAS with adapters; SI works with
  full fine-tuning (``FullFTPlugin``; Avalanche's plugin must then be listed before it, or use
  :class:`strategies.cl.SIPlugin`) or with no adapter plugin.
- Weight averaging (any plugin whose class sets ``needs_merged_model = True``) must come after
  the adapter plugin in ``plugins=[...]``: Avalanche calls ``after_training_exp`` in list order
  and the average is taken over the merged, plain model. The flag, not the class, is checked,
  so this module imports no plugin of this package (they all import it).
- Avalanche's classification-only plugins (EWC, MAS, LwF, GEM, A-GEM, RWalk, GDumb, LFL, CoPE,
  BiC, ...) assume ``criterion(out, y)`` with class logits; on a speech model (CTC or seq2seq,
  :func:`is_speech_model`; also when the model is not given) they are rejected with a pointer to
  the CTC versions here. On any other model (a classifier) they compose with SSVD-O as shipped.
  Avalanche's ``ReplayPlugin`` and ``SynapticIntelligencePlugin`` work on a CTC model as shipped.
- Two plugins of the same continual-learning class are rejected (a configuration mistake).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["IncompatiblePlugins", "check_plugins", "incompatibilities", "is_speech_model"]

# Modules whose models are speech recognisers (CTC or sequence-to-sequence).
_SPEECH_MODULES = (
    "cl_ssvdo.asr",
    "speechbrain.",
    "transformers.models.whisper",
    "transformers.models.wav2vec2",
    "transformers.models.hubert",
    "transformers.models.wavlm",
    "transformers.models.speech",
)


class IncompatiblePlugins(ValueError):
    """Raised by :func:`check_plugins`; the message lists every reason."""


# Avalanche plugin class name -> the CTC replacement to suggest.
_CLASSIFICATION_ONLY = {
    "EWCPlugin": "strategies.cl.EWCPlugin",
    "MASPlugin": "strategies.cl.MASPlugin",
    "LwFPlugin": "strategies.cl.LwFPlugin",
    "AGEMPlugin": "strategies.cl.CTCAGEMPlugin",
    "GEMPlugin": "strategies.cl.CTCAGEMPlugin",
    "RWalkPlugin": "strategies.cl.EWCPlugin",
    "GDumbPlugin": "strategies.cl.CTCReplayPlugin",
    "LFLPlugin": "strategies.cl.LwFPlugin",
    "CoPEPlugin": None,
    "BiCPlugin": None,
    "CWRStarPlugin": None,
    "MIRPlugin": None,
    "RARPlugin": None,
    "GSS_greedyPlugin": None,
    "FeatureDistillationPlugin": "strategies.cl.LwFPlugin",
    "GenerativeReplayPlugin": None,
}


def _is_adapter(plugin) -> bool:
    return getattr(plugin, "adapter_method", None) is not None


def is_speech_model(model: Any) -> bool:
    """Whether ``model`` is a CTC or seq2seq speech recogniser: ``model.is_speech_model`` when
    set, else a class from this project's ``cl_ssvdo.asr``, SpeechBrain or a Hugging Face speech
    model (Whisper, wav2vec 2.0, HuBERT, WavLM, Speech2Text); ``None`` (unknown) counts as speech.

    >>> import torch
    >>> is_speech_model(torch.nn.Linear(4, 2)), is_speech_model(None)
    (False, True)
    """
    if model is None:
        return True
    flag = getattr(model, "is_speech_model", None)
    if flag is not None:
        return bool(flag)
    return any(
        type(m).__module__.startswith(_SPEECH_MODULES)
        for m in (model.modules() if hasattr(model, "modules") else [model])
    )


def incompatibilities(plugins: Sequence, model: Any = None) -> list[str]:
    """Every reason why ``plugins`` (in ``plugins=[...]`` order) do not compose on ``model``
    (default: assumed a speech model); [] if fine."""
    from avalanche.training.plugins import SynapticIntelligencePlugin

    reasons: list[str] = []
    plugins = list(plugins)
    speech = is_speech_model(model)
    adapters = [(i, p) for i, p in enumerate(plugins) if _is_adapter(p)]
    if len(adapters) > 1:
        names = [type(p).__name__ for _, p in adapters]
        reasons.append(f"several adapter plugins {names}: at most one adapter per experience")
    for i, p in enumerate(plugins):
        cls = type(p)
        if (
            cls.__module__.startswith("avalanche.")
            and cls.__name__ in _CLASSIFICATION_ONLY
            and speech
        ):
            hint = _CLASSIFICATION_ONLY[cls.__name__]
            reasons.append(
                f"avalanche {cls.__name__} assumes classification (criterion(out, y) over class "
                f"logits) and cannot train a speech (CTC/seq2seq) model"
                + (f"; use {hint}" if hint else "")
            )
        if isinstance(p, SynapticIntelligencePlugin):
            for _, a in adapters:
                if a.adapter_method != "full":
                    reasons.append(
                        f"SynapticIntelligencePlugin with {type(a).__name__}: SI accumulates "
                        "importance on the trainable parameters, which this adapter re-creates in "
                        "a new basis every experience and removes after it; use EWCPlugin or "
                        "MASPlugin (defined on the merged weights) or full fine-tuning"
                    )
        if type(p) is SynapticIntelligencePlugin:
            for j, a in adapters:
                if a.adapter_method == "full" and j < i:
                    reasons.append(
                        f"avalanche SynapticIntelligencePlugin is listed after {type(a).__name__}: "
                        "its after_training_exp would see the restored (larger) trainable set it "
                        "never tracked; list it first or use strategies.cl.SIPlugin"
                    )
        if getattr(p, "needs_merged_model", False):
            for j, a in adapters:
                if j > i:
                    reasons.append(
                        f"{cls.__name__} is listed before {type(a).__name__}: it must come "
                        "after it, so that it works on the merged plain model (after_training_exp "
                        "runs in list order)"
                    )
    seen: dict[type, int] = {}
    for p in plugins:
        if type(p).__module__.startswith("strategies.cl") or isinstance(
            p, SynapticIntelligencePlugin
        ):
            key = (
                SynapticIntelligencePlugin if isinstance(p, SynapticIntelligencePlugin) else type(p)
            )
            seen[key] = seen.get(key, 0) + 1
    for cls, count in seen.items():
        if count > 1:
            reasons.append(
                f"{count} instances of {cls.__name__}: give one (with a list of weights)"
            )
    return reasons


def check_plugins(plugins: Sequence, model: Any = None) -> None:
    """Raise :class:`IncompatiblePlugins` listing every reason; return None when they compose."""
    reasons = incompatibilities(plugins, model)
    if reasons:
        raise IncompatiblePlugins("incompatible plugins:\n- " + "\n- ".join(reasons))
