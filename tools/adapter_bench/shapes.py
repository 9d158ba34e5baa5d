"""The feed-forward stacks the benchmark times: shapes, the SpeechBrain-named block, the targets.

>>> stack = FFStack(8, 32, 2)
>>> stack(torch.zeros(5, 8)).shape
torch.Size([5, 8])
>>> STACKS["whisper-tiny"].ffn
1536
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

TARGETS = ("*ffn.0", "*ffn.3")


@dataclass(frozen=True)
class StackShape:
    """A feed-forward stack: model width ``d``, hidden ``ffn``, ``blocks``, input ``tokens``."""

    name: str
    d: int
    ffn: int
    blocks: int
    tokens: int


class FFBlock(nn.Module):
    """SpeechBrain-named feed-forward block: ``ffn.0`` (d -> ffn) and ``ffn.3`` (ffn -> d)."""

    def __init__(self, d: int, ffn: int) -> None:
        super().__init__()
        self.ffn = nn.Sequential(nn.Linear(d, ffn), nn.ReLU(), nn.Dropout(0.0), nn.Linear(ffn, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.ffn(x)


class FFStack(nn.Module):
    """``blocks`` residual feed-forward blocks; x: (tokens, d) -> (tokens, d)."""

    def __init__(self, d: int, ffn: int, blocks: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(FFBlock(d, ffn) for _ in range(blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


STACKS = {
    s.name: s
    for s in (
        StackShape("owsm-like", 1024, 4096, 6, 2048),
        # Whisper-tiny: d_model 384, 4 encoder + 4 decoder layers with one 384 -> 1536 MLP each.
        StackShape("whisper-tiny", 384, 1536, 8, 2048),
        # The "small" Conformer preset (cl_ssvdo.asr.presets): d 144, 4 layers of two macaron
        # feed-forward modules 144 -> 576 -> 144.
        StackShape("conformer-small", 144, 576, 8, 2048),
        StackShape("small", 256, 1024, 6, 2048),
    )
}

# --quick: a tiny smoke stack (no verdicts are printed for it).
QUICK = StackShape("quick", 32, 128, 2, 64)


def build_stack(
    shape: StackShape, device: torch.device, seed: int, budget_params: int | None, lora_rank: int
) -> tuple[FFStack, list[str], list[tuple[int, int]], int]:
    """The frozen stack every measurement of ``shape`` starts from (built after
    ``torch.manual_seed(seed)``), its target names and weight shapes, and the budget
    (``budget_params``, else LoRA at ``lora_rank`` on every target)."""
    from cl_ssvdo import budget
    from cl_ssvdo.baselines import resolve_targets

    torch.manual_seed(seed)
    base = FFStack(shape.d, shape.ffn, shape.blocks).to(device)
    base.requires_grad_(False)
    names = resolve_targets(base, TARGETS)
    shapes = [tuple(base.get_submodule(n).weight.shape) for n in names]
    if budget_params is None:
        budget_params = sum(budget.lora_params(m, n, lora_rank) for m, n in shapes)
    return base, names, shapes, budget_params
