"""Run a small autograd sub-graph (forward and backward) on one intra-op CPU thread.

SSVD-O builds its k x k rotation and cores from the trainable parameters with a few dozen
small operations per step (k ~ 100-400). With several intra-op threads every one of them is a
parallel region, and on a CPU shared with other work each region waits for a descheduled
thread: measured on 2 shared cores, the parameter side of two 4096 x 1024 layers took
200-1000 ms per step with 2 threads and 25 ms with 1. Large GEMMs amortise that wait; these
operations do not. ``serial_call`` therefore runs them with ``torch.set_num_threads(1)``
(restored afterwards) on CPU when the ATen backend is OpenMP; elsewhere it calls ``fn``
directly. Only first-order gradients pass through (``once_differentiable``).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

import torch
from torch.autograd.function import once_differentiable


@functools.cache
def _openmp_backend() -> bool:
    # The native thread pool cannot change its size once parallel work has started.
    return "parallel backend: OpenMP" in torch.__config__.parallel_info()


@contextlib.contextmanager
def one_intra_op_thread() -> Iterator[None]:
    """``torch.set_num_threads(1)`` for the block, then the previous count again."""
    previous = torch.get_num_threads()
    if previous == 1 or not _openmp_backend():
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class _Serial(torch.autograd.Function):
    @staticmethod
    def forward(ctx, fn: Callable[..., tuple[torch.Tensor, ...]], *inputs: torch.Tensor):
        leaves = [t.detach().requires_grad_(t.requires_grad) for t in inputs]
        with torch.enable_grad(), one_intra_op_thread():
            outputs = tuple(fn(*leaves))
        ctx.leaves, ctx.outputs = leaves, outputs
        return tuple(out.detach() for out in outputs)

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads: torch.Tensor | None):
        pairs = [
            (out, g)
            for out, g in zip(ctx.outputs, grads, strict=True)
            if g is not None and out.requires_grad
        ]
        wanted = [leaf for leaf in ctx.leaves if leaf.requires_grad]
        found: list[torch.Tensor | None] = [None] * len(wanted)
        if pairs and wanted:
            with one_intra_op_thread():
                found = list(
                    torch.autograd.grad(
                        [out for out, _ in pairs],
                        wanted,
                        [g for _, g in pairs],
                        retain_graph=True,  # the outer graph may be backpropagated again
                        allow_unused=True,
                    )
                )
        it = iter(found)
        return (None, *(next(it) if leaf.requires_grad else None for leaf in ctx.leaves))


def serial_call(
    fn: Callable[..., tuple[torch.Tensor, ...]], *inputs: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """``fn(*inputs)`` (a tuple of tensors), forward and backward on one CPU thread.

    Example
    -------
    >>> x = torch.randn(3, requires_grad=True)
    >>> (y,) = serial_call(lambda t: (t.square(),), x)
    >>> y.sum().backward()
    >>> bool(torch.allclose(x.grad, 2 * x))
    True
    """
    cpu = all(t.device.type == "cpu" for t in inputs)
    if not cpu or torch.get_num_threads() == 1 or not _openmp_backend():
        return tuple(fn(*inputs))
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in inputs)):
        with one_intra_op_thread():
            return tuple(fn(*inputs))
    return _Serial.apply(fn, *inputs)
