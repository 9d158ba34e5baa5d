"""Experiment configs: YAML (``yaml.safe_load`` only) validated against a JSON Schema kept as data.

A config is plain data. Composition is by ``extends: other.yaml`` (resolved relative to the
file, deep-merged: mappings merge, everything else replaces; a mapping tagged ``!replace``
replaces the parent's block instead of merging into it, e.g. ``schedule: !replace {decaying:
...}`` to switch schedule type) and by ``--set key=value``
overrides (dotted keys, list indices as numbers, values parsed as YAML scalars/flow
collections). Validation errors name the field path, the file and the allowed values.

Example::

    >>> cfg = load_config("ssvdo", ["train.max_steps=5", "seeds=[0, 1]"])
    >>> cfg["train"]["max_steps"], cfg["seeds"]
    (5, [0, 1])
"""

from __future__ import annotations

import argparse
import copy
import difflib
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

_SCIENTIFIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")
PACKAGE_DIR = Path(__file__).resolve().parent
SCHEMA_PATH = PACKAGE_DIR / "schema" / "experiment.schema.json"
CONFIGS_DIR = PACKAGE_DIR / "configs"

__all__ = [
    "CONFIGS_DIR",
    "ConfigError",
    "apply_overrides",
    "config_hash",
    "dotted",
    "flatten",
    "load_config",
    "load_schema",
    "resolve_config_path",
    "shipped_configs",
    "validate_config",
]


class ConfigError(ValueError):
    """An invalid experiment config.

    Attributes: ``field`` (dotted path, ``"<root>"`` for the top level), ``allowed`` (the
    allowed values or fields when the schema lists them) and ``source`` (file or ``--set``).
    """

    def __init__(
        self,
        message: str,
        field: str = "<root>",
        allowed: Iterable[Any] | None = None,
        source: str | None = None,
    ) -> None:
        self.field = field
        self.allowed = list(allowed) if allowed is not None else None
        self.source = source
        where = f" [{source}]" if source else ""
        hint = f"; allowed: {self.allowed}" if self.allowed else ""
        super().__init__(f"config field '{field}'{where}: {message}{hint}")


@cache
def load_schema(name: str = "experiment") -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) ``experiments/schema/<name>.schema.json`` as a dict
    (``experiment``: run configs; ``study``, ``study_v2``: study configs). A ``$ref`` to
    another schema file (``experiment.schema.json#/properties/executor``) is inlined.

    >>> load_schema("study")["properties"]["executor"] == load_schema()["properties"]["executor"]
    True
    """
    return _inline_file_refs(json.loads((SCHEMA_PATH.parent / f"{name}.schema.json").read_text()))


def _inline_file_refs(node: Any) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref", "")
        if len(node) == 1 and ".schema.json#/" in ref:
            file, pointer = ref.split("#/", 1)
            target: Any = load_schema(file.removesuffix(".schema.json"))
            for part in pointer.split("/"):
                target = target[part]
            return copy.deepcopy(target)
        return {k: _inline_file_refs(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline_file_refs(v) for v in node]
    return node


def shipped_configs() -> list[Path]:
    """Every experiment config shipped in ``experiments/configs`` (``study*.yaml`` excluded:
    those are study configs, validated by ``experiments.study.config``)."""
    return sorted(p for p in CONFIGS_DIR.glob("*.yaml") if not p.name.startswith("study"))


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A config file from a path, or from a shipped config's name (``"ssvdo"`` -> configs/ssvdo.yaml)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    for candidate in (CONFIGS_DIR / path, CONFIGS_DIR / f"{path}.yaml"):
        if candidate.is_file():
            return candidate
    names = [p.stem for p in shipped_configs()]
    raise ConfigError(
        f"no config file '{name_or_path}' (neither a path nor a shipped config)",
        field="<file>",
        allowed=names,
    )


class Replace(dict):
    """A mapping tagged ``!replace`` in a config: replaces the parent's block under ``extends``."""


class _ConfigLoader(yaml.SafeLoader):
    """``yaml.safe_load`` plus the ``!replace`` tag on mappings (nothing else is constructed)."""


def _construct_replace(loader: yaml.SafeLoader, node: yaml.Node) -> Replace:
    if not isinstance(node, yaml.MappingNode):
        raise yaml.constructor.ConstructorError(
            None, None, "!replace applies to a mapping", node.start_mark
        )
    return Replace(loader.construct_mapping(node, deep=True))


_ConfigLoader.add_constructor("!replace", _construct_replace)


def _plain(value: Any) -> Any:
    """Drops the ``Replace`` marker type (after merging, a config is plain dicts)."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(), Loader=_ConfigLoader)  # noqa: S506 (safe loader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", source=str(path)) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"the top level must be a mapping, got {type(data).__name__}", source=str(path)
        )
    return data


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``: mappings merge recursively, other values (lists too) and
    ``!replace`` mappings (:class:`Replace`) replace.

    >>> deep_merge({"s": {"constant": 1}}, {"s": Replace({"decaying": 2})})
    {'s': {'decaying': 2}}
    """
    out = copy.deepcopy(dict(base))
    for key, value in top.items():
        if isinstance(value, Replace):
            out[key] = _plain(value)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _load_with_extends(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise ConfigError(f"'extends' cycle: {chain}", field="extends", source=str(path))
    data = _read_yaml(path)
    parents = data.pop("extends", None)
    if parents is None:
        return _plain(data)
    if isinstance(parents, str):
        parents = [parents]
    if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
        raise ConfigError("must be a file name or a list of them", "extends", source=str(path))
    merged: dict[str, Any] = {}
    for parent in parents:
        parent_path = path.parent / parent
        if not parent_path.is_file():
            raise ConfigError(f"no such file '{parent_path}'", "extends", source=str(path))
        merged = deep_merge(merged, _load_with_extends(parent_path, (*seen, path)))
    return _plain(deep_merge(merged, data))


def _parse_key(key: str) -> list[str | int]:
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(
            f"bad override key '{key}' (use dotted names like train.lr)", key, source="--set"
        )
    return [int(p) if p.isdigit() else p for p in key.split(".")]


def set_by_path(cfg: dict[str, Any], key: str, value: Any, source: str = "--set") -> None:
    """Set ``cfg[a][b][0]...`` from ``"a.b.0"``, creating mappings where missing (or null)."""
    parts = _parse_key(key)
    node: Any = cfg
    for i, part in enumerate(parts[:-1]):
        here = ".".join(str(p) for p in parts[: i + 1])
        if isinstance(node, list):
            if not isinstance(part, int) or part >= len(node):
                raise ConfigError(f"list index {part!r} out of range", here, source=source)
            if node[part] is None:
                node[part] = {}
            node = node[part]
        elif isinstance(node, dict):
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
        else:
            raise ConfigError(
                f"cannot set a field inside a {type(node).__name__}", here, source=source
            )
    last = parts[-1]
    if isinstance(node, list):
        if not isinstance(last, int) or last >= len(node):
            raise ConfigError(f"list index {last!r} out of range", key, source=source)
        node[last] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"cannot set a field inside a {type(node).__name__}", key, source=source)


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.lr=1e-4"`` -> ``("train.lr", 0.0001)``; the value is parsed with ``yaml.safe_load``."""
    if "=" not in text:
        raise ConfigError(
            f"override '{text}' must look like key=value", "<override>", source="--set"
        )
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"value '{raw}' is not valid YAML: {exc}", key, source="--set") from exc
    if isinstance(value, str) and _SCIENTIFIC.match(value.strip()):
        # YAML 1.1 leaves "1e-4" a string; on the command line it is meant as a number.
        value = float(value)
    return key, value


def apply_overrides(
    cfg: dict[str, Any], overrides: Iterable[str] | Mapping[str, Any]
) -> dict[str, Any]:
    """A copy of ``cfg`` with ``key=value`` strings (or a ``{dotted_key: value}`` mapping) applied."""
    out = copy.deepcopy(cfg)
    items = overrides.items() if isinstance(overrides, Mapping) else map(parse_override, overrides)
    for key, value in items:
        set_by_path(out, key, copy.deepcopy(value))
    return out


def _resolve_ref(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        ref = schema["$ref"]
        target: Any = root
        for part in ref.lstrip("#/").split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def fill_defaults(value: Any, schema: dict[str, Any], root: dict[str, Any] | None = None) -> Any:
    """Insert the schema's ``default`` values for missing object properties (recursively)."""
    root = root or schema
    schema = _resolve_ref(schema, root)
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if not isinstance(sub, dict):
                continue
            sub_resolved = _resolve_ref(sub, root)
            if name not in value and "default" in sub_resolved:
                value[name] = copy.deepcopy(sub_resolved["default"])
            if name in value:
                value[name] = fill_defaults(value[name], sub_resolved, root)
        items = schema.get("additionalProperties")
        if isinstance(items, dict):
            known = set(schema.get("properties", {}))
            for name in value:
                if name not in known:
                    value[name] = fill_defaults(value[name], items, root)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [fill_defaults(v, schema["items"], root) for v in value]
    return value


def _field(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<root>"


def _error_to_config_error(error: jsonschema.ValidationError, source: str | None) -> ConfigError:
    field = _field(error)
    kind = error.validator
    if kind == "enum":
        allowed = list(error.validator_value)
        close = difflib.get_close_matches(str(error.instance), [str(a) for a in allowed], n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return ConfigError(f"{error.instance!r} is not allowed{hint}", field, allowed, source)
    if kind == "const":
        return ConfigError(
            f"{error.instance!r} is not allowed", field, [error.validator_value], source
        )
    if kind == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(known))
        sub = (
            f"{field}.{extra[0]}" if field != "<root>" and extra else (extra[0] if extra else field)
        )
        close = difflib.get_close_matches(extra[0], known, n=1) if extra else []
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return ConfigError(f"unknown field{hint}", sub, known, source)
    if kind == "required":
        missing = [r for r in error.validator_value if r not in error.instance]
        sub = ".".join(p for p in (field if field != "<root>" else "", missing[0]) if p)
        return ConfigError("required field is missing", sub, None, source)
    if kind == "type":
        expected = error.validator_value
        if isinstance(error.instance, str) and _SCIENTIFIC.match(error.instance.strip()):
            return ConfigError(
                f"expected {expected}, got the string {error.instance!r} (YAML 1.1 reads 1e-3 "
                "as text: write 1.0e-3)",
                field,
                None,
                source,
            )
        return ConfigError(
            f"expected {expected}, got {type(error.instance).__name__} ({error.instance!r})",
            field,
            None,
            source,
        )
    if kind in ("oneOf", "anyOf") and all(set(b) == {"required"} for b in error.validator_value):
        options = [b["required"][0] for b in error.validator_value]
        given = [o for o in options if isinstance(error.instance, dict) and o in error.instance]
        how = "exactly one" if kind == "oneOf" else "at least one"
        return ConfigError(f"give {how} of {options} (given: {given})", field, None, source)
    return ConfigError(error.message, field, None, source)


def validate_config(
    cfg: Mapping[str, Any], source: str | None = None, schema: str = "experiment"
) -> None:
    """Raise :class:`ConfigError` (field path, allowed values) for the most relevant error
    against the schema ``schema`` (:func:`load_schema`; study configs pass ``"study"``)."""
    validator = jsonschema.Draft202012Validator(load_schema(schema))
    errors = list(validator.iter_errors(cfg))
    if not errors:
        return
    best = jsonschema.exceptions.best_match(errors)
    raise _error_to_config_error(best, source)


def load_config(
    name_or_path: str | Path,
    overrides: Iterable[str] | Mapping[str, Any] = (),
    *,
    validate: bool = True,
) -> dict[str, Any]:
    """Read a config (path or shipped name), resolve ``extends``, apply overrides, fill defaults
    and validate. Returns a plain dict (JSON-serialisable)."""
    path = resolve_config_path(name_or_path)
    cfg = _load_with_extends(path)
    cfg = apply_overrides(cfg, overrides)
    if validate:
        validate_config(cfg, source=str(path))
        cfg = fill_defaults(cfg, load_schema())
        validate_config(cfg, source=str(path))
    return cfg


def dotted(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"max_steps": 5}}`` -> ``{"train.max_steps": 5}`` (values kept as they are;
    an empty mapping is a leaf)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(dotted(value, f"{name}."))
        else:
            out[name] = copy.deepcopy(value)
    return out


def flatten(cfg: Mapping[str, Any]) -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``: MLflow params (lists and nulls as JSON)."""
    return {
        name: value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        for name, value in dotted(cfg).items()
    }


def config_hash(cfg: Mapping[str, Any]) -> str:
    """A short, stable hash of a config (used to recognise a resumable run folder)."""
    blob = json.dumps(cfg, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:10]


def add_override_argument(
    parser: argparse.ArgumentParser,
    help: str = "override a config field (dotted key; value parsed as YAML), repeatable",
) -> None:
    """The ``--set KEY=VALUE`` option of every subcommand (collected into ``overrides``)."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help
    )
