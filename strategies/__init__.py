"""Avalanche side: the CTC template, WER metrics and the WER matrix, and the strategy plugins.

Imports cl_ssvdo, benchmarks and avalanche; never mlflow or experiments.
"""

from .metrics import (
    ErrorRatePluginMetric,
    MatrixCell,
    WERMatrix,
    cer,
    error_counts,
    wer,
    wer_metrics,
)
from .template import CTCCriterion, CTCTemplate, default_ctc_evaluator

__all__ = [
    "CTCCriterion",
    "CTCTemplate",
    "ErrorRatePluginMetric",
    "MatrixCell",
    "WERMatrix",
    "cer",
    "default_ctc_evaluator",
    "error_counts",
    "wer",
    "wer_metrics",
]

# ---------------------------------------------------------------------------------------------
# Adapter plugins, budget schedules and continual-learning plugins (issue 5).
# ---------------------------------------------------------------------------------------------
from .adapters import (  # noqa: E402  # noqa: E402
    AdapterPlugin,
    BaselinePlugin,
    DoRAPlugin,
    ExperienceRecord,
    FullFTPlugin,
    LayerRecord,
    LoRAPlugin,
    PiSSAPlugin,
    SSVDOPlugin,
    SSVDPlugin,
    make_baseline_plugin,
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
    "DoRAPlugin",
    "EWCPlugin",
    "ExperienceRecord",
    "FullFTPlugin",
    "IncompatiblePlugins",
    "LayerRecord",
    "LoRAPlugin",
    "LwFPlugin",
    "MASPlugin",
    "PiSSAPlugin",
    "SIPlugin",
    "SSVDOPlugin",
    "SSVDPlugin",
    "WeightAveragingPlugin",
    "check_plugins",
    "make_baseline_plugin",
]
