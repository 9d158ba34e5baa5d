"""Avalanche metrics for speech: WER/CER plugin metrics and the WER matrix."""

from .wer import ErrorRatePluginMetric, MatrixCell, WERMatrix, cer, error_counts, wer, wer_metrics

__all__ = [
    "ErrorRatePluginMetric",
    "MatrixCell",
    "WERMatrix",
    "cer",
    "error_counts",
    "wer",
    "wer_metrics",
]
