"""The voice catalogue and the domains built from it (which voices train, which are held out).

A voice is one engine speaker (``spk_id`` in the manifests). Each domain lists its training
voices and its held-out test voices, disjoint wherever the engine has more than one speaker for
the accent; a voice listed in both (flite ``awb``, the only non-espeak Scottish voice) is marked
``shared`` in ``stream.json``. Lists are ordered so that the first entries are fast and span
engines: smaller presets take a prefix.

Depends on the standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DOMAINS", "DomainSpec", "Voice", "domain_spec", "list_domains"]


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker.

    engine : "espeak" | "flite" | "festival"
    name : the engine's voice (espeak language, e.g. ``en-gb-scotland``; flite ``slt``;
        festival ``kal_diphone``).
    variant : espeak speaker variant (``m1``..``m8``, ``f1``..``f5``) or "".
    """

    engine: str
    name: str
    variant: str = ""

    @property
    def id(self) -> str:
        """Stable speaker id, e.g. ``espeak_en-us_f2``, ``flite_slt``, ``festival_kal``."""
        short = (
            self.name.removesuffix("_diphone").replace("cmu_us_", "").replace("_arctic_hts", "-hts")
        )
        return "_".join(p for p in (self.engine, short, self.variant) if p)


@dataclass(frozen=True)
class DomainSpec:
    """A domain: its kind (adult | child | accent, which picks the transform) and its voices."""

    name: str
    kind: str
    train: tuple[Voice, ...]
    test: tuple[Voice, ...]
    description: str = ""


def _es(lang: str, *variants: str) -> tuple[Voice, ...]:
    return tuple(Voice("espeak", lang, v) for v in variants)


_FL = {n: Voice("flite", n) for n in ("kal16", "slt", "rms", "awb")}
_FEST_KAL = Voice("festival", "kal_diphone")
_FEST_SLT = Voice("festival", "cmu_us_slt_arctic_hts")


def _accent(name: str, lang: str, description: str, extra: tuple[Voice, ...] = ()) -> DomainSpec:
    return DomainSpec(
        name,
        "accent",
        train=_es(lang, "m1", "f1", "m3", "f3") + extra,
        test=_es(lang, "f2", "m2", "f4") + extra,
        description=description,
    )


DOMAINS: dict[str, DomainSpec] = {
    spec.name: spec
    for spec in (
        DomainSpec(
            "adult",
            "adult",
            train=(
                Voice("espeak", "en-us", "m1"),
                _FL["kal16"],
                Voice("espeak", "en-us", "f1"),
                _FL["slt"],
                Voice("espeak", "en-us", "m3"),
                Voice("espeak", "en-us", "f3"),
                _FEST_KAL,
            ),
            test=(
                Voice("espeak", "en-us", "m2"),
                _FL["rms"],
                Voice("espeak", "en-us", "f2"),
                _FEST_SLT,
            ),
            description="US English, espeak-ng speaker variants, flite and festival voices",
        ),
        DomainSpec(
            "child",
            "child",
            train=(
                Voice("espeak", "en-us", "f1"),
                _FL["slt"],
                Voice("espeak", "en-us", "f3"),
                Voice("espeak", "en-us", "m3"),
            ),
            test=(
                Voice("espeak", "en-us", "f2"),
                Voice("espeak", "en-us", "f4"),
                Voice("espeak", "en-us", "m2"),
            ),
            description="adult US voices made child-like: raised F0 at synthesis, sox pitch "
            "+300..+500 cents (F0 and formants), tempo 0.85-0.95",
        ),
        DomainSpec(
            "accent",
            "accent",
            train=(
                Voice("espeak", "en-gb-scotland", "m1"),
                Voice("espeak", "en-029", "f1"),
                Voice("espeak", "en-gb-x-gbclan", "m3"),
                Voice("espeak", "en-gb-x-gbcwmd", "f3"),
                _FL["awb"],
            ),
            test=(
                Voice("espeak", "en-gb-scotland", "f2"),
                Voice("espeak", "en-029", "m2"),
                Voice("espeak", "en-gb-x-gbclan", "f4"),
                Voice("espeak", "en-gb-x-gbcwmd", "m4"),
                _FL["awb"],
            ),
            description="regional accents: Scottish, Caribbean, Lancaster (northern), "
            "West Midlands espeak-ng variants and flite awb (Scottish)",
        ),
        _accent("accent_scottish", "en-gb-scotland", "Scottish English", extra=(_FL["awb"],)),
        _accent("accent_caribbean", "en-029", "Caribbean English"),
        _accent("accent_northern", "en-gb-x-gbclan", "northern English (Lancaster)"),
        _accent("accent_midlands", "en-gb-x-gbcwmd", "West Midlands English"),
        _accent("accent_rp", "en-gb-x-rp", "Received Pronunciation"),
        _accent("accent_nyc", "en-us-nyc", "New York City English"),
    )
}


def list_domains() -> list[str]:
    return list(DOMAINS)


def domain_spec(name: str) -> DomainSpec:
    """The catalogue entry for ``name``; raises ValueError listing the known domains."""
    try:
        return DOMAINS[name]
    except KeyError:
        raise ValueError(
            f"unknown synthetic domain {name!r}; known domains: {', '.join(DOMAINS)}"
        ) from None
