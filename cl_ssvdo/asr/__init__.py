"""SpeechBrain CTC speech recognisers: presets, tokenizers, decoding, pretraining, pretrained
folders and evaluation.

Manifests, datasets and scoring come from :mod:`cl_ssvdo.data` (the data contract).
Imports torch and speechbrain only (never avalanche, mlflow or benchmarks).
"""

from .decode import BeamDecoder, greedy_decode, make_decoder
from .evaluate import EvalReport, UtteranceScore, evaluate_folder, evaluate_model, transcribe
from .loss import ctc_batch_loss, ctc_targets
from .model import CTCASR, CTCEncoder, ExternalEncoderCTC, build_asr, count_parameters
from .presets import PRESETS, ASRConfig, resolve_preset
from .pretrain import PretrainResult, pretrain
from .pretrained import export_pretrained, load_encoder_asr, load_pretrained
from .tokenizer import BLANK_ID, CharTokenizer, SentencePieceTokenizer, Tokenizer

__all__ = [
    "ASRConfig",
    "BLANK_ID",
    "BeamDecoder",
    "CTCASR",
    "CTCEncoder",
    "CharTokenizer",
    "EvalReport",
    "ExternalEncoderCTC",
    "PRESETS",
    "PretrainResult",
    "SentencePieceTokenizer",
    "Tokenizer",
    "UtteranceScore",
    "build_asr",
    "count_parameters",
    "ctc_batch_loss",
    "ctc_targets",
    "evaluate_folder",
    "evaluate_model",
    "export_pretrained",
    "greedy_decode",
    "load_encoder_asr",
    "load_pretrained",
    "make_decoder",
    "pretrain",
    "resolve_preset",
    "transcribe",
]
