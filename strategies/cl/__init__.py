"""Continual-learning strategies for CTC speech recognition, as Avalanche plugins.

Naive sequential fine-tuning needs no plugin. Replay and SI come from Avalanche (checked
wrappers/re-exports); EWC, MAS, LwF, A-GEM are CTC ports of the classification-only Avalanche
plugins; weight averaging is the ASR baseline of Vander Eeckt and Van hamme. All compose with
the adapter plugins (:mod:`strategies.adapters.ssvdo`, :mod:`strategies.adapters.peft`) except
where :mod:`strategies.cl.compat` says why not.
"""

from .agem import CTCAGEMPlugin, project_gradient
from .compat import IncompatiblePlugins, check_plugins, incompatibilities
from .ewc import EWCPlugin, fisher_diagonal
from .lwf import LwFPlugin, masked_kd_loss
from .mas import MASPlugin, mas_importance, posterior_sq_norm
from .penalty import ImportancePenaltyPlugin, quadratic_penalty
from .replay import CTCReplayPlugin
from .si import SIPlugin, SynapticIntelligencePlugin
from .weight_averaging import WeightAveragingPlugin, average_into
from .weights import effective_weights

__all__ = [
    "CTCAGEMPlugin",
    "CTCReplayPlugin",
    "EWCPlugin",
    "ImportancePenaltyPlugin",
    "IncompatiblePlugins",
    "LwFPlugin",
    "MASPlugin",
    "SIPlugin",
    "SynapticIntelligencePlugin",
    "WeightAveragingPlugin",
    "average_into",
    "check_plugins",
    "effective_weights",
    "fisher_diagonal",
    "incompatibilities",
    "mas_importance",
    "masked_kd_loss",
    "posterior_sq_norm",
    "project_gradient",
    "quadratic_penalty",
]
