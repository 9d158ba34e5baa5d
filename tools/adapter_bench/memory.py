"""Peak memory of one train step (CUDA allocator, or a dispatch-mode count of storages on CPU)
and the bytes an adapter keeps beside the frozen weights."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from tools.adapter_bench.timing import sync
from tools.adapter_bench.variant import Variant


def _storage_bytes(tensors: Any) -> int:
    seen: dict[int, int] = {}
    for t in tensors:
        if t is None:
            continue
        st = t.untyped_storage()
        seen[st.data_ptr()] = st.nbytes()
    return sum(seen.values())


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
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        variant.step(x)
        sync(device)
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
