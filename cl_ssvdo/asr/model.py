"""CTC speech recognisers built from SpeechBrain lobes (raw audio in, log-probabilities out).

Features (Fbank) are computed inside the model, so a pretrained folder transcribes raw 16 kHz
audio. Parameter names that adapters target (Conformer/Transformer presets)::

    transformer.encoder.layers.{i}.ffn_module{1,2}.1.ffn.0   nn.Linear d_model -> d_ffn  (conformer)
    transformer.encoder.layers.{i}.ffn_module{1,2}.1.ffn.3   nn.Linear d_ffn -> d_model
    transformer.encoder.layers.{i}.pos_ffn.ffn.{0,3}         (transformer)
    transformer.encoder.layers.{i}.mha_layer.att.out_proj    inside torch MHA: never wrap
    transformer.encoder.layers.{i}.convolution_module.conv   depthwise Conv1d (masked, see below)
    transformer.custom_src_module.layers.0.w                 input projection
    ctc_head                                                 CTC output layer

so the globs ``*ffn.0`` and ``*ffn.3`` select exactly the feed-forward layers. The CRDNN option
names its layers ``crdnn.CNN.*``, ``crdnn.RNN.*``, ``crdnn.DNN.block_{i}.linear.w``.

Padding never leaks into an utterance's output (Conformer/Transformer): features, front-end
frames and the Conformer depthwise-convolution inputs past each utterance's end are zeroed and
``out_lens`` are exact frame counts, so evaluation results do not depend on the batch size or
on which utterances share a batch (tested to 1e-4).

Must not depend on avalanche, mlflow or benchmarks.
"""

from __future__ import annotations

from typing import Any

import torch
from speechbrain.lobes.features import Fbank
from speechbrain.lobes.models.CRDNN import CRDNN
from speechbrain.lobes.models.transformer.TransformerASR import TransformerASR
from speechbrain.nnet.RNN import GRU, LSTM, LiGRU
from speechbrain.processing.features import InputNormalization
from torch import nn

from .augment import Augmentation
from .presets import ASRConfig, resolve_preset


class ConvSubsampling(nn.Module):
    """Stride-2 3x3 ``Conv2d`` + ReLU layers over [B, T, F] features.

    Each layer halves time and frequency (ceil). Measured ~2x faster per step than SpeechBrain's
    ``ConvolutionFrontEnd`` with (64, 32) channels on CPU. Given the number of valid frames per
    utterance, frames past them are zeroed after every layer, so the valid outputs equal those
    of the utterance processed alone (no padding).

    Arguments
    ---------
    n_feats : int
        Feature dimension F.
    channels : tuple[int, ...]
        Output channels per layer.

    Example
    -------
    >>> sub = ConvSubsampling(80, (32, 32))
    >>> out, lens = sub(torch.randn(2, 101, 80), torch.tensor([101, 50]))
    >>> out.shape, lens.tolist(), sub.out_dim
    (torch.Size([2, 26, 640]), [26, 13], 640)
    """

    def __init__(self, n_feats: int, channels: tuple[int, ...] = (32, 32)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch, freq = 1, n_feats
        for ch in channels:
            layers += [nn.Conv2d(in_ch, ch, kernel_size=3, stride=2, padding=1), nn.ReLU()]
            in_ch, freq = ch, (freq + 1) // 2
        self.conv = nn.Sequential(*layers)
        self.out_dim = in_ch * freq

    def forward(
        self, feats: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[B, T, F] (+ [B] valid frame counts) -> [B, T', C * F'] (+ [B] valid counts)."""
        x = feats.unsqueeze(1)  # [B, 1, T, F]
        for i in range(0, len(self.conv), 2):
            x = self.conv[i + 1](self.conv[i](x))
            if lengths is not None:
                lengths = torch.div(lengths + 1, 2, rounding_mode="floor")
                x = x * _time_mask(lengths, x.shape[2]).to(x.dtype)[:, None, :, None]
        b, c, t, f = x.shape
        return x.permute(0, 2, 1, 3).reshape(b, t, c * f), lengths


def _time_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """[B, size] bool, True on the first ``lengths[b]`` positions."""
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


class MaskedDepthwiseConv1d(nn.Conv1d):
    """The Conformer convolution module's depthwise ``Conv1d``, reading zeros past each
    utterance's last frame.

    SpeechBrain's ``ConvolutionModule`` masks only its output, so the kernel (15-31 frames)
    reads the padded frames of shorter utterances and attention spreads that to every frame:
    a padded utterance's output then depends on what it is batched with. :class:`CTCASR` sets
    :attr:`valid` ([B, T] bool) around each encoder call; parameter names are unchanged.
    """

    valid: torch.Tensor | None = None

    @classmethod
    def replacing(cls, conv: nn.Conv1d) -> MaskedDepthwiseConv1d:
        """A copy of ``conv`` (same settings and weights) of this class."""
        new = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
        )
        new.load_state_dict(conv.state_dict())
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, T] -> [B, C, T'], padded frames zeroed first."""
        if self.valid is not None and self.valid.shape == (x.shape[0], x.shape[2]):
            x = x * self.valid[:, None, :].to(x.dtype)
        return super().forward(x)


_RNNS = {"gru": GRU, "lstm": LSTM, "ligru": LiGRU}


class CTCASR(nn.Module):
    """Fbank -> encoder -> linear CTC head; a complete recogniser on raw audio.

    Arguments
    ---------
    config : ASRConfig or str or dict
        Architecture (see :mod:`cl_ssvdo.asr.presets`).
    vocab_size : int
        Number of CTC classes, blank (id 0) included.

    Example
    -------
    >>> model = CTCASR("ci", vocab_size=29).eval()
    >>> log_probs, out_lens = model(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
    >>> log_probs.shape
    torch.Size([2, 26, 29])
    >>> out_lens
    tensor([1.0000, 0.5000])
    """

    def __init__(self, config: ASRConfig | str | dict[str, Any], vocab_size: int) -> None:
        super().__init__()
        cfg = resolve_preset(config)
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2 (blank + one token), got {vocab_size}")
        self.config = cfg
        self.vocab_size = int(vocab_size)
        self.compute_features = Fbank(sample_rate=cfg.sample_rate, n_mels=cfg.n_mels)
        self.normalize = InputNormalization(norm_type="sentence")
        self.augment = (
            Augmentation(cfg.augment, cfg.sample_rate) if cfg.augment is not None else None
        )
        if cfg.arch == "crdnn":
            self.crdnn = CRDNN(
                input_shape=[None, None, cfg.n_mels],
                cnn_blocks=len(cfg.cnn_channels),
                cnn_channels=list(cfg.cnn_channels),
                inter_layer_pooling_size=[2] * len(cfg.cnn_channels),
                time_pooling=cfg.time_pooling_size > 1,
                time_pooling_size=cfg.time_pooling_size,
                rnn_class=_RNNS[cfg.rnn_type],
                rnn_layers=cfg.rnn_layers,
                rnn_neurons=cfg.rnn_neurons,
                rnn_bidirectional=True,
                dnn_blocks=cfg.dnn_blocks,
                dnn_neurons=cfg.dnn_neurons,
                dropout=cfg.dropout,
            )
            enc_dim = cfg.dnn_neurons
        else:
            self.frontend = ConvSubsampling(cfg.n_mels, cfg.frontend_channels)
            self.transformer = TransformerASR(
                tgt_vocab=self.vocab_size,
                input_size=self.frontend.out_dim,
                d_model=cfg.d_model,
                nhead=cfg.nhead,
                num_encoder_layers=cfg.num_layers,
                num_decoder_layers=0,
                d_ffn=cfg.d_ffn,
                dropout=cfg.dropout,
                activation=nn.GELU,
                kernel_size=cfg.kernel_size,
                encoder_module=cfg.arch,
                attention_type=cfg.attention_type,
                normalize_before=True,
                causal=False,
            )
            enc_dim = cfg.d_model
            for layer in self.transformer.encoder.layers:
                module = getattr(layer, "convolution_module", None)
                if module is not None:
                    module.conv = MaskedDepthwiseConv1d.replacing(module.conv)
        self.ctc_head = nn.Linear(enc_dim, self.vocab_size)

    def features(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised log-mel features and valid frame counts.

        Returns
        -------
        feats : torch.Tensor
            [B, F, n_mels] float32, zero past each utterance's frames (augmented in training).
        n_frames : torch.Tensor
            [B] long: frames of each utterance without padding (``samples // hop + 1``).
        """
        with torch.autocast(device_type=wavs.device.type, enabled=False):
            wavs = wavs.float()
            if self.augment is not None:
                wavs = self.augment.waveform(wavs)
            feats = self.compute_features(wavs)
            n_frames = self._frame_counts(wav_lens, wavs.shape[1], feats.shape[1])
            # speechbrain's padding mask keeps frames < rel * F - 1e-6; n / F in float32 can
            # round up past n, so aim between frames.
            feats = self.normalize(feats, (n_frames.float() - 0.5) / feats.shape[1])
            if self.augment is not None:
                feats = self.augment.features(feats)
            # Padding frames hold log-mel values far below speech; the convolutional front end
            # would smear them into the last frames and attention into every frame, making the
            # output depend on the batch. Zero is what an unpadded utterance sees at its end.
            feats = feats * _time_mask(n_frames, feats.shape[1]).to(feats.dtype).unsqueeze(-1)
        return feats, n_frames

    def _frame_counts(self, wav_lens: torch.Tensor, n_samples: int, n_frames: int) -> torch.Tensor:
        hop = self.compute_features.compute_STFT.hop_length
        samples = torch.round(wav_lens.to(torch.float64) * n_samples)
        frames = torch.div(samples, hop, rounding_mode="floor") + 1
        return frames.clamp(1, n_frames).long()

    def encode(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder states [B, T', D] and their relative lengths [B]."""
        feats, n_frames = self.features(wavs, wav_lens)
        if self.config.arch == "crdnn":
            # The recurrent layers read the padding too: outputs depend slightly on the batch.
            return self.crdnn(feats), wav_lens.float()
        x, n_out = self.frontend(feats, n_frames.to(feats.device))
        rel = n_out.float() / x.shape[1]
        convs = [m for m in self.transformer.modules() if isinstance(m, MaskedDepthwiseConv1d)]
        valid = _time_mask(n_out, x.shape[1])
        for conv in convs:
            conv.valid = valid
        try:
            return self.transformer.encode(x, rel), rel
        finally:
            for conv in convs:
                conv.valid = None

    def forward(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Transcription scores.

        Arguments
        ---------
        wavs : torch.Tensor
            [B, T] raw audio at ``config.sample_rate``.
        wav_lens : torch.Tensor
            [B] lengths relative to T (SpeechBrain convention, longest = 1.0).

        Returns
        -------
        log_probs : torch.Tensor
            [B, T', V] CTC log-probabilities (blank = 0).
        out_lens : torch.Tensor
            [B] relative lengths of ``log_probs``: ``round(out_lens * T')`` is exactly the number
            of output frames of each utterance processed alone.
        """
        _check_inputs(wavs, wav_lens)
        enc, out_lens = self.encode(wavs, wav_lens)
        log_probs = torch.log_softmax(self.ctc_head(enc).float(), dim=-1)
        return log_probs, out_lens.to(log_probs.device, torch.float32)


def _check_inputs(wavs: torch.Tensor, wav_lens: torch.Tensor) -> None:
    if wavs.dim() != 2:
        raise ValueError(f"wavs must be [batch, time], got shape {tuple(wavs.shape)}")
    if wav_lens.dim() != 1 or wav_lens.shape[0] != wavs.shape[0]:
        raise ValueError(
            f"wav_lens must be [batch]={wavs.shape[0]}, got shape {tuple(wav_lens.shape)}"
        )
    if wav_lens.numel() and (wav_lens.min() <= 0 or wav_lens.max() > 1.0 + 1e-6):
        raise ValueError("wav_lens must be relative lengths in (0, 1]")


class CTCEncoder(nn.Module):
    """The ``encoder`` module of an exported folder: ``(wavs, wav_lens) -> log_probs``.

    SpeechBrain's ``EncoderASR`` calls ``mods.encoder(wavs, wav_lens)`` and decodes the result
    directly, so this drops the lengths that :class:`CTCASR` also returns.
    """

    def __init__(self, model: CTCASR) -> None:
        super().__init__()
        self.model = model

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> torch.Tensor:
        """[B, T], [B] -> [B, T', V] log-probabilities."""
        return self.model(wavs, wav_lens)[0]


class ExternalEncoderCTC(nn.Module):
    """Gives a user's SpeechBrain ``EncoderASR`` encoder the :class:`CTCASR` interface.

    Arguments
    ---------
    encoder : nn.Module
        ``mods.encoder`` of a pretrained folder; ``encoder(wavs, wav_lens)`` must return CTC
        log-probabilities [B, T', V] with the blank at id 0 (as SpeechBrain's CTC recipes do).
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.config = None

    def forward(
        self, wavs: torch.Tensor, wav_lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, T], [B] -> ([B, T', V] log-probabilities, [B] relative lengths)."""
        _check_inputs(wavs, wav_lens)
        return self.encoder(wavs, wav_lens), wav_lens.clone()


def build_asr(preset: str | dict[str, Any] | ASRConfig, vocab_size: int) -> CTCASR:
    """Builds a freshly initialised :class:`CTCASR` from a preset name, dict or config.

    Example
    -------
    >>> model = build_asr("ci", vocab_size=29)
    >>> 0.4e6 < count_parameters(model) < 0.6e6
    True
    """
    return CTCASR(preset, vocab_size)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
