"""CTranslate2 ``WhisperSpec`` -> ``transformers`` ``WhisperForConditionalGeneration``, exactly.

The mapping is one-to-one (``L`` = layer index, ``d`` = d_model)::

    encoder/conv{1,2}/{weight,bias}                 model.encoder.conv{1,2}.*
    encoder/position_encodings/encodings [1500, d]  model.encoder.embed_positions.weight
    */self_attention/linear_0  fused [3d, d]        self_attn.{q,k,v}_proj (k has no bias)
    */self_attention/linear_1                       self_attn.out_proj
    */self_attention/layer_norm/{gamma,beta}        self_attn_layer_norm.{weight,bias}
    decoder/layer_L/attention/linear_0 [d, d]       encoder_attn.q_proj
    decoder/layer_L/attention/linear_1 fused [2d,d] encoder_attn.{k,v}_proj
    decoder/layer_L/attention/linear_2              encoder_attn.out_proj
    decoder/layer_L/attention/layer_norm            encoder_attn_layer_norm
    */ffn/linear_{0,1}                              fc1 [ffn, d] / fc2 [d, ffn]
    */ffn/layer_norm                                final_layer_norm
    {encoder,decoder}/layer_norm                    model.{encoder,decoder}.layer_norm
    decoder/embeddings/weight [vocab, d]            model.decoder.embed_tokens.weight
    decoder/position_encodings/encodings [448, d]   model.decoder.embed_positions.weight
    decoder/projection/weight (alias)               proj_out.weight (tied)

Every tensor becomes float32 (float16/bfloat16 values are represented exactly). The k part of a
fused bias is dropped: HF's ``k_proj`` has none, and a key bias adds the same ``q . b`` to every
score of a query, which softmax ignores, so dropping it never changes the function.

>>> sd = split_fused(torch.arange(6.0).reshape(6, 1), 3)
>>> [t.flatten().tolist() for t in sd]
[[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .ct2 import CT2FormatError, CT2Model

__all__ = [
    "WhisperDims",
    "WhisperSpecError",
    "ct2_to_hf_state_dict",
    "split_fused",
    "whisper_dims",
]

WHISPER_SPEC = "WhisperSpec"


class WhisperSpecError(CT2FormatError):
    """A readable ``model.bin`` that is not a Whisper model this converter can map exactly."""


@dataclass(frozen=True)
class WhisperDims:
    """Sizes read off the CTranslate2 variables (all derivable, nothing assumed)."""

    n_mels: int
    d_model: int
    encoder_layers: int
    decoder_layers: int
    encoder_heads: int
    decoder_heads: int
    encoder_ffn: int
    decoder_ffn: int
    vocab_size: int
    max_source_positions: int
    max_target_positions: int


def split_fused(t: torch.Tensor, parts: int) -> tuple[torch.Tensor, ...]:
    """Split a fused projection ``[parts * d, ...]`` along dim 0 into ``parts`` equal blocks."""
    if t.shape[0] % parts:
        raise WhisperSpecError(
            f"fused projection of shape {list(t.shape)} not divisible by {parts}"
        )
    return tuple(t.chunk(parts, dim=0))


def _count_layers(model: CT2Model, side: str) -> int:
    n = 0
    while f"{side}/layer_{n}/ffn/linear_0/weight" in model.variables:
        n += 1
    return n


def whisper_dims(model: CT2Model) -> WhisperDims:
    """The architecture of a CTranslate2 Whisper model; :class:`WhisperSpecError` if not one."""
    if model.spec != WHISPER_SPEC:
        raise WhisperSpecError(f"spec is {model.spec!r}, not {WHISPER_SPEC!r}")
    try:
        conv1 = model.get("encoder/conv1/weight")
        emb = model.get("decoder/embeddings/weight")
        dims = WhisperDims(
            n_mels=conv1.shape[1],
            d_model=conv1.shape[0],
            encoder_layers=_count_layers(model, "encoder"),
            decoder_layers=_count_layers(model, "decoder"),
            encoder_heads=model.scalar("encoder/num_heads"),
            decoder_heads=model.scalar("decoder/num_heads"),
            encoder_ffn=model.get("encoder/layer_0/ffn/linear_0/weight").shape[0],
            decoder_ffn=model.get("decoder/layer_0/ffn/linear_0/weight").shape[0],
            vocab_size=emb.shape[0],
            max_source_positions=model.get("encoder/position_encodings/encodings").shape[0],
            max_target_positions=model.get("decoder/position_encodings/encodings").shape[0],
        )
    except KeyError as exc:
        raise WhisperSpecError(f"missing Whisper variable: {exc.args[0]}") from exc
    flags = {"decoder/pre_norm": 1, "decoder/scale_embeddings": 0, "decoder/alibi": 0}
    for name, want in flags.items():
        if name in model.variables and model.scalar(name) != want:
            raise WhisperSpecError(f"{name} = {model.scalar(name)}, Whisper has {want}")
    if dims.encoder_layers == 0 or dims.decoder_layers == 0:
        raise WhisperSpecError("no encoder or decoder layers found")
    return dims


def _f32(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float32).clone()


def _linear(model: CT2Model, src: str, dst: str, out: dict[str, torch.Tensor]) -> None:
    out[f"{dst}.weight"] = _f32(model.get(f"{src}/weight"))
    out[f"{dst}.bias"] = _f32(model.get(f"{src}/bias"))


def _norm(model: CT2Model, src: str, dst: str, out: dict[str, torch.Tensor]) -> None:
    out[f"{dst}.weight"] = _f32(model.get(f"{src}/gamma"))
    out[f"{dst}.bias"] = _f32(model.get(f"{src}/beta"))


def _fused(
    model: CT2Model, src: str, dst: str, names: tuple[str, ...], out: dict[str, torch.Tensor]
) -> None:
    weights = split_fused(model.get(f"{src}/weight"), len(names))
    biases = split_fused(model.get(f"{src}/bias"), len(names))
    for name, w, b in zip(names, weights, biases, strict=True):
        out[f"{dst}.{name}.weight"] = _f32(w)
        if name != "k_proj":
            out[f"{dst}.{name}.bias"] = _f32(b)


def _layer(model: CT2Model, side: str, i: int, out: dict[str, torch.Tensor]) -> None:
    src, dst = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
    _fused(
        model,
        f"{src}/self_attention/linear_0",
        f"{dst}.self_attn",
        ("q_proj", "k_proj", "v_proj"),
        out,
    )
    _linear(model, f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj", out)
    _norm(model, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm", out)
    if side == "decoder":
        _linear(model, f"{src}/attention/linear_0", f"{dst}.encoder_attn.q_proj", out)
        _fused(model, f"{src}/attention/linear_1", f"{dst}.encoder_attn", ("k_proj", "v_proj"), out)
        _linear(model, f"{src}/attention/linear_2", f"{dst}.encoder_attn.out_proj", out)
        _norm(model, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm", out)
    _linear(model, f"{src}/ffn/linear_0", f"{dst}.fc1", out)
    _linear(model, f"{src}/ffn/linear_1", f"{dst}.fc2", out)
    _norm(model, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm", out)


def ct2_to_hf_state_dict(model: CT2Model) -> dict[str, torch.Tensor]:
    """The float32 state dict of ``WhisperForConditionalGeneration`` for a CTranslate2 Whisper.

    Keys are exactly those of ``WhisperForConditionalGeneration(config).state_dict()``
    (``proj_out.weight`` shares storage with ``model.decoder.embed_tokens.weight``).
    """
    dims = whisper_dims(model)
    out: dict[str, torch.Tensor] = {}
    try:
        for conv in ("conv1", "conv2"):
            out[f"model.encoder.{conv}.weight"] = _f32(model.get(f"encoder/{conv}/weight"))
            out[f"model.encoder.{conv}.bias"] = _f32(model.get(f"encoder/{conv}/bias"))
        out["model.encoder.embed_positions.weight"] = _f32(
            model.get("encoder/position_encodings/encodings")
        )
        for i in range(dims.encoder_layers):
            _layer(model, "encoder", i, out)
        _norm(model, "encoder/layer_norm", "model.encoder.layer_norm", out)
        out["model.decoder.embed_tokens.weight"] = _f32(model.get("decoder/embeddings/weight"))
        out["model.decoder.embed_positions.weight"] = _f32(
            model.get("decoder/position_encodings/encodings")
        )
        for i in range(dims.decoder_layers):
            _layer(model, "decoder", i, out)
        _norm(model, "decoder/layer_norm", "model.decoder.layer_norm", out)
    except KeyError as exc:
        raise WhisperSpecError(f"missing Whisper variable: {exc.args[0]}") from exc
    projection = model.aliases.get("decoder/projection/weight")
    if projection not in (None, "decoder/embeddings/weight"):
        raise WhisperSpecError(
            f"decoder/projection/weight aliases {projection!r}, not the embedding"
        )
    if projection is None and "decoder/projection/weight" in model.variables:
        if not torch.equal(
            model.variables["decoder/projection/weight"], model.get("decoder/embeddings/weight")
        ):
            raise WhisperSpecError(
                "decoder/projection/weight differs from the embedding (Whisper ties them)"
            )
    out["proj_out.weight"] = out["model.decoder.embed_tokens.weight"]
    return out
