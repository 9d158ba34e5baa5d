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
- set-up: SSVD-O injection (its decomposition) of all targets vs one full thin
  ``torch.linalg.svd`` of the same weights, and its two parts: the singular triplets alone
  (``decompose.singular_triplets``) and the Householder QR of the layers with an outer rank.
- adapter buffers: bytes SSVD-O stores beside the frozen weights vs those weights' bytes.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import math
import os
import platform
import statistics
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from cl_ssvdo import budget
from cl_ssvdo.baselines import AdapterHandle, apply_adapter, resolve_targets
from cl_ssvdo.ssvdo.decompose import complement_reflectors, singular_triplets

TARGETS = ("*ffn.0", "*ffn.3")
DEFAULT_SHARES = (1.0, 0.75, 0.5, 0.25, 0.0)
PEER_MIN_SHARE = 0.25  # the full-factor reference runs at every measured share >= this
TARGET_STEP_VS_BOUND = 1.10  # measured step x frozen / MAC bound, every share
TARGET_PEER_SPEEDUP = 1.6  # full-factor step / SSVD-O step at shares >= PEER_MIN_SHARE
TARGET_MEM_VS_LORA = 1.10
TARGET_SETUP_VS_SVD = 1 / 3
TARGET_BUFFERS_VS_WEIGHTS = 1.0
TARGET_MERGED_INFERENCE = 1.00


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


# --------------------------------------------------------------------------- the peer's way
class FullFactorSSVDO(nn.Module):
    """Reference SSVD-O that keeps full factors and recomposes W' on every forward.

    Stores U (m x r), s (r), V (n x r) and, with an outer rank, a dense U_perp (m x (m - n)),
    like the public SSVD code (which has no outer part; U_perp is the direct extension).
    Same trainable parameters as :class:`cl_ssvdo.SSVDOLinear` (Cayley rotation, tau).
    Used only to measure what the structured forward saves. x: (..., n) -> (..., m).
    """

    def __init__(
        self, base: nn.Linear, inner_ratio: float, outer_rank: int, tau: float = 1e-3
    ) -> None:
        super().__init__()
        m, n = base.weight.shape
        self.k = budget.inner_rank(inner_ratio, min(m, n))
        self.l = budget.effective_outer_rank(m, n, outer_rank)
        self.tau = tau
        weight = base.weight.detach()
        U, s, Vh = torch.linalg.svd(weight, full_matrices=self.l > 0)
        r = min(m, n)
        self.register_buffer("U", U[:, :r].contiguous())
        self.register_buffer("s", s)
        self.register_buffer("V", Vh[:r].T.contiguous())
        self.register_buffer("U_perp", U[:, r:].contiguous() if self.l else weight.new_zeros(0))
        bias = base.bias.detach().clone() if base.bias is not None else None
        self.register_buffer("bias", bias)
        opts = {"dtype": weight.dtype, "device": weight.device}
        self.inner_skew = nn.Parameter(torch.zeros(self.k * (self.k - 1) // 2, **opts))
        self.delta_s = nn.Parameter(torch.zeros(self.k, **opts))
        self.outer_L = nn.Parameter(torch.zeros(max(m - n, 0), self.l, **opts))

    def recomposed_weight(self) -> torch.Tensor:
        k, ol = self.k, self.l
        V, U, s = self.V, self.U, self.s
        if k:
            rows, cols = torch.triu_indices(k, k, 1, device=V.device)
            upper = V.new_zeros(k, k).index_put((rows, cols), self.inner_skew)
            skew = upper - upper.T
            eye = torch.eye(k, dtype=V.dtype, device=V.device)
            G = torch.linalg.solve(eye - skew, eye + skew)
            V = torch.cat([V[:, :k] @ G, V[:, k:]], dim=1)
            s = torch.cat([s[:k] + self.delta_s, s[k:]])
        if ol:
            eye = torch.eye(ol, dtype=U.dtype, device=U.device)
            R = torch.linalg.cholesky(self.outer_L.T @ self.outer_L + self.tau * eye)
            Q = torch.linalg.solve_triangular(R.T, self.outer_L, upper=True, left=False)
            C = torch.linalg.solve_triangular(
                R.T, math.sqrt(self.tau) * eye, upper=True, left=False
            )
            U = torch.cat([U[:, :ol] @ C + self.U_perp @ Q, U[:, ol:]], dim=1)
        return (U * s) @ V.T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.recomposed_weight(), self.bias)


def apply_full_factor(model: nn.Module, allocation: Sequence[tuple[float, int]]) -> None:
    """Replace the targets of ``model`` (in order) by :class:`FullFactorSSVDO` (in place)."""
    model.requires_grad_(False)
    for name, (p, ol) in zip(resolve_targets(model, TARGETS), allocation, strict=True):
        parent, _, child = name.rpartition(".")
        base = model.get_submodule(name)
        setattr(model.get_submodule(parent), child, FullFactorSSVDO(base, p, ol))


# --------------------------------------------------------------------------- arithmetic
def arithmetic_macs(
    kind: str,
    shapes: Sequence[tuple[int, int]],
    tokens: int,
    settings: Sequence[tuple[int, int]] = (),
) -> float:
    """Multiply-adds per token of one train step over the adapted layers (input needs grad).

    ``kind``: "frozen" (2 m n: forward, input gradient), "lora" (``settings`` = ranks r:
    + 3 r (m + n)), "ssvdo" (``settings`` = (a, l, path) per layer, a = |J|, w = a + l, path as
    ``SSVDOLinear.forward_kind``; F = w n (a + m) forms W': the low-rank path adds forward
    n a + a w + m w and backward m a + 2 m l + 2 a w + n a; the hybrid path adds F per step,
    n a + m w + m l + a w + a l per token and min(F / tokens, n a + a w) for the input
    gradient; the dense path adds the weight gradient m n and 2 F per step), "peer" (``settings`` = (k, l): :class:`FullFactorSSVDO`; once per step it
    recomposes W' = U' diag(s') V'^T (r m n, plus n k^2 for V_k G and m (m - n) l for
    U_perp Q) and pushes the gradient of W' back through it (about twice that), spread over
    ``tokens``; per token a dense layer with its weight gradient, 3 m n). Elementwise work is
    not counted.
    """
    total = 0.0
    for i, (m, n) in enumerate(shapes):
        frozen = 2 * m * n
        if kind == "frozen":
            total += frozen
        elif kind == "lora":
            total += frozen + 3 * settings[i] * (m + n)
        elif kind == "ssvdo":
            a, ol, path = settings[i]
            w = a + ol
            form = w * n * (a + m)
            if path == "lowrank":
                total += frozen + (n * a + a * w + m * w) + (m * a + 2 * m * ol + 2 * a * w + n * a)
            elif path == "hybrid":
                per_token = n * a + m * w + m * ol + a * w + a * ol
                total += frozen + per_token + form / tokens + min(form / tokens, n * a + a * w)
            elif path == "dense":
                total += frozen + m * n + 2 * form / tokens
            else:
                raise ValueError(f"ssvdo path: unknown {path!r}")
        elif kind == "peer":
            k, ol = settings[i]
            r = min(m, n)
            per_step = 3 * (r * m * n + n * k * k + m * max(m - n, 0) * ol)
            total += 3 * m * n + per_step / tokens
        else:
            raise ValueError(f"kind: unknown {kind!r}")
    return total


# --------------------------------------------------------------------------- measuring
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _storage_bytes(tensors: Any) -> int:
    seen: dict[int, int] = {}
    for t in tensors:
        if t is None:
            continue
        st = t.untyped_storage()
        seen[st.data_ptr()] = st.nbytes()
    return sum(seen.values())


@dataclass
class Variant:
    """One model under test and its train step."""

    label: str
    model: nn.Module
    trainable: list[nn.Parameter]
    handle: AdapterHandle | None = None
    detail: str = ""
    optimizer: torch.optim.Optimizer | None = None
    times: list[float] = field(default_factory=list)
    macs: float = 0.0  # arithmetic_macs: multiply-adds per token of a train step

    def __post_init__(self) -> None:
        if self.trainable:
            self.optimizer = torch.optim.AdamW(self.trainable, lr=1e-4)

    @property
    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.trainable)

    def step(self, x: torch.Tensor) -> torch.Tensor:
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)
        x.grad = None
        loss = self.model(x).float().square().mean()
        loss.backward()
        if self.optimizer is not None:
            self.optimizer.step()
        return loss


class LiveBytes(TorchDispatchMode):
    """Peak bytes of tensor storages allocated while active (CPU stand-in for
    ``torch.cuda.max_memory_allocated``): every op output's storage counts from its creation
    until the last tensor on it dies; storages of ``existing`` tensors are not counted.

    Example
    -------
    >>> with LiveBytes() as live:
    ...     a = torch.ones(256)  # 1 KiB
    ...     b = a * 2  # + 1 KiB
    ...     del a, b
    ...     c = torch.ones(128)  # 0.5 KiB after both are gone
    >>> live.peak, live.live
    (2048, 512)
    """

    def __init__(self, existing: Sequence[torch.Tensor] = ()) -> None:
        super().__init__()
        self.skip = {t.untyped_storage().data_ptr() for t in existing}
        self.refs: dict[int, int] = {}
        self.sizes: dict[int, int] = {}
        self.live = self.peak = 0

    def _release(self, key: int) -> None:
        self.refs[key] -= 1
        if not self.refs[key]:
            del self.refs[key]
            self.live -= self.sizes.pop(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if not isinstance(t, torch.Tensor) or t.device.type != "cpu":
                continue
            st = t.untyped_storage()
            key, size = st.data_ptr(), st.nbytes()
            if not size or key in self.skip:
                continue
            if key not in self.refs:
                self.refs[key], self.sizes[key] = 0, size
                self.live += size
                self.peak = max(self.peak, self.live)
            self.refs[key] += 1
            weakref.finalize(t, self._release, key)
        return out


def step_memory(variant: Variant, x: torch.Tensor) -> dict[str, int]:
    """Bytes of one train step (see module docstring): parts and ``peak``."""
    device = x.device
    model = variant.model
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        variant.step(x)
        _sync(device)
        return {"peak": torch.cuda.max_memory_allocated(device)}
    owned = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        if st.data_ptr() not in owned:
            saved[st.data_ptr()] = st.nbytes()
        return t

    if variant.optimizer is not None:
        variant.optimizer.zero_grad(set_to_none=True)
    x.grad = None
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(x).float().square().mean()
    loss.backward()
    if variant.optimizer is not None:
        variant.optimizer.step()
    weights = _storage_bytes([*model.parameters(), *model.buffers()])
    grads = _storage_bytes(p.grad for p in model.parameters())
    state = 0
    if variant.optimizer is not None:
        state = _storage_bytes(
            v for s in variant.optimizer.state.values() for v in s.values() if torch.is_tensor(v)
        )
    activations = sum(saved.values())
    # Peak: what lives across steps (weights, buffers, optimizer state) plus the peak of every
    # storage allocated during one step (activations, temporaries, gradients), as CUDA's
    # max_memory_allocated would see it.
    if variant.optimizer is not None:
        variant.optimizer.zero_grad(set_to_none=True)
    x.grad = None
    existing = [*model.parameters(), *model.buffers(), x]
    if variant.optimizer is not None:
        existing += [v for st in variant.optimizer.state.values() for v in st.values()]
    existing = [t for t in existing if torch.is_tensor(t)]
    with LiveBytes(existing) as live:
        variant.step(x)
    return {
        "weights": weights,
        "grads": grads,
        "optimizer": state,
        "saved": activations,
        "account": weights + grads + state + activations,
        "step_peak": live.peak,
        "peak": weights + state + live.peak,
    }


_STAT: dict[str, Callable[[Sequence[float]], float]] = {"median": statistics.median, "min": min}
_stat = statistics.median  # set by main(--stat)


def median_time(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int) -> float:
    """The chosen statistic (median unless ``--stat min``) of ``repeats`` timed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return _stat(times)


def adapter_buffer_bytes(model: nn.Module, names: Sequence[str]) -> list[tuple[int, int]]:
    """Per layer: (bytes the adapter keeps beside the frozen weight, bytes of that weight)."""
    out = []
    for name in names:
        module = model.get_submodule(name)
        base = getattr(module, "base_layer", None)
        base_ids = {id(t) for t in base.parameters()} if base is not None else set()
        extra = sum(
            t.numel() * t.element_size()
            for t in [*module.parameters(), *module.buffers()]
            if id(t) not in base_ids and not t.requires_grad
        )
        if base is None:  # the full-factor reference replaces the layer
            frozen = module.U.shape[0] * module.V.shape[0] * module.U.element_size()
        else:
            frozen = base.weight.numel() * base.weight.element_size()
        out.append((extra, frozen))
    return out


def _ranks(handle: AdapterHandle, tokens: int) -> str:
    """k and l over the layers, and the forward path the layers pick for a train step."""
    layers = [handle.model.get_submodule(n) for n in handle.targets]
    ks = sorted({layer.inner_rank for layer in layers})
    ls = sorted({layer.outer_rank for layer in layers if layer.out_features > layer.in_features})
    paths = sorted({la.forward_kind(tokens, True) for la in layers})
    fmt = lambda v: "/".join(map(str, v)) if len(v) <= 2 else f"{v[0]}..{v[-1]}"  # noqa: E731
    return f"k={fmt(ks)} l={fmt(ls or [0])}, {'+'.join(paths)}"


# --------------------------------------------------------------------------- one stack
def bench_stack(
    shape: StackShape,
    *,
    budget_params: int | None,
    lora_rank: int,
    shares: Sequence[float],
    default_share: float,
    warmup: int,
    repeats: int,
    device: torch.device,
    peer_shares: Sequence[float],
    seed: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    load_before = _load()
    torch.manual_seed(seed)
    base = FFStack(shape.d, shape.ffn, shape.blocks).to(device)
    base.requires_grad_(False)
    names = resolve_targets(base, TARGETS)
    shapes = [tuple(base.get_submodule(n).weight.shape) for n in names]
    if budget_params is None:
        budget_params = sum(budget.lora_params(m, n, lora_rank) for m, n in shapes)
    ranks, lora_count = budget.match_ranks("lora", shapes, budget_params)
    rank_label = "/".join(map(str, sorted(set(ranks), reverse=True)))
    x = torch.randn(shape.tokens, shape.d, device=device, requires_grad=True)
    log(f"[{shape.name}] d={shape.d} ffn={shape.ffn} blocks={shape.blocks} tokens={shape.tokens}")

    variants = [Variant("frozen", base, [])]
    variants[0].macs = arithmetic_macs("frozen", shapes, shape.tokens)
    lora_model = copy.deepcopy(base)
    lora = apply_adapter(lora_model, "lora", list(TARGETS), rank=ranks)
    lora_v = Variant(f"peft LoRA r={rank_label}", lora_model, lora.trainable_parameters(), lora)
    lora_v.macs = arithmetic_macs("lora", shapes, shape.tokens, ranks)
    variants.append(lora_v)
    ssvdo_by_share: dict[float, Variant] = {}
    setup: dict[str, float] = {}
    for share in shares:
        alloc = budget.allocate(shapes, budget_params, share)
        model = copy.deepcopy(base)
        _sync(device)
        start = time.perf_counter()
        handle = apply_adapter(model, "ssvdo", list(TARGETS), allocation=alloc)
        _sync(device)
        if share == default_share:
            setup["ssvdo_first"] = time.perf_counter() - start
        v = Variant(
            f"SSVD-O inner share {share:.2f}" + (" (default)" if share == default_share else ""),
            model,
            handle.trainable_parameters(),
            handle,
            _ranks(handle, shape.tokens),
        )
        layers = [model.get_submodule(n) for n in handle.targets]
        v.macs = arithmetic_macs(
            "ssvdo",
            shapes,
            shape.tokens,
            [
                (la.num_components, la.outer_rank, la.forward_kind(shape.tokens, True))
                for la in layers
            ],
        )
        ssvdo_by_share[share] = v
        variants.append(v)
    default_alloc = budget.allocate(shapes, budget_params, default_share)
    peer_by_share: dict[float, Variant] = {}
    for share in peer_shares:
        peer_model = copy.deepcopy(base)
        apply_full_factor(peer_model, budget.allocate(shapes, budget_params, share))
        trainable = [p for p in peer_model.parameters() if p.requires_grad]
        peer_v = Variant(f"full-factor recomposition, share {share:.2f}", peer_model, trainable)
        peer_layers = [peer_model.get_submodule(n) for n in names]
        peer_v.macs = arithmetic_macs(
            "peer", shapes, shape.tokens, [(la.k, la.l) for la in peer_layers]
        )
        peer_by_share[share] = peer_v
        variants.append(peer_v)
    peer = bool(peer_by_share)

    # Train steps, interleaved.
    for rep in range(warmup + repeats):
        for v in variants:
            _sync(device)
            start = time.perf_counter()
            v.step(x)
            _sync(device)
            if rep >= warmup:
                v.times.append(time.perf_counter() - start)
        log(f"  round {rep + 1}/{warmup + repeats} done")
    memory = {v.label: step_memory(v, x) for v in variants}

    frozen_t = _stat(variants[0].times)
    lora_t = _stat(variants[1].times)
    frozen_mem, lora_mem = memory[variants[0].label]["peak"], memory[variants[1].label]["peak"]
    rows = []
    for v in variants:
        t, mem = _stat(v.times), memory[v.label]["peak"]
        rows.append(
            {
                "variant": v.label,
                "trainable": v.num_trainable,
                "ranks": v.detail,
                "step_ms": 1e3 * t,
                "step_ms_all": [1e3 * sec for sec in v.times],
                "step_vs_frozen": t / frozen_t,
                "macs_per_token": v.macs,
                "macs_vs_frozen": v.macs / variants[0].macs,
                "step_vs_bound": (t / frozen_t) / (v.macs / variants[0].macs),
                "step_vs_lora": t / lora_t,
                "peak_mb": mem / 2**20,
                "mem_vs_frozen": mem / frozen_mem,
                "mem_vs_lora": mem / lora_mem,
                "memory_parts": memory[v.label],
            }
        )

    # Set-up: decomposition of all targets vs one full thin SVD of the same weights.
    weights = [base.get_submodule(n).weight.detach() for n in names]

    def ssvdo_setup() -> None:
        apply_adapter(copy.deepcopy(base), "ssvdo", list(TARGETS), allocation=default_alloc)

    def copy_only() -> None:
        copy.deepcopy(base)

    def full_svd() -> None:
        # Tall orientation (same factors): LAPACK's SVD of a wide matrix is several times
        # slower here and would flatter the comparison.
        for w in weights:
            torch.linalg.svd(w if w.shape[0] >= w.shape[1] else w.T, full_matrices=False)

    default_layers = [ssvdo_by_share[default_share].model.get_submodule(n) for n in names]
    parts = [
        (w, la._indices, la.outer_rank > 0) for w, la in zip(weights, default_layers, strict=True)
    ]

    def triplets() -> None:
        for w, indices, _ in parts:
            singular_triplets(w, indices)

    def complements() -> None:
        for w, _, outer in parts:
            if outer:
                complement_reflectors(w)

    routes = sorted({singular_triplets(w, idx).route for w, idx, _ in parts})
    timers = {
        "copy": copy_only,
        "ssvdo": ssvdo_setup,
        "triplets": triplets,
        "complement": complements,
        "full_svd": full_svd,
    }
    setup_times: dict[str, list[float]] = {k: [] for k in timers}
    for _ in range(max(1, min(3, repeats))):  # interleaved, like the train steps
        for key, fn in timers.items():
            setup_times[key].append(median_time(fn, device, 0, 1))
    setup.update({k: _stat(v) for k, v in setup_times.items()})
    setup["ssvdo"] = max(setup["ssvdo"] - setup.pop("copy"), 0.0)

    # Adapter buffers vs the frozen weights they sit beside.
    default_v = ssvdo_by_share[default_share]
    per_layer = adapter_buffer_bytes(default_v.model, default_v.handle.targets)
    extra, frozen_bytes = (sum(col) for col in zip(*per_layer, strict=True))
    worst_layer = max(e / f for e, f in per_layer)
    peer_extra = None
    if peer:
        any_peer = next(iter(peer_by_share.values()))
        peer_layers = adapter_buffer_bytes(any_peer.model, default_v.handle.targets)
        peer_extra = sum(e for e, _ in peer_layers)

    # Inference: merged SSVD-O (after the training steps above) vs the base model.
    def infer(model: nn.Module) -> Callable[[], None]:
        xi = x.detach()

        def run() -> None:
            with torch.inference_mode():
                model(xi)

        return run

    inf_unmerged = {}
    for v in (default_v, variants[1]):
        inf_unmerged[v.label] = median_time(infer(v.model), device, warmup, repeats)
    merged = default_v.handle.merge()
    inf_base = inf_merged = 0.0
    base_times, merged_times = [], []
    for _ in range(warmup + repeats):  # interleaved, like the train steps
        base_times.append(median_time(infer(base), device, 0, 1))
        merged_times.append(median_time(infer(merged), device, 0, 1))
    inf_base = _stat(base_times[warmup:])
    inf_merged = _stat(merged_times[warmup:])

    default_row = next(r for r in rows if r["variant"] == default_v.label)
    row_of = {r["variant"]: r for r in rows}
    ssvdo_rows = [row_of[v.label] for v in ssvdo_by_share.values()]
    peer_speedups = {
        f"{share:.2f}": _stat(pv.times) / _stat(ssvdo_by_share[share].times)
        for share, pv in peer_by_share.items()
    }
    ratios = {
        "ssvdo_step_vs_lora": default_row["step_vs_lora"],
        "ssvdo_step_vs_frozen": default_row["step_vs_frozen"],
        "ssvdo_step_vs_bound_worst": max(r["step_vs_bound"] for r in ssvdo_rows),
        "lora_step_vs_bound": rows[1]["step_vs_bound"],
        "peer_speedup_by_share": peer_speedups,
        "peer_speedup": min(peer_speedups.values()) if peer else None,
        "ssvdo_mem_vs_lora_worst": max(r["mem_vs_lora"] for r in ssvdo_rows),
        "merged_inference_vs_base": inf_merged / inf_base,
        "unmerged_inference_vs_base": inf_unmerged[default_v.label] / inf_base,
        "lora_unmerged_inference_vs_base": inf_unmerged[variants[1].label] / inf_base,
        "setup_vs_full_svd": setup["ssvdo"] / setup["full_svd"],
        "triplets_vs_full_svd": setup["triplets"] / setup["full_svd"],
        "complement_vs_full_svd": setup["complement"] / setup["full_svd"],
        "buffers_vs_frozen_weights": extra / frozen_bytes,
        "buffers_vs_frozen_weights_worst_layer": worst_layer,
        "peer_buffers_vs_frozen_weights": (peer_extra / frozen_bytes) if peer else None,
        "ssvdo_mem_vs_lora": default_row["mem_vs_lora"],
    }
    del variants, ssvdo_by_share, peer_by_share, merged
    gc.collect()
    return {
        "load_average": {"before": load_before, "after": _load()},
        "shape": shape.__dict__,
        "budget": budget_params,
        "lora_rank": rank_label,
        "lora_ranks": ranks,
        "lora_count": lora_count,
        "default_share": default_share,
        "rows": rows,
        "setup_s": setup,
        "decomposition_routes": routes,
        "inference_ms": {
            "base": 1e3 * inf_base,
            "merged": 1e3 * inf_merged,
            **{f"unmerged {k}": 1e3 * t for k, t in inf_unmerged.items()},
        },
        "ratios": ratios,
    }


# --------------------------------------------------------------------------- report
def _verdict(value: float | None, target: float, le: bool) -> str:
    if value is None:
        return "n/a"
    ok = value <= target + 5e-3 if le else value >= target - 5e-3
    return "meets" if ok else "MISSES"


def format_report(result: dict[str, Any], judge: bool = True) -> str:
    """Markdown tables of one stack; ``judge=False`` (smoke shapes) prints "n/a" verdicts."""
    s = result["shape"]
    load = result["load_average"]
    lines = [
        f"### {s['name']}: {s['blocks']} blocks of {s['d']} -> {s['ffn']} -> {s['d']}, "
        f"{s['tokens']} tokens; budget {result['budget']:,} trainable parameters "
        f"(LoRA r={result['lora_rank']}: {result['lora_count']:,})",
        "",
        f"Load average (1 min) before / after: {load['before']} / {load['after']}.",
        "",
        "| variant | trainable | ranks, forward path | step ms | x frozen | x LoRA | MAC bound (x frozen) | measured / bound | MACs/token | peak MB | mem x LoRA |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['variant']} | {r['trainable']:,} | {r['ranks']} | {r['step_ms']:.1f} | "
            f"{r['step_vs_frozen']:.2f} | {r['step_vs_lora']:.2f} | {r['macs_vs_frozen']:.2f} | "
            f"{r['step_vs_bound']:.2f} | {r['macs_per_token'] / 1e6:.1f} M | {r['peak_mb']:.1f} | "
            f"{r['mem_vs_lora']:.2f} |"
        )
    q = result["ratios"]
    inf = result["inference_ms"]
    st = result["setup_s"]
    share = f"{result['default_share']:.2f}"
    verdict = _verdict if judge else (lambda *_: "n/a (smoke)")
    speedups = ", ".join(f"{k}: {v:.2f}" for k, v in q["peer_speedup_by_share"].items())
    table = [
        ("ratio SSVD-O measured / MAC bound, worst share", q["ssvdo_step_vs_bound_worst"], f"<= {TARGET_STEP_VS_BOUND:.2f}", verdict(q["ssvdo_step_vs_bound_worst"], TARGET_STEP_VS_BOUND, True)),
        ("ratio LoRA measured / MAC bound", q["lora_step_vs_bound"], "-", "info"),
        ("ratio SSVD-O step / LoRA step (share " + share + ")", q["ssvdo_step_vs_lora"], "-", "info"),
        (f"ratio full-factor step / SSVD-O step, worst share ({speedups})", q["peer_speedup"], f">= {TARGET_PEER_SPEEDUP:.2f}", verdict(q["peer_speedup"], TARGET_PEER_SPEEDUP, False)),
        (f"ratio merged inference / base ({inf['merged']:.1f} / {inf['base']:.1f} ms)", q["merged_inference_vs_base"], "1.00", verdict(abs(q["merged_inference_vs_base"] - 1.0), 0.03, True)),
        (f"ratio set-up / full SVD ({1e3 * st['ssvdo']:.0f} / {1e3 * st['full_svd']:.0f} ms)", q["setup_vs_full_svd"], f"<= {TARGET_SETUP_VS_SVD:.2f}", verdict(q["setup_vs_full_svd"], TARGET_SETUP_VS_SVD, True)),
        (f"ratio singular triplets only / full SVD ({1e3 * st['triplets']:.0f} ms, route {'+'.join(result['decomposition_routes'])})", q["triplets_vs_full_svd"], "-", "info"),
        (f"ratio Householder QR (outer layers) / full SVD ({1e3 * st['complement']:.0f} ms)", q["complement_vs_full_svd"], "-", "info"),
        ("ratio SSVD-O peak memory / LoRA, worst share", q["ssvdo_mem_vs_lora_worst"], f"<= {TARGET_MEM_VS_LORA:.2f}", verdict(q["ssvdo_mem_vs_lora_worst"], TARGET_MEM_VS_LORA, True)),
        ("ratio adapter buffers / frozen weight bytes", q["buffers_vs_frozen_weights"], f"<= {TARGET_BUFFERS_VS_WEIGHTS:.2f}", verdict(q["buffers_vs_frozen_weights"], TARGET_BUFFERS_VS_WEIGHTS, True)),
        ("ratio adapter buffers / frozen weight bytes, worst layer", q["buffers_vs_frozen_weights_worst_layer"], "-", "info"),
        ("ratio SSVD-O unmerged inference / base", q["unmerged_inference_vs_base"], "-", "info"),
        ("ratio LoRA unmerged inference / base", q["lora_unmerged_inference_vs_base"], "-", "info"),
        ("ratio full-factor buffers / frozen weight bytes", q["peer_buffers_vs_frozen_weights"], "-", "info"),
    ]  # fmt: skip
    lines += ["", "| ratio | value | target | verdict |", "|---|---:|---|---|"]
    for name, value, target, v in table:
        shown = "n/a" if value is None else f"{value:.2f}"
        lines.append(f"| {name} | {shown} | {target} | {v} |")
    return "\n".join(lines)


def _load() -> float | None:
    """1-minute load average of the machine (None where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tools.adapter_bench", description=__doc__.split("\n")[0]
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--stacks", default=",".join(STACKS), help=f"comma-separated, from {', '.join(STACKS)}"
    )
    which.add_argument("--small", action="store_true", help="only the small stack (d=256)")
    which.add_argument(
        "--quick", action="store_true", help="tiny shapes, 1 repeat: smoke test, no verdicts"
    )
    p.add_argument("--blocks", type=int, default=None, help="override every stack's blocks")
    p.add_argument("--tokens", type=int, default=None, help="override every stack's tokens")
    p.add_argument(
        "--budget",
        type=int,
        default=None,
        help="trainable parameters (default: LoRA at --lora-rank)",
    )
    p.add_argument("--lora-rank", type=int, default=16, help="sets the default budget")
    p.add_argument("--shares", default=",".join(map(str, DEFAULT_SHARES)), help="inner shares")
    p.add_argument("--default-share", type=float, default=0.5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads on CPU")
    p.add_argument(
        "--stat", choices=sorted(_STAT), default="median", help="min resists background load"
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:i]")
    p.add_argument("--no-peer", action="store_true", help="skip the full-factor reference")
    p.add_argument(
        "--peer-default-only",
        action="store_true",
        help=f"full-factor reference at the default share only (not every share >= {PEER_MIN_SHARE})",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    try:
        args.shares = [float(v) for v in args.shares.split(",") if v.strip()]
    except ValueError:
        p.error(f"--shares: expected comma-separated numbers, got {args.shares!r}")
    if not args.shares or any(not 0.0 <= v <= 1.0 for v in args.shares):
        p.error(f"--shares: values must lie in [0, 1], got {args.shares}")
    if args.default_share not in args.shares:
        args.shares.append(args.default_share)
    for name in ("blocks", "tokens", "lora_rank", "repeats", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')}: must be >= 1")
    args.stacks = ["small"] if args.small else [v.strip() for v in args.stacks.split(",") if v]
    unknown = [v for v in args.stacks if v not in STACKS]
    if unknown or not args.stacks:
        p.error(f"--stacks: unknown {unknown}, choose from {list(STACKS)}")
    if args.warmup < 0:
        p.error("--warmup: must be >= 0")
    return args


def _device(name: str) -> torch.device:
    """``--device``: "auto" (CUDA when present), "cpu" or "cuda[:i]" (refused without a GPU)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise SystemExit(f"--device: {name!r} is not a device ({err})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            f"--device {name}: no CUDA device here (torch.cuda.is_available() is False); "
            "run on a machine with a GPU or use --device cpu"
        )
    if device.type not in ("cpu", "cuda"):
        raise SystemExit(f"--device: only cpu and cuda are supported, got {name!r}")
    return device


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the report and return the results (a JSON-ready dict)."""
    global _stat
    args = _parse(argv)
    _stat = _STAT[args.stat]
    device = _device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    if args.quick:
        stacks = [StackShape("quick", 32, 128, 2, 64)]
        args.warmup, args.repeats, args.lora_rank = 0, 1, 4
    else:
        stacks = [
            StackShape(st.name, st.d, st.ffn, args.blocks or st.blocks, args.tokens or st.tokens)
            for st in (STACKS[name] for name in args.stacks)
        ]
    peer_shares = [args.default_share]
    if not (args.quick or args.peer_default_only):
        peer_shares = sorted({v for v in args.shares if v >= PEER_MIN_SHARE} | set(peer_shares))
    if args.no_peer:
        peer_shares = []
    machine = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    )
    print(
        f"tools.adapter_bench on {machine}, torch {torch.__version__}; times: {args.stat} of "
        f"{args.repeats} after {args.warmup} warm-up; load average {_load()}",
        flush=True,
    )

    def log(msg: str) -> None:
        print(msg, flush=True)

    results = []
    for shape in stacks:
        result = bench_stack(
            shape,
            budget_params=args.budget,
            lora_rank=args.lora_rank,
            shares=args.shares,
            default_share=args.default_share,
            warmup=args.warmup,
            repeats=args.repeats,
            device=device,
            peer_shares=peer_shares,
            seed=args.seed,
            log=log,
        )
        results.append(result)
        print("\n" + format_report(result, judge=not args.quick) + "\n", flush=True)
    memory_note = (
        "torch.cuda.max_memory_allocated"
        if device.type == "cuda"
        else "params + buffers + AdamW state + peak of storages allocated in one step (LiveBytes)"
    )
    report = {
        "machine": machine,
        "torch": torch.__version__,
        "memory_measure": memory_note,
        "statistic": args.stat,
        "argv": list(argv) if argv is not None else None,
        "stacks": results,
    }
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2, default=str)
    return report


if __name__ == "__main__":
    main()
