"""Learning without Forgetting for CTC: distil the frame posteriors of the model as it entered
the experience (the teacher) into the model being trained.

Loss added to the CTC loss (``alpha`` weighted), per valid frame (masked by lengths):

    L_kd = T^2 * mean_{b, t < len_b} KL( softmax(z_teacher / T) || softmax(z_student / T) )

It is exactly 0 when student and teacher output the same posteriors. Temperature scaling of
log-posteriors equals that of logits (a per-frame constant shift cancels in the softmax).

The teacher is a frozen deep copy of the plain model, taken in ``before_train_dataset_adaptation``
(before any plugin's ``before_training_exp``, so after the previous adapter was merged and
before the next is injected). By default this includes the first experience, whose teacher is
the pretrained base model (``skip_first=True`` gives Avalanche's behaviour: no teacher before
the first experience is learnt). The teacher runs in eval mode.

Example
-------
>>> plugin = LwFPlugin(alpha=1.0, temperature=2.0)
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from avalanche.core import SupervisedPlugin

from ._ctc import frame_mask, minibatch_inputs
from .compat import check_plugins

__all__ = ["LwFPlugin", "masked_kd_loss"]


def masked_kd_loss(
    student_log_probs: torch.Tensor,
    teacher_log_probs: torch.Tensor,
    out_lens: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Temperature-scaled KL(teacher || student) averaged over valid frames, times ``T^2``.

    student_log_probs, teacher_log_probs : [B, T, V] log-posteriors; out_lens : [B] relative.

    Example
    -------
    >>> lp = torch.randn(2, 5, 4).log_softmax(-1)
    >>> float(masked_kd_loss(lp, lp, torch.tensor([1.0, 0.6])))
    0.0
    """
    if student_log_probs.shape != teacher_log_probs.shape:
        raise ValueError(
            f"student/teacher log_probs: shapes differ, {tuple(student_log_probs.shape)} vs "
            f"{tuple(teacher_log_probs.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature: must be > 0, got {temperature!r}")
    # float32 even under autocast: the KL of near-equal distributions cancels in half precision
    s = F.log_softmax(student_log_probs.float() / temperature, dim=-1)
    t = F.log_softmax(teacher_log_probs.detach().float() / temperature, dim=-1)
    kl = (t.exp() * (t - s)).sum(-1)  # [B, T]
    mask = frame_mask(out_lens, student_log_probs.shape[1]).to(kl.dtype)
    return temperature**2 * (kl * mask).sum() / mask.sum().clamp_min(1.0)


class LwFPlugin(SupervisedPlugin):
    """Adds ``alpha * L_kd`` to the loss before each backward (see the module docstring).

    Arguments
    ---------
    alpha : float or list of float
        Distillation weight >= 0; a list gives one per experience (the last one repeats).
    temperature : float
        Softmax temperature > 0.
    skip_first : bool
        No distillation during the first trained experience.
    """

    def __init__(
        self, alpha: float | list[float] = 1.0, temperature: float = 2.0, skip_first: bool = False
    ) -> None:
        super().__init__()
        alphas = list(alpha) if isinstance(alpha, list | tuple) else [alpha]
        if not alphas or any(not isinstance(a, int | float) or a < 0 for a in alphas):
            raise ValueError(f"alpha: must be a number >= 0 or a list of them, got {alpha!r}")
        if not isinstance(temperature, int | float) or temperature <= 0:
            raise ValueError(f"temperature: must be a number > 0, got {temperature!r}")
        self.alphas = [float(a) for a in alphas]
        self.temperature = float(temperature)
        self.skip_first = skip_first
        self.teacher: torch.nn.Module | None = None
        self._trained = 0
        self.last_loss: float = 0.0

    def alpha_for(self, index: int) -> float:
        return self.alphas[min(index, len(self.alphas) - 1)]

    def before_training(self, strategy, **kwargs) -> None:
        check_plugins(strategy.plugins)

    def before_train_dataset_adaptation(self, strategy, **kwargs) -> None:
        self.teacher = None
        if self.skip_first and self._trained == 0:
            return
        teacher = copy.deepcopy(strategy.model).eval()
        teacher.requires_grad_(False)
        self.teacher = teacher

    def before_backward(self, strategy, **kwargs) -> None:
        alpha = self.alpha_for(self._trained)
        if self.teacher is None or alpha == 0.0:
            return
        wavs, wav_lens = minibatch_inputs(strategy)
        with torch.no_grad():
            teacher_lp, _ = self.teacher(wavs, wav_lens)
        student_lp, out_lens = strategy.mb_output
        loss = masked_kd_loss(student_lp, teacher_lp, out_lens, self.temperature)
        self.last_loss = float(loss.detach())
        strategy.loss = strategy.loss + alpha * loss

    def after_training_exp(self, strategy, **kwargs) -> None:
        self._trained += 1
        self.teacher = None  # free memory; the next experience takes a fresh copy
