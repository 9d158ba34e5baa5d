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
