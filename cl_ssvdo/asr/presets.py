"""Model size presets for :func:`cl_ssvdo.asr.model.build_asr`.

=========  ==========================================================  ===========
preset     architecture                                                parameters
=========  ==========================================================  ===========
ci         Conformer d_model 96, 2 layers, d_ffn 384 (CI smoke tests)  ~0.51M
small      Conformer d_model 144, 4 layers, d_ffn 576 (default)        ~2.04M
medium     Conformer d_model 256, 6 layers, d_ffn 1024, kernel 31      ~9.3M
large      Conformer d_model 384, 8 layers, d_ffn 1536, kernel 31      ~27.6M
crdnn      SpeechBrain CRDNN (2 CNN blocks, 2 BiGRU layers, 1 DNN)     ~2.5M
=========  ==========================================================  ===========

All Conformer/Transformer presets share the front end measured in
docs/base-model.md: 80-dim Fbank -> per-utterance mean/variance normalisation ->
two stride-2 3x3 ``Conv2d`` (32 channels each, 4x subsampling in time) -> ``TransformerASR``
encoder (``num_decoder_layers=0``, ``causal=False``, ``regularMHA``) -> linear CTC head.
``small`` is exactly the measured recipe (2.04M parameters with 29 characters).

A preset may be given as a name, an :class:`ASRConfig`, or a dict; a dict may name a
``base`` preset that its other keys override, e.g. ``{"base": "small", "num_layers": 6}``.

Must not depend on avalanche, mlflow or benchmarks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .augment import AugmentConfig

ARCHS = ("conformer", "transformer", "crdnn")
RNN_TYPES = ("gru", "lstm", "ligru")


@dataclass(frozen=True)
class ASRConfig:
    """Architecture hyper-parameters of a CTC model (defaults = the ``small`` preset).

    Arguments
    ---------
    arch : str
        ``conformer``, ``transformer`` (both via ``TransformerASR``) or ``crdnn``.
    sample_rate : int
        Expected input sampling rate, Hz.
    n_mels : int
        Fbank channels.
    d_model, nhead, num_layers, d_ffn, kernel_size, attention_type, dropout :
        ``TransformerASR`` encoder settings (``kernel_size`` is the Conformer conv kernel).
    frontend_channels : tuple[int, ...]
        Output channels of the stride-2 ``Conv2d`` layers (each halves time and frequency).
    cnn_channels, rnn_type, rnn_layers, rnn_neurons, dnn_blocks, dnn_neurons, time_pooling_size :
        ``CRDNN`` settings (used when ``arch == "crdnn"``).
    augment : AugmentConfig or None
        Training-time augmentation; None disables it.
    """

    arch: str = "conformer"
    sample_rate: int = 16000
    n_mels: int = 80
    d_model: int = 144
    nhead: int = 4
    num_layers: int = 4
    d_ffn: int = 576
    kernel_size: int = 15
    attention_type: str = "regularMHA"
    dropout: float = 0.1
    frontend_channels: tuple[int, ...] = (32, 32)
    cnn_channels: tuple[int, ...] = (32, 64)
    rnn_type: str = "gru"
    rnn_layers: int = 2
    rnn_neurons: int = 192
    dnn_blocks: int = 1
    dnn_neurons: int = 192
    time_pooling_size: int = 4
    augment: AugmentConfig | None = None

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"preset.arch must be one of {ARCHS}, got {self.arch!r}")
        if self.rnn_type not in RNN_TYPES:
            raise ValueError(f"preset.rnn_type must be one of {RNN_TYPES}, got {self.rnn_type!r}")
        for name in ("sample_rate", "n_mels", "d_model", "nhead", "num_layers", "d_ffn"):
            if getattr(self, name) <= 0:
                raise ValueError(f"preset.{name} must be positive, got {getattr(self, name)}")
        if self.d_model % self.nhead:
            raise ValueError(
                f"preset.d_model ({self.d_model}) must be divisible by preset.nhead ({self.nhead})"
            )
        if not self.frontend_channels:
            raise ValueError("preset.frontend_channels must name at least one Conv2d layer")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"preset.dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-type mapping (lists, no dataclasses): what pretrained folders store."""
        data = asdict(self)
        data["frontend_channels"] = list(self.frontend_channels)
        data["cnn_channels"] = list(self.cnn_channels)
        data["augment"] = None if self.augment is None else self.augment.to_dict()
        return data


_AUG = AugmentConfig()

PRESETS: dict[str, ASRConfig] = {
    "ci": ASRConfig(d_model=96, num_layers=2, d_ffn=384),
    "small": ASRConfig(),
    "medium": ASRConfig(d_model=256, num_layers=6, d_ffn=1024, kernel_size=31, augment=_AUG),
    "large": ASRConfig(
        d_model=384, nhead=6, num_layers=8, d_ffn=1536, kernel_size=31, augment=_AUG
    ),
    "crdnn": ASRConfig(arch="crdnn"),
}


def resolve_preset(preset: str | dict[str, Any] | ASRConfig) -> ASRConfig:
    """Turns a preset name, dict or config into a validated :class:`ASRConfig`.

    Example
    -------
    >>> resolve_preset("ci").d_model
    96
    >>> resolve_preset({"base": "ci", "num_layers": 3}).num_layers
    3
    """
    if isinstance(preset, ASRConfig):
        return preset
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown ASR preset {preset!r}; choose one of {sorted(PRESETS)}")
        return PRESETS[preset]
    if not isinstance(preset, dict):
        raise TypeError(f"preset must be a name, dict or ASRConfig, got {type(preset).__name__}")
    values = dict(preset)
    base = resolve_preset(values.pop("base", "small"))
    known = {f.name for f in fields(ASRConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"preset: unknown keys {unknown}; valid keys are {sorted(known | {'base'})}"
        )
    for key in ("frontend_channels", "cnn_channels"):
        if key in values:
            values[key] = tuple(int(c) for c in values[key])
    if "augment" in values and values["augment"] is not None:
        aug = values["augment"]
        values["augment"] = aug if isinstance(aug, AugmentConfig) else AugmentConfig.from_dict(aug)
    return replace(base, **values)


def preset_name(config: ASRConfig) -> str | None:
    """The name of the preset equal to ``config``, if any."""
    for name, candidate in PRESETS.items():
        if candidate == config:
            return name
    return None
