"""Avalanche side: the CTC template, WER metrics and the WER matrix, and the strategy plugins.

Imports cl_ssvdo, benchmarks and avalanche; never mlflow or experiments.
"""

from .metrics import ErrorRatePluginMetric, MatrixCell, WERMatrix, wer_metrics
from .template import CTCCriterion, CTCTemplate, default_ctc_evaluator

__all__ = [
    "CTCCriterion",
    "CTCTemplate",
    "ErrorRatePluginMetric",
    "MatrixCell",
    "WERMatrix",
    "default_ctc_evaluator",
    "wer_metrics",
]

# ---------------------------------------------------------------------------------------------
# Adapter plugins, budget schedules and continual-learning plugins (issue 5).
# ---------------------------------------------------------------------------------------------
from .adapters import (  # noqa: E402
    AdapterPlugin,
    BaselinePlugin,
    ExperienceRecord,
    FullFTPlugin,
    LayerRecord,
    SSVDOPlugin,
    SSVDPlugin,
)
from .cl import (  # noqa: E402
    CTCAGEMPlugin,
    CTCReplayPlugin,
    EWCPlugin,
    IncompatiblePlugins,
    LwFPlugin,
    MASPlugin,
    SIPlugin,
    WeightAveragingPlugin,
    check_plugins,
)

__all__ += [
    "AdapterPlugin",
    "BaselinePlugin",
    "CTCAGEMPlugin",
    "CTCReplayPlugin",
    "EWCPlugin",
    "ExperienceRecord",
    "FullFTPlugin",
    "IncompatiblePlugins",
    "LayerRecord",
    "LwFPlugin",
    "MASPlugin",
    "SIPlugin",
    "SSVDOPlugin",
    "SSVDPlugin",
    "WeightAveragingPlugin",
    "check_plugins",
]
