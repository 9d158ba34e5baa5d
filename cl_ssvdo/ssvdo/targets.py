"""The one target matcher: which ``nn.Linear`` layers of a model a list of patterns selects.

A pattern is a glob over module names (``fnmatch``, case-sensitive), e.g. ``"*ffn.0"``; a
pattern without ``*?[`` also matches as peft's ``target_modules`` list entries do (the exact
name or a ``.<entry>`` suffix, e.g. ``"ffn.0"``), so one list works for ``inject_ssvdo``,
:func:`cl_ssvdo.baselines.apply_adapter`, the adapter plugins and ``SSVDOConfig``
(:func:`targets_regex` is the same rule as one regex, for peft).

Rules (:func:`match_targets`): each pattern must select at least one ``nn.Linear``; linear
layers inside ``nn.MultiheadAttention`` are never selected (its fused kernel reads
``out_proj.weight`` directly, so a wrapper there would be silently bypassed); a matched module
that already wraps a ``base_layer`` (an adapter) is an error; a module matched by several
patterns belongs to the first.

Example
-------
>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 4))
>>> resolve_targets(net, ["0", "*2"])
['0', '2']
>>> [target_matches("blocks.0.ffn.0", p) for p in ("*ffn.0", "ffn.0", "0", "fn.0")]
[True, True, True, False]
"""

from __future__ import annotations

import fnmatch
import re
import warnings
from collections.abc import Iterable, Sequence

from torch import nn

__all__ = ["match_targets", "resolve_targets", "target_matches", "targets_regex"]

_GLOB_CHARS = "*?["


def target_matches(name: str, pattern: str) -> bool:
    """Whether module ``name`` matches target ``pattern``: a glob (``fnmatch``), or for a pattern
    without ``*?[``, peft's list rule (equal, or ending in ``.<pattern>``)."""
    if fnmatch.fnmatchcase(name, pattern):
        return True
    return not any(c in pattern for c in _GLOB_CHARS) and name.endswith("." + pattern)


def targets_regex(entries: Iterable[str]) -> str:
    """:func:`target_matches` over ``entries`` as one full-match regex (for peft's
    ``target_modules``).

    >>> rx = targets_regex(["*ffn.0", "out"])
    >>> [bool(re.fullmatch(rx, n)) for n in ("b.0.ffn.0", "head.out", "b.0.ffn.3", "readout")]
    [True, True, False, False]
    """
    parts = []
    for entry in sorted(entries):
        if any(c in entry for c in _GLOB_CHARS):
            parts.append(fnmatch.translate(entry))
        else:
            parts.append(r"(?:.*\.)?" + re.escape(entry))
    return "(?:" + "|".join(parts) + ")"


def _check_patterns(targets: Sequence[str]) -> list[str]:
    if isinstance(targets, str) or not isinstance(targets, Sequence) or len(targets) == 0:
        raise ValueError(f"targets: expected a non-empty list of glob patterns, got {targets!r}")
    for pattern in targets:
        if not isinstance(pattern, str):
            raise TypeError(f"targets: patterns must be strings, got {pattern!r}")
    return list(targets)


def match_targets(
    model: nn.Module, targets: Sequence[str], *, warn_skipped: bool = True
) -> list[tuple[str, str]]:
    """``(module name, first matching pattern)`` of every selected layer, in model order.

    Raises ``ValueError`` naming the pattern when it selects nothing (or only attention
    internals) or a matched module is already an adapter, ``TypeError`` naming pattern and
    module when it matches a module that is not an ``nn.Linear``. With ``warn_skipped``, a
    ``UserWarning`` lists the attention internals a pattern matched but skipped.
    """
    patterns = _check_patterns(targets)
    modules = [(name, mod) for name, mod in model.named_modules() if name]
    mha = [name + "." for name, mod in modules if isinstance(mod, nn.MultiheadAttention)]
    wrapped = [name + "." for name, mod in modules if hasattr(mod, "base_layer")]
    owner: dict[str, str] = {}
    for pattern in patterns:
        hits = [(name, mod) for name, mod in modules if target_matches(name, pattern)]
        hits = [(name, mod) for name, mod in hits if not name.startswith(tuple(wrapped))]
        usable = [(name, mod) for name, mod in hits if not name.startswith(tuple(mha))]
        if not usable:
            where = " outside torch.nn.MultiheadAttention" if hits else ""
            raise ValueError(f"targets: pattern {pattern!r} matches no module{where}")
        skipped = [name for name, _ in hits if name.startswith(tuple(mha))]
        if skipped and warn_skipped:
            warnings.warn(
                f"targets: pattern {pattern!r} skipped {skipped} inside "
                "torch.nn.MultiheadAttention (its fused kernel reads those weights directly)",
                UserWarning,
                stacklevel=3,
            )
        for name, mod in usable:
            if hasattr(mod, "base_layer"):
                raise ValueError(
                    f"targets: module {name!r} (pattern {pattern!r}) is already an "
                    f"{type(mod).__name__}; merge it first"
                )
            if not isinstance(mod, nn.Linear):
                raise TypeError(
                    f"targets: pattern {pattern!r} matches module {name!r} of type "
                    f"{type(mod).__name__}; only torch.nn.Linear can be adapted"
                )
            owner.setdefault(name, pattern)
    return [(name, owner[name]) for name, _ in modules if name in owner]


def resolve_targets(model: nn.Module, targets: Sequence[str]) -> list[str]:
    """Names of the ``nn.Linear`` modules selected by ``targets``, in model order
    (:func:`match_targets`, attention internals skipped silently)."""
    return [name for name, _ in match_targets(model, targets, warn_skipped=False)]
