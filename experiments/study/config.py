"""Study configs: read, validate against their JSON schema, fill defaults, check the meaning.

Two versions, told apart by ``version: 2`` in the file (:func:`is_v2`):

- **v2** (``study_v2.yaml``, ``study_whisper*.yaml``; ``experiments/schema/study_v2.schema.json``)
  is the pre-registered protocol of ``docs/protocol.md``: :func:`load_study_v2` also applies
  ``experiments.study.protocol.check_protocol``. New studies use it.
- **v1** (``study.yaml``, ``study_quick.yaml``; ``experiments/schema/study.schema.json``) is the
  study behind the current ``docs/results.md``, kept so that page stays reproducible:
  :func:`load_study`.

Both go through one loader (:func:`read_study`: path or shipped name, ``extends``, ``--set``
overrides, the schema with the same validator and error messages as the run configs,
defaults from the schema).

>>> study, path = load_study("study_quick", ["seeds=[0]"])
>>> study["seeds"], path.name
([0], 'study_quick.yaml')
>>> is_v2("study_v2"), is_v2("study")
(True, False)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from experiments.config import (
    ConfigError,
    _load_with_extends,
    apply_overrides,
    fill_defaults,
    load_schema,
    resolve_config_path,
    validate_config,
)

__all__ = [
    "DEFAULT_CONFIG",
    "QUICK_CONFIG",
    "is_v2",
    "load_study",
    "load_study_v2",
    "read_study",
]

DEFAULT_CONFIG = "study.yaml"
QUICK_CONFIG = "study_quick.yaml"
ARM_DEFAULTS = (("main", True), ("all_bases", False), ("lr_from", None), ("overrides", {}),
                ("shares", [0.75, 0.25]))  # fmt: skip


def read_study(
    name_or_path: str | Path, overrides: Sequence[str], schema: str
) -> tuple[dict[str, Any], Path]:
    """A study config (path or shipped name) with ``extends`` and ``overrides`` applied,
    validated against ``experiments/schema/<schema>.schema.json`` before and after its
    defaults are filled in. Raises ``ConfigError`` naming the file and the field."""
    path = resolve_config_path(name_or_path)
    study = apply_overrides(_load_with_extends(path), overrides)
    validate_config(study, str(path), schema=schema)
    study = fill_defaults(study, load_schema(schema))
    validate_config(study, str(path), schema=schema)
    return study, path


def is_v2(name_or_path: str | Path) -> bool:
    """True when the study config file says ``version: 2``."""
    try:
        data = yaml.safe_load(resolve_config_path(name_or_path).read_text())
    except (ConfigError, OSError, yaml.YAMLError):
        return False
    return isinstance(data, Mapping) and data.get("version") == 2


def _check_meaning(study: Mapping[str, Any], source: str) -> None:
    """What the schema cannot say: the reference share is one of the shares (the study's and
    each model's own), budgets ascend, ``methods`` name configs of the study, ``lr_check``
    names the ssvdo config or baselines and models of the study."""
    shares = study["ssvdo"]["inner_shares"]
    if study["ssvdo"]["reference_share"] not in shares:
        raise ConfigError(
            f"{study['ssvdo']['reference_share']} is not one of ssvdo.inner_shares",
            "ssvdo.reference_share",
            shares,
            source,
        )
    configs = [study["ssvdo"]["config"], *study["baselines"], *study["references"]]
    known = [Path(c).stem for c in configs]
    for size, spec in study["models"].items():
        if list(spec["budgets"]) != sorted(set(spec["budgets"])):
            raise ConfigError(
                "list distinct budgets in ascending order", f"models.{size}.budgets", None, source
            )
        own = spec.get("inner_shares")
        if own is not None and study["ssvdo"]["reference_share"] not in own:
            raise ConfigError(
                f"{study['ssvdo']['reference_share']} (ssvdo.reference_share) is not listed",
                f"models.{size}.inner_shares",
                own,
                source,
            )
        for method in spec.get("methods") or []:
            if method not in known:
                raise ConfigError(
                    f"unknown method {method!r}", f"models.{size}.methods", known, source
                )
    check = study.get("lr_check")
    if check:
        matched = [Path(c).stem for c in [study["ssvdo"]["config"], *study["baselines"]]]
        for method in check["methods"]:
            if Path(method).stem not in matched:
                raise ConfigError(
                    f"{method!r} is not the ssvdo config or a baseline of the study",
                    "lr_check.methods",
                    matched,
                    source,
                )
        for size in check.get("models") or []:
            if size not in study["models"]:
                raise ConfigError(
                    f"unknown model {size!r}", "lr_check.models", list(study["models"]), source
                )


def load_study(
    name_or_path: str | Path, overrides: Sequence[str] = ()
) -> tuple[dict[str, Any], Path]:
    """Read a v1 study config (path or shipped name; ``extends`` and ``--set`` overrides
    applied), validate it and fill its defaults. Returns ``(study, path)``."""
    study, path = read_study(name_or_path, overrides, "study")
    _check_meaning(study, str(path))
    return study, path


def load_study_v2(
    name_or_path: str | Path, overrides: Sequence[str] = ()
) -> tuple[dict[str, Any], Path]:
    """Read, validate (schema, then docs/protocol.md) and fill a v2 study config."""
    from experiments.study.protocol import check_protocol

    study, path = read_study(name_or_path, overrides, "study_v2")
    for arm in study["arms"].values():
        for key, value in ARM_DEFAULTS:
            arm.setdefault(key, value)
    check_protocol(study, str(path))
    return study, path
