"""SSVDOLinear: a frozen ``nn.Linear`` adapted by SSVD-O (inner + outer structured-SVD transforms).

W' = U' diag(s') V^T' with the maths in ``adapter.SSVDOAdapter``; this module pairs it with the
base layer: merge / unmerge, re-decomposition between experiences, state-dict hooks and the
basis drift. It never recomposes W' from full factors. This module must not depend on peft,
speechbrain, avalanche or mlflow.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from .adapter import (
    FORWARD_PATHS,
    GENERATORS,
    DeltaBlocks,
    SSVDOAdapter,
    component_indices,
)
from .rotations import PARAMETERISATIONS
from .settings import (
    DEFAULT_PARAMETERISATION,
    DEFAULTS,
    SUBSPACES,
    ssvdo_num_parameters,
    ssvdo_ranks,
    validate_settings,
)

__all__ = [
    "DEFAULT_PARAMETERISATION",
    "FORWARD_PATHS",
    "GENERATORS",
    "SUBSPACES",
    "DeltaBlocks",
    "SSVDOAdapter",
    "SSVDOLinear",
    "basis_drift",
    "component_indices",
    "ssvdo_num_parameters",
    "ssvdo_ranks",
    "validate_settings",
]

_FACTOR_BUFFERS = ("svd_U", "svd_s", "svd_V", "perp_reflectors", "perp_tau")


class SSVDOLinear(SSVDOAdapter):
    """SSVD-O adapter around a frozen ``nn.Linear``.

    Arguments
    ---------
    base_layer : nn.Linear
        The pretrained layer (m = out_features, n = in_features). Kept (frozen) as
        ``base_layer``; its current weight is decomposed at construction and by ``decompose()``.
    inner_ratio : float
        p in [0, 1]; k = round(p * min(m, n)) right singular vectors are rotated.
    outer_rank : int
        Requested l >= 0; the effective ``outer_rank`` is min(l, r, m - n), 0 when m <= n.
    tau : float
        > 0, sensitivity of the outer rotation under "v1" (angle ~ |L| / sqrt(tau)); no effect
        under "v2".
    rotation : str
        "cayley" (exactly orthogonal) or "linear" (G = I + 2K, the SSVD code's map).
    subspace : str
        "top": the inner transform adapts the top k components; "tail": the last k (keeps the
        dominant directions intact). The outer transform always acts on the top l.
    parameterisation : str
        "v2" (default): step-size calibrated, one optimiser step of lr per entry turns each
        adapted direction by ~lr radians and scales each adapted singular value by ~(1 + lr),
        whatever the shape, tau, k and l. "v1": the generators used as they are (K, L with tau,
        s + ds), the maths of the earlier releases bit for bit.

    Example
    -------
    >>> layer = SSVDOLinear(nn.Linear(8, 16), inner_ratio=0.5, outer_rank=2)
    >>> layer.inner_rank, layer.outer_rank, layer(torch.randn(3, 8)).shape
    (4, 2, torch.Size([3, 16]))
    >>> sum(p.numel() for p in layer.parameters() if p.requires_grad)  # 4*3/2 + 4 + 8*2
    26
    """

    def __init__(
        self,
        base_layer: nn.Linear,
        inner_ratio: float,
        outer_rank: int = DEFAULTS.outer_rank,
        tau: float = DEFAULTS.tau,
        rotation: str = DEFAULTS.rotation,
        subspace: str = DEFAULTS.subspace,
        parameterisation: str = DEFAULTS.parameterisation,
    ) -> None:
        if not isinstance(base_layer, nn.Linear):
            raise TypeError(
                f"base_layer must be a torch.nn.Linear, got {type(base_layer).__name__}"
            )
        weight = base_layer.weight
        super().__init__(
            weight.shape[0],
            weight.shape[1],
            inner_ratio,
            outer_rank,
            tau,
            rotation,
            subspace,
            parameterisation,
            dtype=weight.dtype,
            device=weight.device,
        )
        self.base_layer = base_layer
        self.base_layer.requires_grad_(False)
        self.merged = False
        self.register_buffer("_w0_backup", None, persistent=False)
        self.decompose()
        self._decompose_after_load = False
        self.register_load_state_dict_pre_hook(_note_missing_factors)
        self.register_load_state_dict_post_hook(_decompose_if_noted)

    def decompose(self) -> None:
        """Factorise the base weight as it is now and reset the adapter to identity (W' = W0).

        Call after loading new weights into ``base_layer`` behind the adapter's back.
        """
        if self.merged:
            raise RuntimeError(
                "decompose() on a merged SSVDOLinear: call unmerge() or redecompose()"
            )
        self.decompose_weight(self.base_layer.weight)

    @torch.no_grad()
    def redecompose(
        self,
        inner_ratio: float | None = None,
        outer_rank: int | None = None,
        tau: float | None = None,
        parameterisation: str | None = None,
    ) -> None:
        """Fold the current adaptation into the base weight and start afresh from it.

        W' becomes the new W0 (the pre-merge weight is dropped), the SVD is recomputed from it,
        and the trainable parameters restart at zero, optionally with a new (p, l, tau,
        parameterisation) for the next experience. New parameter objects are created: rebuild
        the optimizer afterwards.
        """
        inner_ratio = self.inner_ratio if inner_ratio is None else inner_ratio
        outer_rank = self.requested_outer_rank if outer_rank is None else outer_rank
        tau = self.tau if tau is None else tau
        parameterisation = parameterisation or self.parameterisation
        validate_settings(
            inner_ratio, outer_rank, tau, self.rotation, self.subspace, parameterisation
        )
        self.merge()
        self._w0_backup = None
        self.merged = False
        params = self.trainable_parameters
        requires_grad = all(p.requires_grad for p in params) if params else True
        weight = self.base_layer.weight
        self._configure(
            inner_ratio,
            outer_rank,
            tau,
            self.rotation,
            self.subspace,
            parameterisation,
            dtype=weight.dtype,
            device=weight.device,
        )
        for param in self.trainable_parameters:
            param.requires_grad_(requires_grad)
        self.decompose()

    def _w0(self) -> torch.Tensor:
        return self._w0_backup if self.merged else self.base_layer.weight

    def merged_weight(self) -> torch.Tensor:
        """W' = W0 + dW, shape (m, n) (differentiable w.r.t. the adapter parameters)."""
        return self.adapted_weight(self._w0())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., n) -> (..., m). While merged, only the base layer runs."""
        if self.merged:
            return self.base_layer(x)
        return self.adapted_linear(x, self.base_layer.weight, self.base_layer.bias)

    @torch.no_grad()
    def merge(self) -> None:
        """Write W' into ``base_layer.weight`` (keeps W0 for ``unmerge``). No-op if merged."""
        if self.merged:
            return
        weight = self.base_layer.weight
        merged = self.merged_weight()
        self._w0_backup = weight.detach().clone()
        weight.copy_(merged)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Restore W0 bit-exactly. No-op if not merged."""
        if not self.merged:
            return
        if self._w0_backup is None:
            raise RuntimeError(
                "this SSVDOLinear was loaded merged: the pre-merge weight is not available"
            )
        self.base_layer.weight.copy_(self._w0_backup)
        self._w0_backup = None
        self.merged = False

    def get_extra_state(self) -> dict[str, bool | str]:
        return {"merged": self.merged, "parameterisation": self.parameterisation}

    def set_extra_state(self, state: dict[str, bool | str]) -> None:
        # Runs after this module's buffers/parameters were loaded, before base_layer's: the
        # loaded base weight is W' if the checkpoint was saved merged and W0 otherwise.
        # Any kept W0 backup may not belong to the loaded weights: drop it.
        self._w0_backup = None
        self.merged = bool(state.get("merged", False))
        # The generators only mean something under the parameterisation they were trained
        # with; a checkpoint from before the setting existed was trained under v1.
        loaded = state.get("parameterisation", "v1")
        if loaded not in PARAMETERISATIONS:
            raise ValueError(f"checkpoint parameterisation {loaded!r} not in {PARAMETERISATIONS}")
        if loaded != self.parameterisation:
            warnings.warn(
                f"SSVDOLinear: the loaded state was saved with parameterisation={loaded!r}; "
                f"switching from {self.parameterisation!r} to it",
                stacklevel=2,
            )
            self.parameterisation = loaded

    def extra_repr(self) -> str:
        return super().extra_repr() + f", merged={self.merged}"


def _note_missing_factors(module: SSVDOLinear, state_dict: dict, prefix: str, *args: Any) -> None:
    """A state dict that brings a base weight but no factors (e.g. a checkpoint of the model
    before injection, loaded with strict=False): factorise that weight once loading is done."""
    brings_weight = prefix + "base_layer.weight" in state_dict
    brings_factors = all(prefix + name in state_dict for name in _FACTOR_BUFFERS)
    module._decompose_after_load = brings_weight and not brings_factors


def _decompose_if_noted(module: SSVDOLinear, incompatible_keys: Any) -> None:
    if module._decompose_after_load and not module.merged:
        module.decompose()
    module._decompose_after_load = False


def basis_drift(layer: SSVDOLinear) -> dict[str, float]:
    """Orthonormality error of the adapted bases: max |U'^T U' - I| and max |V'^T V' - I| over
    the changed components J (the rest of U and V is untouched)."""
    with torch.no_grad():
        U, _, V = layer.adapted_factors()
        a = U.shape[1]
        eye = torch.eye(a, dtype=U.dtype, device=U.device)
        u_err = (U.T @ U - eye).abs().max().item() if a else 0.0
        v_err = (V.T @ V - eye).abs().max().item() if a else 0.0
    return {"U": u_err, "V": v_err}
