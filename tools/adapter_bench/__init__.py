"""Adapter benchmark: SSVD-O against peft LoRA, the frozen model and full-factor recomposition.

Run from the repository root: ``python -m tools.adapter_bench`` (every stack in ``STACKS``:
OWSM-like, Whisper-tiny, the small Conformer's feed-forward shapes and a small d = 256 one),
``--stacks NAME,...`` to choose, ``--quick`` (tiny smoke run, no verdicts) or ``--device cuda``
(absolute step times on a GPU; refuses when there is none). Everything runs side by side in
one process and the report prints ratios, so the numbers compare like with like on whatever
machine runs it; the load average before and after each stack is printed with it.

What is measured, per feed-forward stack (``blocks`` x [Linear d->ffn, ReLU, Linear ffn->d]
with residuals, targets ``*ffn.0`` / ``*ffn.3``, ``tokens`` rows of input):

- train step (forward, loss, backward, AdamW step; median (``--stat min``: minimum) of
  ``repeats`` after ``warmup``,
  variants interleaved round-robin so background load hits them alike) of: the frozen model,
  peft LoRA at the per-layer ranks :func:`cl_ssvdo.budget.match_ranks` gives for the budget
  (uniform when the budget is a LoRA count), SSVD-O at
  every inner share of the same budget (:func:`cl_ssvdo.budget.allocate`), and the peer's way
  (:class:`FullFactorSSVDO`, W' = U' diag(s') V'^T recomposed from full factors every forward,
  as the public SSVD code does) at every share >= 0.25 (``--peer-default-only``: the default
  share). The input requires its gradient in every
  variant (as a layer below it would), so the frozen step includes a backward pass.
- multiply-adds per token of one train step (forward + backward, ``arithmetic_macs``), the
  structural cost each variant pays before any implementation detail. "MAC bound" is that
  count relative to the frozen model's, the floor a variant's step time x frozen could reach;
  "x bound" is the measured step x frozen over it (1.00 = at the arithmetic floor).
- peak memory of one train step: on CUDA ``torch.cuda.max_memory_allocated``; on CPU the
  parameters, buffers and optimizer state plus the peak of all storages allocated during the
  step (:class:`LiveBytes`: activations, temporaries, gradients; what the CUDA figure counts).
  The JSON also keeps the older "account" (saved-for-backward tensors, no temporaries).
- inference (no grad) of the merged SSVD-O model vs the base model.
- set-up (``setup_cost``): SSVD-O injection (its decomposition) of all targets vs one full
  thin ``torch.linalg.svd`` of the same weights, the routes it took, the same injection on the
  opt-in randomised route, and what one Householder QR of the layers with an outer rank costs
  alone. ``--setup-only`` measures just this, one table row per stack.
- adapter buffers: bytes SSVD-O stores beside the frozen weights vs those weights' bytes.

Modules: ``shapes`` (the stacks), ``peer`` (full-factor reference), ``arithmetic`` (MAC bound),
``variant`` (a model under test and its step), ``timing``, ``memory``, ``setup_cost``
(set-up vs thin SVD), ``stack`` (one stack measured), ``report`` (tables and verdicts),
``cli`` (flags and ``main``); ``eigh_crossover`` (``python -m tools.adapter_bench.eigh_crossover``:
the partial ``syevr`` of the set-up against torch's full ``eigh``, per size and share);
``width_alignment`` (``python -m tools.adapter_bench.width_alignment``: a hybrid training call
at component count a against a padded to a multiple of 16).
"""

from tools.adapter_bench.arithmetic import arithmetic_macs
from tools.adapter_bench.cli import main
from tools.adapter_bench.memory import LiveBytes, adapter_buffer_bytes, step_memory
from tools.adapter_bench.peer import FullFactorSSVDO, apply_full_factor
from tools.adapter_bench.report import format_report
from tools.adapter_bench.shapes import STACKS, TARGETS, FFBlock, FFStack, StackShape
from tools.adapter_bench.stack import bench_stack
from tools.adapter_bench.timing import median_time
from tools.adapter_bench.variant import Variant

__all__ = [
    "STACKS",
    "TARGETS",
    "FFBlock",
    "FFStack",
    "FullFactorSSVDO",
    "LiveBytes",
    "StackShape",
    "Variant",
    "adapter_buffer_bytes",
    "apply_full_factor",
    "arithmetic_macs",
    "bench_stack",
    "format_report",
    "main",
    "median_time",
    "step_memory",
]
