"""Avalanche metrics for speech: WER/CER plugin metrics and the WER matrix (scored by
``cl_ssvdo.data.scoring``)."""

from .wer import ErrorRatePluginMetric, MatrixCell, WERMatrix, wer_metrics

__all__ = ["ErrorRatePluginMetric", "MatrixCell", "WERMatrix", "wer_metrics"]
