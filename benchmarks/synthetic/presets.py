"""Stream sizes (``tiny`` for tests, ``small`` the default, ``medium``) and the generator config.

Hours of audio and generation times measured on the development machine are in docs/data.md;
``generate_stream`` prints the hours of what it generated.

Depends on the standard library only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from benchmarks.synthetic.voices import domain_spec

__all__ = ["GENERATOR_VERSION", "PRESETS", "Preset", "SyntheticConfig"]

#: Bump when a change to the generator changes its output (invalidates caches).
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class Preset:
    """Utterances per voice: training count per domain kind, valid/test counts, voice prefixes."""

    train_per_voice: Mapping[str, int]
    valid_per_voice: int
    test_per_voice: int
    max_train_voices: int | None = None
    max_test_voices: int | None = None


PRESETS: dict[str, Preset] = {
    "tiny": Preset({"adult": 24, "child": 24, "accent": 24}, 4, 12, 2, 2),
    "small": Preset({"adult": 600, "child": 200, "accent": 150}, 20, 80),
    "medium": Preset({"adult": 1500, "child": 500, "accent": 400}, 40, 150),
}


@dataclass
class SyntheticConfig:
    """What to generate. Any ``None`` size falls back to the preset.

    preset : "tiny" | "small" | "medium"
    seed : int; the same config and seed give the same manifests and audio bytes.
    domains : stream order; names from :data:`benchmarks.synthetic.voices.DOMAINS`
        (adult, child, accent, accent_scottish, accent_caribbean, accent_northern,
        accent_midlands, accent_rp, accent_nyc).
    name : stream name (stream.json ``name``).
    train_per_voice : int or ``{kind: int}`` override; valid/test_per_voice, max_*_voices: ints.
    """

    preset: str = "small"
    seed: int = 0
    domains: list[str] = field(default_factory=lambda: ["adult", "child", "accent"])
    name: str = "synthetic"
    train_per_voice: int | dict[str, int] | None = None
    valid_per_voice: int | None = None
    test_per_voice: int | None = None
    max_train_voices: int | None = None
    max_test_voices: int | None = None

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(
                f"SyntheticConfig.preset: unknown preset {self.preset!r}; choose one of {list(PRESETS)}"
            )
        if isinstance(self.domains, str):
            self.domains = [self.domains]
        self.domains = list(self.domains)
        if not self.domains:
            raise ValueError("SyntheticConfig.domains: at least one domain is needed")
        if len(set(self.domains)) != len(self.domains):
            raise ValueError(f"SyntheticConfig.domains: duplicate domain in {self.domains}")
        for d in self.domains:
            domain_spec(d)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"SyntheticConfig.seed: expected an int, got {self.seed!r}")
        for name in ("valid_per_voice", "test_per_voice", "max_train_voices", "max_test_voices"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(
                    f"SyntheticConfig.{name}: expected a non-negative int, got {value!r}"
                )

    @classmethod
    def from_any(cls, config: SyntheticConfig | Mapping[str, Any] | str | None) -> SyntheticConfig:
        """Accept a config, a dict (unknown keys raise, naming them), a preset name or None."""
        if config is None:
            return cls()
        if isinstance(config, cls):
            return config
        if isinstance(config, str):
            return cls(preset=config)
        if isinstance(config, Mapping):
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(config) - known)
            if unknown:
                raise ValueError(
                    f"synthetic config: unknown key(s) {unknown}; known: {sorted(known)}"
                )
            return cls(**dict(config))
        raise TypeError(
            f"synthetic config must be a SyntheticConfig, dict or preset name, not {type(config).__name__}"
        )

    def sizes(self, kind: str) -> tuple[int, int, int, int | None, int | None]:
        """``(train, valid, test, max_train_voices, max_test_voices)`` for a domain kind."""
        p = PRESETS[self.preset]
        if self.train_per_voice is None:
            train = p.train_per_voice[kind]
        elif isinstance(self.train_per_voice, int):
            train = self.train_per_voice
        else:
            train = self.train_per_voice.get(kind, p.train_per_voice[kind])
        return (
            int(train),
            p.valid_per_voice if self.valid_per_voice is None else self.valid_per_voice,
            p.test_per_voice if self.test_per_voice is None else self.test_per_voice,
            p.max_train_voices if self.max_train_voices is None else self.max_train_voices,
            p.max_test_voices if self.max_test_voices is None else self.max_test_voices,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def digest(self) -> str:
        """12 hex digits identifying the output (config + generator version)."""
        payload = json.dumps(
            {"config": self.to_dict(), "version": GENERATOR_VERSION}, sort_keys=True
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:12]
