"""Avalanche side: the CTC template, WER metrics and the WER matrix, and the strategy plugins.

Imports cl_ssvdo, benchmarks and avalanche; never mlflow or experiments.
"""

from .template import CTCCriterion, CTCTemplate, default_ctc_evaluator
from .wer import ErrorRatePluginMetric, MatrixCell, WERMatrix, cer, error_counts, wer, wer_metrics

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
from .peft_plugins import (  # noqa: E402
    BaselinePlugin,
    DoRAPlugin,
    FullFTPlugin,
    LoRAPlugin,
    PiSSAPlugin,
    SSVDPlugin,
    make_baseline_plugin,
)
from .schedule import BudgetSchedule, GroupSetting, LayerSetting, ScheduleError  # noqa: E402
from .ssvdo_plugin import AdapterPlugin, ExperienceRecord, LayerRecord, SSVDOPlugin  # noqa: E402

__all__ += [
    "AdapterPlugin",
    "BaselinePlugin",
    "BudgetSchedule",
    "CTCAGEMPlugin",
    "CTCReplayPlugin",
    "DoRAPlugin",
    "EWCPlugin",
    "ExperienceRecord",
    "FullFTPlugin",
    "GroupSetting",
    "IncompatiblePlugins",
    "LayerRecord",
    "LayerSetting",
    "LoRAPlugin",
    "LwFPlugin",
    "MASPlugin",
    "PiSSAPlugin",
    "SIPlugin",
    "SSVDOPlugin",
    "SSVDPlugin",
    "ScheduleError",
    "WeightAveragingPlugin",
    "check_plugins",
    "make_baseline_plugin",
]
